#!/usr/bin/env python3
"""
httpd: a loopback HTTP/1.1 server that misbehaves on purpose, for thumbd's
integration tests and the demo.  Python 3 standard library only.

As a module (inside a test process):

    srv = httpd.start(root)            # binds 127.0.0.1, port 0, serves in a daemon thread
    url = srv.url("photos/x.jpg")      # "http://127.0.0.1:PORT/photos/x.jpg"
    ...
    srv.requests()                     # [(method, raw path), ...] seen so far
    srv.stop()

As a script (the demo):

    python3 tests/httpd.py --root DIR [--port N] [--port-file F] [--any-file FILE]

prints "http://127.0.0.1:PORT/" on stdout (flushed) and serves until SIGTERM
or SIGINT.

Routes (PATH below is a file path under the root; it is never allowed to
leave the root):

    /PATH                         the file (GET, HEAD), Content-Type by extension, 404 if missing
    /status/CODE                  that status with a small text body
    /redirect/N/PATH              302 chain of N hops, then to /PATH
    /ctype/TYPE%2FSUB/PATH        the file with that Content-Type ("/ctype/TYPE/SUB/PATH" also works)
    /gzip/PATH                    the file gzip-compressed, Content-Encoding: gzip (whatever the client asked)
    /chunked/PATH                 Transfer-Encoding: chunked, no Content-Length
    /short/PATH                   announces the full Content-Length, sends half, closes
    /slowhead/SECS/PATH           waits SECS before answering
    /stallbody/SECS/PATH          headers and the first 1 KiB, then waits SECS, then closes
    /drop/PATH                    closes the connection without answering
    /nolength/PATH                no Content-Length, body ends when the connection closes
    /any/ANYTHING                 the --any-file (any name, any depth, any query), 404 when unset
    /location/ENCODED             302 to the percent-decoded rest, as is ("file%3A%2F%2F%2Fetc%2Fpasswd")

More fault behaviours: write a handler `def _route_x(h, rest)` and add
("/x/", _route_x) to ROUTES.  `h` is the request handler, `rest` the raw
(still percent-encoded) path after the prefix, without the query string.

Logging is silent unless THUMBD_HTTPD_LOG is set in the environment.
"""

import argparse
import gzip
import http.server
import os
import posixpath
import signal
import sys
import threading
import time
import urllib.parse

CONTENT_TYPES = {
    ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png",
    ".webp": "image/webp", ".gif": "image/gif", ".tif": "image/tiff",
    ".tiff": "image/tiff", ".html": "text/html", ".htm": "text/html",
    ".txt": "text/plain", ".tsv": "text/tab-separated-values",
    ".json": "application/json",
}

VERBOSE = bool(os.environ.get("THUMBD_HTTPD_LOG"))


def content_type(path):
    return CONTENT_TYPES.get(os.path.splitext(path)[1].lower(), "application/octet-stream")


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "thumbd-test-httpd/1"
    sys_version = ""

    # -- plumbing -----------------------------------------------------------

    def log_message(self, fmt, *args):
        if VERBOSE:
            sys.stderr.write("httpd: %s - %s\n" % (self.address_string(), fmt % args))

    def do_GET(self):
        self._dispatch()

    def do_HEAD(self):
        self._dispatch()

    def _dispatch(self):
        raw = self.path.split("?", 1)[0].split("#", 1)[0]
        host = self.headers.get("Host", "")
        self.server.note_request(self.command, self.path, host, self.client_address)
        try:
            for prefix, fn in ROUTES:
                if raw.startswith(prefix):
                    return fn(self, raw[len(prefix):])
            return _route_file(self, raw.lstrip("/"))
        finally:
            self.server.note_done(host)

    # -- helpers for route handlers -----------------------------------------

    def resolve(self, rest):
        """Raw (percent-encoded) path under the root -> filesystem path, or None
        when it is missing, a directory or would leave the root."""
        root = self.server.root
        if root is None:
            return None
        rel = urllib.parse.unquote(rest)
        if "\0" in rel:
            return None
        rel = posixpath.normpath("/" + rel).lstrip("/")
        full = os.path.realpath(os.path.join(root, rel))
        if full != root and not full.startswith(root + os.sep):
            return None
        if not os.path.isfile(full):
            return None
        return full

    def read_file(self, rest):
        """Bytes of the file for rest, or None after sending a 404."""
        full = self.resolve(rest)
        if full is None:
            self.send_text(404, "not found: /%s\n" % rest)
            return None, None
        with open(full, "rb") as f:
            return full, f.read()

    def send_text(self, code, text, extra_headers=()):
        body = text.encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra_headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_bytes(self, data, ctype, code=200, extra_headers=()):
        self.send_response(code)
        if ctype is not None:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in extra_headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def hang_up(self):
        self.close_connection = True
        try:
            self.wfile.flush()
        except OSError:
            pass


