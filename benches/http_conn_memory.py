#!/usr/bin/env python3
"""What an open HTTP connection costs the sidecar: resident memory with N
connections open and idle, then after one request on each, then once they
are closed.

    python3 benches/http_conn_memory.py [--connections 5000]

It builds `shoal` in release and runs on loopback only (`--loopback`, HTTP
on 127.0.0.1). The connections stay within --read-timeout (30 s), so none
is cut while it is measured; --max-connections (10,240) bounds how many
can be open, and so this cost.
"""
import argparse
import os
import socket
import subprocess
import sys
import time

# The same reading of VmRSS as the throughput bench's.
from http_bench import rss_kib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UDP_PORT = 47898
HTTP = ("127.0.0.1", 47899)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--connections", type=int, default=5000)
    args = p.parse_args()
    n = args.connections
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "shoal-cli", "--bin", "shoal"],
                   check=True, cwd=REPO)
    binary = os.path.join(REPO, "target", "release", "shoal")
    # Every connection comes from 127.0.0.1: its share is the whole limit.
    limit = str(max(n + 16, 10_240))
    sidecar = subprocess.Popen([binary, "--loopback", "--port", str(UDP_PORT), "serve",
                                "--http", f"{HTTP[0]}:{HTTP[1]}",
                                "--max-connections", limit,
                                "--max-connections-per-client", limit],
                               stdout=subprocess.PIPE, text=True)
    conns = []
    try:
        sidecar.stdout.readline()  # the listening line
        time.sleep(1)
        rest = rss_kib(sidecar.pid)
        for _ in range(n):
            conns.append(socket.create_connection(HTTP))
        time.sleep(1.5)
        idle = rss_kib(sidecar.pid)
        for c in conns:
            c.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
        for c in conns:
            c.recv(4096)
        time.sleep(1)
        used = rss_kib(sidecar.pid)
        for c in conns:
            c.close()
        conns = []
        time.sleep(2.5)  # the trimmer gives memory back within a second or so
        closed = rss_kib(sidecar.pid)
    finally:
        for c in conns:
            c.close()
        sidecar.terminate()
        sidecar.wait()
    print(f"{n} connections; sidecar VmRSS: at rest {rest} KiB; "
          f"idle {idle} KiB ({(idle - rest) / n:.1f} KiB each); "
          f"after one request each {used} KiB ({(used - rest) / n:.1f} KiB each); "
          f"all closed {closed} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
