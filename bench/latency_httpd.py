#!/usr/bin/env python3
"""
latency_httpd: loopback HTTP/1.1 server for thumbd's end-to-end benchmarks.
Python 3 standard library only; binds 127.0.0.1 only.

    python3 bench/latency_httpd.py --root DIR --delay 0.1 [--port-file F]

GET /img/<copy>-<name>  waits --delay seconds, then answers with DIR/<name>
                        (read once, kept in memory; keep-alive).  <copy> is any
                        prefix without '-', so one file is served under many names.
anything else           404 at once (no delay).

Prints "http://127.0.0.1:PORT/" on stdout once listening; serves until SIGTERM.

One asyncio event loop: the delay is per request (WAN latency), not a global
rate limit, and the server spends as little CPU as it can.  That matters on a
2-core machine where it runs beside the tool being measured: the first
version (http.server, one thread per connection) used most of a core at 128
connections and so slowed every tool it served.  Bodies go out in slices:
Python 3.11 copies what a write cannot send at once into the transport's
buffer and shifts that buffer down after every send, quadratic in the body
size (0.5 s of CPU for the 195 end-to-end URLs; 0.1-0.2 s in slices).
"""

import argparse
import asyncio
import os
import signal
import socket
import sys

CTYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}
NOT_FOUND = (b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n"
             b"Server: thumbd-bench/1\r\n\r\nnot found\n")


CHUNK = 256 * 1024


def load(root):
    files = {}
    for n in os.listdir(root):
        p = os.path.join(root, n)
        if os.path.isfile(p) and not n.startswith("."):
            with open(p, "rb") as f:
                data = f.read()
            ctype = CTYPES.get(os.path.splitext(n)[1].lower(), "application/octet-stream")
            head = ("HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                    "Server: thumbd-bench/1\r\n\r\n" % (ctype, len(data))).encode()
            files[n] = memoryview(head + data)
    return files


async def serve_conn(reader, writer, files, delay):
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            line = head.split(b"\r\n", 1)[0].split()
            path = line[1].decode("latin-1").split("?", 1)[0] if len(line) >= 2 else ""
            close = b"connection: close" in head.lower()
            reply = None
            if path.startswith("/img/"):
                reply = files.get(path[5:].partition("-")[2])
            if reply is None:
                writer.write(NOT_FOUND)
            else:
                if delay > 0:
                    await asyncio.sleep(delay)
                # in slices (see the top)
                for i in range(0, len(reply), CHUNK):
                    writer.write(reply[i:i + CHUNK])
                    await writer.drain()
            await writer.drain()
            if close:
                return
    except ConnectionError:
        pass
    finally:
        writer.close()


async def run(a):
    files = load(a.root)
    srv = await asyncio.start_server(lambda r, w: serve_conn(r, w, files, a.delay),
                                     "127.0.0.1", a.port, backlog=1024, limit=65536)
    port = srv.sockets[0].getsockname()[1]
    if a.port_file:
        with open(a.port_file + ".tmp", "w") as f:
            f.write("%d\n" % port)
        os.replace(a.port_file + ".tmp", a.port_file)
    print("http://127.0.0.1:%d/" % port, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with srv:
        await stop.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--delay", type=float, default=0.1)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    asyncio.run(run(ap.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