# -- routes -----------------------------------------------------------------

def _route_file(h, rest, ctype=None):
    full, data = h.read_file(rest)
    if data is None:
        return
    h.send_bytes(data, ctype if ctype is not None else content_type(full))


def _route_status(h, rest):
    seg = rest.split("/", 1)[0]
    try:
        code = int(seg)
        if not 100 <= code <= 599:
            raise ValueError
    except ValueError:
        return h.send_text(400, "bad status code %r\n" % seg)
    if code < 200 or code in (204, 304):
        h.send_response(code)
        h.send_header("Content-Length", "0")
        h.end_headers()
        return
    h.send_text(code, "status %d from the thumbd test server\n" % code)


def _route_redirect(h, rest):
    seg, _, path = rest.partition("/")
    try:
        n = int(seg)
    except ValueError:
        return h.send_text(400, "bad hop count %r\n" % seg)
    loc = "/redirect/%d/%s" % (n - 1, path) if n > 1 else "/" + path
    h.send_text(302, "redirect to %s\n" % loc, [("Location", loc)])


def _route_ctype(h, rest):
    first, _, after = rest.partition("/")
    mime = urllib.parse.unquote(first)
    if "/" not in mime:
        sub, _, after = after.partition("/")
        mime = mime + "/" + urllib.parse.unquote(sub)
    _route_file(h, after, ctype=mime)


def _route_gzip(h, rest):
    full, data = h.read_file(rest)
    if data is None:
        return
    h.send_bytes(gzip.compress(data), content_type(full),
                 extra_headers=[("Content-Encoding", "gzip")])


def _route_chunked(h, rest):
    full, data = h.read_file(rest)
    if data is None:
        return
    h.send_response(200)
    h.send_header("Content-Type", content_type(full))
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    if h.command == "HEAD":
        return
    step = 8192
    for i in range(0, len(data), step):
        chunk = data[i:i + step]
        h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    h.wfile.write(b"0\r\n\r\n")


