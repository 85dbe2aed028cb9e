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

Fault routes for retries, resume and hostile input.  "The exact URL" is the
request target with its query string, so "?n=1" and "?n=2" count separately:

    /flaky/N/CODE/PATH            the first N requests for the exact URL get status CODE, then the file
    /retryafter/N/CODE/WHEN/PATH  like flaky, with Retry-After: WHEN = "S" (seconds, sent as is)
                                  or "dateS" (an HTTP date S seconds from now)
    /reset/N/PATH                 the first N requests: full Content-Length, half the body, then RST
                                  (SO_LINGER 0); then the file
    /loris/PATH                   full Content-Length, then 1 byte per second
    /headersonly/SECS/PATH        headers with the full Content-Length, no body for SECS, then close
    /huge/SIZE/NAME               SIZE bytes (K/M/G suffix) starting like a JPEG, with Content-Length
    /hugechunked/SIZE/NAME        the same, chunked (no Content-Length)
    /hugeclose/SIZE/NAME          the same, no Content-Length, ends at close
    /gzipbomb/SIZE/NAME           Content-Encoding: gzip; small on the wire, SIZE bytes decoded
    /resumable/PATH               1st request for the exact URL: Accept-Ranges, ETag, Last-Modified,
                                  the full Content-Length but half the body, close; later requests
                                  honour Range: bytes=X- (with If-Range) as 206, else 200
    /norange/PATH                 1st request like /resumable/; later ones ignore Range (200, full)
    /rangesonly/KIND/PATH         like /resumable/ without a validator to guard a range: KIND "none"
                                  (no ETag, no Last-Modified) or "weak" (only a weak ETag); later
                                  requests' Range honoured as 206 whatever If-Range says
    /gzipresumable/PATH           like /norange/, gzip-encoded (a resume must not be tried)
    /gzipranges/PATH              the same with Content-Encoding before Accept-Ranges, and later
                                  requests' Range honoured on the encoded bytes (206)
    /gzipshort/PATH               gzip-encoded, the encoded Content-Length, half the encoded body,
                                  close (every time)
    /alias/ENC/NAME               the file at the percent-decoded ENC (e.g. photos%2Fx.jpg), any NAME
    /slowalias/SECS/ENC/NAME      the same after SECS
    /relative/PATH                302 with a relative Location ("../../PATH") that resolves to /PATH
    /pingpong/A/PATH              302 to /pingpong/B/PATH and back (a loop of two URLs)
    /empty/NAME                   200, Content-Type by NAME, empty body
    /later/SECS/ROUTE             waits SECS, then answers /ROUTE (any route above)
    /busy/MAX/SECS/PATH           a server with room for MAX requests at once: 503 at once when
                                  more than MAX requests (any route) are being answered, else
                                  waits SECS and sends the file; srv.busy() counts the 503s
    /serial/SECS/PATH             a server that answers one request at a time, first come first
                                  served: each waits for the ones before it, then SECS, then
                                  gets the file
    /head/N/PATH                  the first N bytes of the file as a whole 200 response (honest length)
    /html/NAME, /json/NAME        an HTML page / a JSON document (text/html, application/json), any NAME
    /noctype/PATH                 the file without a Content-Type header
    /junk/NAME                    no status line: "<html>oops</html>", then close (HTTP/0.9 style)
    /trailjunk/PATH               the file, then 0.05 s later junk bytes on the kept-alive
                                  connection (more body than announced, sent late)
    /chunkedshort/PATH            chunked, half the file, then close without the last chunk
    /chunkedbad/PATH              chunked, the first 8 KiB chunk, then a chunk size that is not hex
    /bigheader/SIZE/PATH          the file with an X-Big header of SIZE bytes (K/M suffix)
    /manyheaders/SIZE/PATH        the file with about SIZE bytes of 64-byte X-Many header lines
    /trickle/RATE/PATH            full Content-Length, then the body at RATE bytes/s (tenths of it
                                  every 0.1 s)
    /partial/N/PATH               206 with the first N bytes and their Content-Range, whatever
                                  the request asked (a Range or none)
    /hold/CODE/PATH               waits until the test calls srv.release_held() (at most 60 s),
                                  then answers status CODE (the file for 200); srv.held() counts
                                  the requests waiting now, release_held(N) waits for N answers

