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
Each connection gets its own thread, so the delay is per request (WAN latency),
not a global rate limit.
"""

import argparse
import http.server
import os
import signal
import socket
import sys
import time

CTYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "thumbd-bench/1"
    sys_version = ""

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        srv = self.server
        path = self.path.split("?", 1)[0]
        data = None
        if path.startswith("/img/"):
            _, _, name = path[5:].partition("-")
            data = srv.files.get(name)
        if data is None:
            body = b"not found\n"
            self.send_response(404)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if srv.delay > 0:
            time.sleep(srv.delay)
        self.send_response(200)
        self.send_header("Content-Type", CTYPES.get(os.path.splitext(name)[1].lower(),
                                                    "application/octet-stream"))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except OSError:
            pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, root, delay, port=0):
        self.delay = delay
        self.files = {}
        for n in os.listdir(root):
            p = os.path.join(root, n)
            if os.path.isfile(p) and not n.startswith("."):
                with open(p, "rb") as f:
                    self.files[n] = f.read()
        super().__init__(("127.0.0.1", port), Handler)

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().server_bind()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--delay", type=float, default=0.1)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    a = ap.parse_args()
    srv = Server(a.root, a.delay, a.port)

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    port = srv.server_address[1]
    if a.port_file:
        with open(a.port_file + ".tmp", "w") as f:
            f.write("%d\n" % port)
        os.replace(a.port_file + ".tmp", a.port_file)
    print("http://127.0.0.1:%d/" % port, flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
