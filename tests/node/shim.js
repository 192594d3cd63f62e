// The smallest shim that lets the unmodified 2013 node-discovery@0.2.1-1 run on
// Node 20: its receive path calls `buf.toString(null, 0, 4)`, which Node 20
// rejects ("Unknown encoding: null"). Map a null encoding to utf8, nothing more.
'use strict';
const toString = Buffer.prototype.toString;
Buffer.prototype.toString = function (encoding, ...rest) {
  return toString.call(this, encoding === null ? 'utf8' : encoding, ...rest);
};