Every request is recorded (srv.log(): method, target, monotonic and wall time,
headers, connection), so tests can count retries, measure their spacing and
read Range headers.  Server options: ssl_context (HTTPS; the handshake runs
in the connection's thread, failures are counted in srv.tls_errors()),
max_conns (at most that many connections at once; any other is closed right
after accept and counted in srv.rejected()), srv.accepts() counts TCP accepts.

More fault behaviours: write a handler `def _route_x(h, rest)` and add
("/x/", _route_x) to ROUTES.  `h` is the request handler, `rest` the raw
(still percent-encoded) path after the prefix, without the query string.

Logging is silent unless THUMBD_HTTPD_LOG is set in the environment.
"""

import argparse
import email.utils
import gzip
import hashlib
import http.server
import io
import os
import posixpath
import signal
import socket
import ssl
import struct
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

    def setup(self):
        conn = self.request
        if isinstance(conn, ssl.SSLSocket):
            conn.settimeout(10)
            try:
                conn.do_handshake()
            except (ssl.SSLError, OSError) as e:
                self.server.note_tls_error(e)
                raise
            conn.settimeout(None)
        super().setup()

    def _dispatch(self):
        raw = self.path.split("?", 1)[0].split("#", 1)[0]
        host = self.headers.get("Host", "")
        self.nth = self.server.note_request(self.command, self.path, host, self.client_address,
                                            self.headers)
        try:
            return route(self, raw)
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

    def reset(self):
        """Abort the connection with a TCP RST (SO_LINGER 0, then close)."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        # the socket really closes when its last user (rfile) lets go of it
        self.connection.close()
        self.rfile.close()

    def send_head(self, code, ctype, length=None, extra_headers=(), close=False):
        self.send_response(code)
        if ctype is not None:
            self.send_header("Content-Type", ctype)
        if length is not None:
            self.send_header("Content-Length", str(length))
        for k, v in extra_headers:
            self.send_header(k, v)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()

    def write_quietly(self, data):
        """Write; False when the client has gone."""
        try:
            self.wfile.write(data)
            self.wfile.flush()
            return True
        except OSError:
            return False


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


def _after_delay(route):
    """A route "SECS/REST" that waits SECS, then answers REST like route does."""
    def delayed(h, rest):
        secs, rest = _secs_and_path(h, rest)
        if secs is None:
            return
        time.sleep(secs)
        route(h, rest)
    return delayed


def _route_slowhead(h, rest):
    _after_delay(_route_file)(h, rest)


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


# -- fault routes (retries, resume, hostile input) ---------------------------

def _int_and_rest(h, rest, what="number"):
    seg, _, path = rest.partition("/")
    try:
        return int(seg), path
    except ValueError:
        h.send_text(400, "bad %s %r\n" % (what, seg))
        return None, None


def _size(seg):
    mult = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}
    seg = seg.strip().upper()
    if seg and seg[-1] in mult:
        return int(float(seg[:-1]) * mult[seg[-1]])
    return int(seg)


def _route_flaky(h, rest, retry_after=None):
    n, rest = _int_and_rest(h, rest, "count")
    if n is None:
        return
    code, path = _int_and_rest(h, rest, "status")
    if code is None:
        return
    if retry_after is None and h.path.startswith("/retryafter/"):
        when, _, path = path.partition("/")
        if when.startswith("date"):
            retry_after = email.utils.formatdate(time.time() + float(when[4:]), usegmt=True)
        else:
            retry_after = when
    if h.nth <= n:
        extra = [("Retry-After", retry_after)] if retry_after else []
        return h.send_text(code, "status %d (request %d of the first %d)\n" % (code, h.nth, n), extra)
    _route_file(h, path)