def _route_short(h, rest):
    full, data = h.read_file(rest)
    if data is None:
        return
    h.send_response(200)
    h.send_header("Content-Type", content_type(full))
    h.send_header("Content-Length", str(len(data)))
    h.send_header("Connection", "close")
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(data[:len(data) // 2])
    h.hang_up()


def _secs_and_path(h, rest):
    seg, _, path = rest.partition("/")
    try:
        secs = float(seg)
    except ValueError:
        h.send_text(400, "bad seconds %r\n" % seg)
        return None, None
    return min(max(secs, 0.0), 600.0), path


def _route_slowhead(h, rest):
    secs, path = _secs_and_path(h, rest)
    if secs is None:
        return
    time.sleep(secs)
    _route_file(h, path)


def _route_stallbody(h, rest):
    secs, path = _secs_and_path(h, rest)
    if secs is None:
        return
    full, data = h.read_file(path)
    if data is None:
        return
    h.send_response(200)
    h.send_header("Content-Type", content_type(full))
    h.send_header("Content-Length", str(len(data)))
    h.send_header("Connection", "close")
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(data[:1024])
        h.wfile.flush()
        time.sleep(secs)
    h.hang_up()


def _route_drop(h, rest):
    h.hang_up()


def _route_nolength(h, rest):
    full, data = h.read_file(rest)
    if data is None:
        return
    h.send_response(200)
    h.send_header("Content-Type", content_type(full))
    h.send_header("Connection", "close")
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(data)
    h.hang_up()


def _route_location(h, rest):
    loc = urllib.parse.unquote(rest)
    h.send_text(302, "redirect to %s\n" % loc, [("Location", loc)])


def _route_any(h, rest):
    f = h.server.any_file
    if f is None or not os.path.isfile(f):
        return h.send_text(404, "no --any-file configured\n")
    with open(f, "rb") as fp:
        data = fp.read()
    h.send_bytes(data, content_type(f))


# Longest prefixes first where they overlap.  Each handler: fn(handler, rest).
ROUTES = [
    ("/status/", _route_status),
    ("/redirect/", _route_redirect),
    ("/ctype/", _route_ctype),
    ("/gzip/", _route_gzip),
    ("/chunked/", _route_chunked),
    ("/short/", _route_short),
    ("/slowhead/", _route_slowhead),
    ("/stallbody/", _route_stallbody),
    ("/drop/", _route_drop),
    ("/nolength/", _route_nolength),
    ("/any/", _route_any),
    ("/location/", _route_location),
]


# -- server -----------------------------------------------------------------

class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, root, port=0, any_file=None):
        self.root = os.path.realpath(root) if root is not None else None
        self.any_file = os.path.realpath(any_file) if any_file else None
        self._lock = threading.Lock()
        self._requests = []
        self._active = {}           # Host header -> requests being answered now
        self._max_active = {}       # Host header -> the most seen at once
        self._max_total = 0
        self._clients = set()       # (ip, port) of every connection that sent a request
        self._thread = None
        super().__init__(("127.0.0.1", port), _Handler)

    @property
    def port(self):
        return self.server_address[1]

    def url(self, path=""):
        return "http://127.0.0.1:%d/%s" % (self.port, path.lstrip("/"))

    def note_request(self, method, path, host="", client=None):
        with self._lock:
            self._requests.append((method, path))
            self._active[host] = self._active.get(host, 0) + 1
            self._max_active[host] = max(self._max_active.get(host, 0), self._active[host])
            self._max_total = max(self._max_total, sum(self._active.values()))
            if client is not None:
                self._clients.add(tuple(client[:2]))

    def note_done(self, host):
        with self._lock:
            self._active[host] -= 1

    def concurrency(self):
        """({Host: most requests answered at once}, most at once over all hosts)."""
        with self._lock:
            return dict(self._max_active), self._max_total

    def connections(self):
        """Number of distinct client connections that sent requests."""
        with self._lock:
            return len(self._clients)

    def requests(self):
        with self._lock:
            return list(self._requests)

    def handle_error(self, request, client_address):
        if VERBOSE:
            super().handle_error(request, client_address)

    def start_thread(self):
        self._thread = threading.Thread(target=self.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name="httpd-%d" % self.port, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._thread is not None:
            self.shutdown()
            self._thread.join(5)
            self._thread = None
        self.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start(root, port=0, any_file=None):
    """Serve root on 127.0.0.1:port (0 = any free port) in a daemon thread."""
    return Server(root, port, any_file).start_thread()


def main(argv=None):
    ap = argparse.ArgumentParser(description="loopback HTTP/1.1 test server for thumbd")
    ap.add_argument("--root", required=True, help="directory to serve")
    ap.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = any free)")
    ap.add_argument("--port-file", help="write the port number to this file once listening")
    ap.add_argument("--any-file", help="file served for /any/<anything>")
    a = ap.parse_args(argv)
    if not os.path.isdir(a.root):
        ap.error("--root %s: not a directory" % a.root)
    srv = Server(a.root, a.port, a.any_file)

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % srv.port)
        os.replace(tmp, a.port_file)
    print(srv.url(), flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
