//! Payload encryption.
//!
//! Today this holds only [`legacy`], node-discovery's cipher, kept for
//! interoperability with Node peers. It is weak: see its module docs.

pub mod legacy;