def _route_reset(h, rest):
    n, path = _int_and_rest(h, rest, "count")
    if n is None:
        return
    if h.nth > n:
        return _route_file(h, path)
    full, data = h.read_file(path)
    if data is None:
        return
    h.send_head(200, content_type(full), len(data))
    h.write_quietly(data[:len(data) // 2])
    time.sleep(0.05)
    h.reset()


def _route_loris(h, rest):
    full, data = h.read_file(rest)
    if data is None:
        return
    h.send_head(200, content_type(full), len(data), close=True)
    if h.command == "HEAD":
        return
    for i in range(min(len(data), 600)):
        if h.server.stopping or not h.write_quietly(data[i:i + 1]):
            return
        time.sleep(1.0)
    h.reset()


def _route_headersonly(h, rest):
    secs, path = _secs_and_path(h, rest)
    if secs is None:
        return
    full, data = h.read_file(path)
    if data is None:
        return
    h.send_head(200, content_type(full), len(data), close=True)
    h.wfile.flush()
    end = time.monotonic() + secs
    while time.monotonic() < end and not h.server.stopping:
        time.sleep(0.1)
    h.hang_up()


JPEG_START = bytes.fromhex("ffd8ffe000104a46494600010100000100010000")


def _huge(h, rest, mode):
    seg, _, name = rest.partition("/")
    try:
        size = _size(seg)
    except ValueError:
        return h.send_text(400, "bad size %r\n" % seg)
    if mode == "length":
        h.send_head(200, "image/jpeg", size)
    elif mode == "chunked":
        h.send_head(200, "image/jpeg", None, [("Transfer-Encoding", "chunked")])
    else:
        h.send_head(200, "image/jpeg", None, close=True)
    if h.command == "HEAD":
        return
    block = b"\0" * 65536
    sent = 0
    while sent < size and not h.server.stopping:
        piece = (JPEG_START + block)[:65536] if sent == 0 else block
        piece = piece[:size - sent]
        out = b"%x\r\n%s\r\n" % (len(piece), piece) if mode == "chunked" else piece
        if not h.write_quietly(out):
            return
        sent += len(piece)
    if mode == "chunked":
        h.write_quietly(b"0\r\n\r\n")
    else:
        h.hang_up()


def _route_huge(h, rest):
    _huge(h, rest, "length")


def _route_hugechunked(h, rest):
    _huge(h, rest, "chunked")


def _route_hugeclose(h, rest):
    _huge(h, rest, "close")


_BOMBS = {}
_BOMBS_LOCK = threading.Lock()


def gzip_bomb(size):
    """gzip of SIZE bytes: a JPEG start then zeros (about 1000:1), cached."""
    with _BOMBS_LOCK:
        if size not in _BOMBS:
            buf = io.BytesIO()
            with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0) as g:
                g.write(JPEG_START)
                left = size - len(JPEG_START)
                block = b"\0" * (1 << 20)
                while left > 0:
                    g.write(block[:left])
                    left -= len(block)
            _BOMBS[size] = buf.getvalue()
        return _BOMBS[size]


def _route_gzipbomb(h, rest):
    seg, _, name = rest.partition("/")
    try:
        size = _size(seg)
    except ValueError:
        return h.send_text(400, "bad size %r\n" % seg)
    h.send_bytes(gzip_bomb(size), "image/jpeg", extra_headers=[("Content-Encoding", "gzip")])


def _validators(full, data):
    etag = '"%s"' % hashlib.sha256(data).hexdigest()[:16]
    lm = email.utils.formatdate(os.stat(full).st_mtime, usegmt=True)
    return etag, lm


def _send_cut(h, full, body, hdrs):
    """The first answer of the resume routes: the headers say the whole body
    is coming, half of it comes, the connection closes."""
    h.send_head(200, content_type(full), len(body), hdrs, close=True)
    if h.command != "HEAD":
        h.write_quietly(body[:len(body) // 2])
    h.hang_up()


def _send_range(h, full, body, hdrs):
    """A later answer that honours "Range: bytes=X-" (206, whatever If-Range
    says), else the whole body."""
    rng = h.headers.get("Range", "")
    if rng.startswith("bytes=") and rng.endswith("-") and rng[6:-1].isdigit() and int(rng[6:-1]) < len(body):
        m = int(rng[6:-1])
        return h.send_bytes(body[m:], content_type(full), 206,
                            hdrs + [("Content-Range", "bytes %d-%d/%d" % (m, len(body) - 1, len(body)))])
    h.send_bytes(body, content_type(full), 200, hdrs)


def _cut_first(h, full, data):
    """The first answer of /resumable/ and /norange/, with both validators."""
    etag, lm = _validators(full, data)
    _send_cut(h, full, data, [("Accept-Ranges", "bytes"), ("ETag", etag), ("Last-Modified", lm)])


def _route_resumable(h, rest):
    full, data = h.read_file(rest)
    if data is None:
        return
    if h.nth == 1:
        return _cut_first(h, full, data)
    etag, lm = _validators(full, data)
    hdrs = [("Accept-Ranges", "bytes"), ("ETag", etag), ("Last-Modified", lm)]
    rng = h.headers.get("Range", "")
    if_range = h.headers.get("If-Range")
    m = None
    if rng.startswith("bytes=") and rng.endswith("-"):
        try:
            m = int(rng[6:-1])
        except ValueError:
            m = None
    if m is not None and (if_range is None or if_range in (etag, lm)) and 0 <= m < len(data):
        return h.send_bytes(data[m:], content_type(full), 206,
                            hdrs + [("Content-Range", "bytes %d-%d/%d" % (m, len(data) - 1, len(data)))])
    h.send_bytes(data, content_type(full), 200, hdrs)


def _route_rangesonly(h, rest):
    kind, _, rest = rest.partition("/")
    full, data = h.read_file(rest)
    if data is None:
        return
    hdrs = [("Accept-Ranges", "bytes")]
    if kind == "weak":
        hdrs.append(("ETag", 'W/"%s"' % hashlib.sha256(data).hexdigest()[:16]))
    if h.nth == 1:
        return _send_cut(h, full, data, hdrs)
    _send_range(h, full, data, hdrs)


def _route_norange(h, rest):
    full, data = h.read_file(rest)
    if data is None:
        return
    if h.nth == 1:
        return _cut_first(h, full, data)
    etag, lm = _validators(full, data)
    h.send_bytes(data, content_type(full), 200,
                 [("Accept-Ranges", "bytes"), ("ETag", etag), ("Last-Modified", lm)])


def _route_gzipresumable(h, rest):
    full, data = h.read_file(rest)
    if data is None:
        return
    z = gzip.compress(data, mtime=0)
    etag, lm = _validators(full, z)
    hdrs = [("Accept-Ranges", "bytes"), ("ETag", etag), ("Last-Modified", lm),
            ("Content-Encoding", "gzip")]
    if h.nth == 1:
        return _send_cut(h, full, z, hdrs)
    h.send_bytes(z, content_type(full), 200, hdrs)


def _route_gzipranges(h, rest):
    full, data = h.read_file(rest)
    if data is None:
        return
    z = gzip.compress(data, mtime=0)
    etag, lm = _validators(full, z)
    # Content-Encoding before Accept-Ranges (the order /gzipresumable/ does not test)
    hdrs = [("Content-Encoding", "gzip"), ("Accept-Ranges", "bytes"), ("ETag", etag), ("Last-Modified", lm)]
    if h.nth == 1:
        return _send_cut(h, full, z, hdrs)
    _send_range(h, full, z, hdrs)


def _route_gzipshort(h, rest):
    full, data = h.read_file(rest)
    if data is None:
        return
    z = gzip.compress(data, mtime=0)
    h.send_head(200, content_type(full), len(z), [("Content-Encoding", "gzip")], close=True)
    if h.command != "HEAD":
        h.write_quietly(z[:len(z) // 2])
    h.hang_up()


def _route_alias(h, rest):
    enc, _, name = rest.partition("/")
    _route_file(h, enc)


def _route_slowalias(h, rest):
    _after_delay(_route_alias)(h, rest)


def _route_relative(h, rest):
    loc = "../" * (rest.count("/") + 1) + rest
    h.send_text(302, "redirect to %s\n" % loc, [("Location", loc)])


def _route_pingpong(h, rest):
    side, _, path = rest.partition("/")
    loc = "/pingpong/%s/%s" % ("B" if side == "A" else "A", path)
    h.send_text(302, "redirect to %s\n" % loc, [("Location", loc)])


def _route_empty(h, rest):
    h.send_bytes(b"", content_type(rest))


def _route_head(h, rest):
    n, path = _int_and_rest(h, rest, "byte count")
    if n is None:
        return
    full, data = h.read_file(path)
    if data is None:
        return
    h.send_bytes(data[:n], content_type(path))


def _route_html(h, rest):
    h.send_bytes(b"<!DOCTYPE html>\n<html><head><title>Not Found</title></head>"
                 b"<body><h1>Not Found</h1></body></html>\n", "text/html; charset=utf-8")


def _route_json(h, rest):
    h.send_bytes(b'{"error": "not found", "code": 404}\n', "application/json")


def _route_noctype(h, rest):
    full, data = h.read_file(rest)
    if data is None:
        return
    h.send_bytes(data, None)


def _route_junk(h, rest):
    h.write_quietly(b"<html>oops</html>")
    h.hang_up()


def _route_trailjunk(h, rest):
    full, data = h.read_file(rest)
    if data is None:
        return
    h.send_bytes(data, content_type(full))
    h.wfile.flush()
    time.sleep(0.05)
    h.write_quietly(b"<html>oops</html>")


def _chunked_then_close(h, rest, body_of):
    """The file's headers with Transfer-Encoding: chunked, body_of(data)'s
    bytes as they are (broken on purpose), then close."""
    full, data = h.read_file(rest)
    if data is None:
        return
    h.send_head(200, content_type(full), extra_headers=[("Transfer-Encoding", "chunked")], close=True)
    if h.command != "HEAD":
        h.write_quietly(body_of(data))
    h.hang_up()


def _chunks(data):
    return b"".join(b"%x\r\n%s\r\n" % (len(data[i:i + 8192]), data[i:i + 8192])
                    for i in range(0, len(data), 8192))


def _route_chunkedshort(h, rest):
    # half the file in 8 KiB chunks, no last chunk
    _chunked_then_close(h, rest, lambda data: _chunks(data[:len(data) // 2]))


def _route_chunkedbad(h, rest):
    # one 8 KiB chunk, then a size line that is not hex
    _chunked_then_close(h, rest, lambda data: _chunks(data[:8192]) + b"zz\r\n" + data[8192:])


def _with_headers(h, rest, headers_of):
    """SIZE/PATH: the file, with the extra headers headers_of(SIZE) returns."""
    seg, _, path = rest.partition("/")
    try:
        size = _size(seg)
    except ValueError:
        return h.send_text(400, "bad size %r\n" % seg)
    full, data = h.read_file(path)
    if data is None:
        return
    h.send_bytes(data, content_type(full), extra_headers=headers_of(size))


def _route_bigheader(h, rest):
    _with_headers(h, rest, lambda size: [("X-Big", "a" * size)])


def _route_manyheaders(h, rest):
    # 64-byte lines with ": " and CRLF
    _with_headers(h, rest, lambda size: [("X-Many", "a" * 54)] * max(1, size // 64))


def _route_partial(h, rest):
    n, path = _int_and_rest(h, rest, "byte count")
    if n is None:
        return
    full, data = h.read_file(path)
    if data is None:
        return
    part = data[:n]
    h.send_bytes(part, content_type(full), 206,
                 [("Content-Range", "bytes 0-%d/%d" % (len(part) - 1, len(data)))])


def _route_trickle(h, rest):
    rate, path = _int_and_rest(h, rest, "rate")
    if rate is None:
        return
    full, data = h.read_file(path)
    if data is None:
        return
    h.send_head(200, content_type(full), len(data), close=True)
    if h.command == "HEAD":
        return
    step = max(1, rate // 10)
    for i in range(0, len(data), step):
        if h.server.stopping or not h.write_quietly(data[i:i + step]):
            return
        time.sleep(0.1)
    h.hang_up()


def route(h, raw):
    for prefix, fn in ROUTES:
        if raw.startswith(prefix):
            return fn(h, raw[len(prefix):])
    return _route_file(h, raw.lstrip("/"))


def _route_busy(h, rest):
    most, rest = _int_and_rest(h, rest, "count")
    if most is None:
        return
    if h.server.answering() > most:
        h.server.note_busy()
        return h.send_text(503, "busy: more than %d requests at once\n" % most)
    _after_delay(_route_file)(h, rest)


def _route_serial(h, rest):
    # first come, first served (threading.Lock alone is not fair: a newcomer
    # could jump the queue, which no single-worker server does)
    srv = h.server
    with srv.serial_cv:
        mine = srv.serial_next[0]
        srv.serial_next[0] += 1
        while srv.serial_next[1] != mine:
            srv.serial_cv.wait()
    try:
        _after_delay(_route_file)(h, rest)
    finally:
        with srv.serial_cv:
            srv.serial_next[1] += 1
            srv.serial_cv.notify_all()


def _route_hold(h, rest):
    code, path = _int_and_rest(h, rest, "status")
    if code is None:
        return
    srv = h.server
    with srv.hold_cv:
        srv.holding += 1
        srv.hold_cv.notify_all()
        srv.hold_cv.wait_for(lambda: srv.hold_open, 60)
        srv.holding -= 1
    try:
        if code == 200:
            return _route_file(h, path)
        h.send_text(code, "status %d after a hold\n" % code)
    finally:
        with srv.hold_cv:
            srv.hold_answered += 1
            srv.hold_cv.notify_all()


def _route_later(h, rest):
    _after_delay(lambda h, r: route(h, "/" + r))(h, rest)


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
    ("/flaky/", _route_flaky),
    ("/busy/", _route_busy),
    ("/serial/", _route_serial),
    ("/retryafter/", _route_flaky),
    ("/reset/", _route_reset),
    ("/loris/", _route_loris),
    ("/headersonly/", _route_headersonly),
    ("/huge/", _route_huge),
    ("/hugechunked/", _route_hugechunked),
    ("/hugeclose/", _route_hugeclose),
    ("/gzipbomb/", _route_gzipbomb),
    ("/resumable/", _route_resumable),
    ("/norange/", _route_norange),
    ("/rangesonly/", _route_rangesonly),
    ("/gzipresumable/", _route_gzipresumable),
    ("/gzipranges/", _route_gzipranges),
    ("/gzipshort/", _route_gzipshort),
    ("/alias/", _route_alias),
    ("/slowalias/", _route_slowalias),
    ("/relative/", _route_relative),
    ("/pingpong/", _route_pingpong),
    ("/empty/", _route_empty),
    ("/later/", _route_later),
    ("/head/", _route_head),
    ("/html/", _route_html),
    ("/json/", _route_json),
    ("/noctype/", _route_noctype),
    ("/junk/", _route_junk),
    ("/trailjunk/", _route_trailjunk),
    ("/chunkedshort/", _route_chunkedshort),
    ("/bigheader/", _route_bigheader),
    ("/chunkedbad/", _route_chunkedbad),
    ("/manyheaders/", _route_manyheaders),
    ("/partial/", _route_partial),
    ("/trickle/", _route_trickle),
    ("/hold/", _route_hold),
]


# -- server -----------------------------------------------------------------

class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, root, port=0, any_file=None, ssl_context=None, max_conns=None):
        self.root = os.path.realpath(root) if root is not None else None
        self.any_file = os.path.realpath(any_file) if any_file else None
        self.ssl_context = ssl_context
        self.max_conns = max_conns
        self.stopping = False
        self._lock = threading.Lock()
        self._requests = []
        self._log = []              # one dict per request, see log()
        self._counts = {}           # request target -> requests so far
        self._active = {}           # Host header -> requests being answered now
        self._max_active = {}       # Host header -> the most seen at once
        self._max_total = 0
        self._clients = set()       # (ip, port) of every connection that sent a request
        self._accepts = 0
        self._open_conns = set()
        self._max_conns_seen = 0
        self._rejected = 0
        self._busy = 0
        self.serial_cv = threading.Condition()
        self.serial_next = [0, 0]   # next ticket to give, ticket being served
        self.hold_cv = threading.Condition()
        self.hold_open = False      # /hold/: released
        self.holding = 0            # /hold/: requests waiting now
        self.hold_answered = 0      # /hold/: answers sent
        self._tls_errors = []
        self._thread = None
        super().__init__(("127.0.0.1", port), _Handler)

    def held(self):
        """Requests of /hold/ waiting for release_held()."""
        with self.hold_cv:
            return self.holding

    def release_held(self, wait_for=0, timeout=30):
        """Let every /hold/ request, now and later, answer; then wait (at most
        timeout seconds) until wait_for of them have been answered.  -> answers sent."""
        with self.hold_cv:
            self.hold_open = True
            self.hold_cv.notify_all()
            self.hold_cv.wait_for(lambda: self.hold_answered >= wait_for, timeout)
            return self.hold_answered

    @property
    def port(self):
        return self.server_address[1]

    @property
    def scheme(self):
        return "https" if self.ssl_context is not None else "http"

    def url(self, path="", host="127.0.0.1"):
        return "%s://%s:%d/%s" % (self.scheme, host, self.port, path.lstrip("/"))

    # connections

    def get_request(self):
        sock, addr = self.socket.accept()
        with self._lock:
            self._accepts += 1
        if self.ssl_context is not None:
            sock = self.ssl_context.wrap_socket(sock, server_side=True,
                                                do_handshake_on_connect=False)
        return sock, addr

    def process_request(self, request, client_address):
        with self._lock:
            full = self.max_conns is not None and len(self._open_conns) >= self.max_conns
            if full:
                self._rejected += 1
            else:
                self._open_conns.add(id(request))
                self._max_conns_seen = max(self._max_conns_seen, len(self._open_conns))
        if full:
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._lock:
            self._open_conns.discard(id(request))
        super().shutdown_request(request)

    def note_tls_error(self, e):
        with self._lock:
            self._tls_errors.append(str(e))

    # requests

    def note_request(self, method, path, host="", client=None, headers=None):
        """Records a request; -> how many requests for this exact target so far (1 = first)."""
        with self._lock:
            self._requests.append((method, path))
            n = self._counts.get(path, 0) + 1
            self._counts[path] = n
            self._log.append({"method": method, "path": path, "host": host,
                              "t": time.monotonic(), "wall": time.time(),
                              "headers": {k.lower(): v for k, v in (headers or {}).items()},
                              "client": tuple(client[:2]) if client else None})
            self._active[host] = self._active.get(host, 0) + 1
            self._max_active[host] = max(self._max_active.get(host, 0), self._active[host])
            self._max_total = max(self._max_total, sum(self._active.values()))
            if client is not None:
                self._clients.add(tuple(client[:2]))
            return n

    def note_done(self, host):
        with self._lock:
            self._active[host] -= 1

    def answering(self):
        """Requests being answered now, this one included."""
        with self._lock:
            return sum(self._active.values())

    def note_busy(self):
        with self._lock:
            self._busy += 1

    def busy(self):
        """503s sent by /busy/."""
        with self._lock:
            return self._busy

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

    def log(self, path=None, method=None):
        """Recorded requests (dicts: method, path, host, t (monotonic), wall
        (time.time()), headers (lower-case names), client), optionally only
        those for one exact request target and/or method."""
        with self._lock:
            return [dict(e) for e in self._log
                    if (path is None or e["path"] == path) and (method is None or e["method"] == method)]

    def hits(self, path, method="GET"):
        """Monotonic times of the requests for one exact target."""
        return [e["t"] for e in self.log(path, method)]

    def accepts(self):
        """TCP connections accepted (including rejected and failed TLS ones)."""
        with self._lock:
            return self._accepts

    def rejected(self):
        with self._lock:
            return self._rejected

    def max_open_connections(self):
        with self._lock:
            return self._max_conns_seen

    def tls_errors(self):
        with self._lock:
            return list(self._tls_errors)

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
        self.stopping = True
        if self._thread is not None:
            self.shutdown()
            self._thread.join(5)
            self._thread = None
        self.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start(root, port=0, any_file=None, ssl_context=None, max_conns=None):
    """Serve root on 127.0.0.1:port (0 = any free port) in a daemon thread."""
    return Server(root, port, any_file, ssl_context, max_conns).start_thread()


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
