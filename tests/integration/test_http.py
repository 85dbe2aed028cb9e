"""HTTP behaviour against the misbehaving loopback server: status codes,
redirects, Content-Type, encodings, short bodies, size limit, refused
connections, duplicates, stalls."""

import os
import re
import shutil
import urllib.parse

import common as C

HOPPER = ("photos/hopper_128x128.jpg", "hopper_128x128", "JPEG", 128, 128)
IGUANA = ("photos/iguana_100x68.jpg", "iguana_100x68", "JPEG", 100, 68)
WEBP = ("edge/webp_lossy.webp", "webp_lossy", "WEBP", 128, 128)
PNG = ("edge/png_palette_8bit.png", "png_palette_8bit", "PNG", 32, 32)
FRANGI = ("photos/frangipani_480x360.jpg", "frangipani_480x360", "JPEG", 480, 360)
BIG = ("photos/trail_camera_2048x1536.jpg", "trail_camera_2048x1536", "JPEG", 2048, 1536)  # 425890 bytes


def _ok(t, wd, item, url, what):
    t.eq(wd.failures_for(url), [], "%s: no failure recorded" % what)
    C.check_thumbs(t, wd, item[1], item[2], item[3], item[4], what=what)


def _one_failure(t, wd, url, what):
    rs = wd.failures_for(url)
    t.eq(len(rs), 1, "%s: exactly one failed.tsv line (%r)" % (what, rs))
    return rs[0] if rs else ""


def _no_thumbs(t, wd, stem, what):
    t.eq([f for f in wd.outgoing_files() if f.startswith(stem + "_")], [], "%s: no thumbnails" % what)


def test_status_codes(t):
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir() as wd:
        u404, u500, good = srv.url("status/404"), srv.url("status/500"), srv.url(HOPPER[0])
        rc, out, err = wd.run_urls([u404, u500, good], timeout=150)
        t.eq(rc, 1, "status codes: exit status 1")
        t.eq(_one_failure(t, wd, u404, "404"), "HTTP 404", "404: reason")
        # 500 is transient: retried (3 retries by default), then recorded with the count
        t.eq(_one_failure(t, wd, u500, "500"), "HTTP 500 (after 4 attempts)", "500: reason")
        t.eq(len([p for m, p in srv.requests() if p.endswith("status/500")]), 4, "500: requested 4 times")
        _ok(t, wd, HOPPER, good, "good URL next to 404/500")
        n404 = len([1 for m, p in srv.requests() if p == "/status/404" and m == "GET"])
        t.eq(n404, 1, "404 is permanent: requested once")
        C.check_failed_format(t, wd, "status codes")


def test_redirects(t):
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir({"download.max_redirects": "2"}) as wd:
        two = srv.url("redirect/2/" + HOPPER[0])
        five = srv.url("redirect/5/" + IGUANA[0])
        rc, out, err = wd.run_urls([two, five])
        t.eq(rc, 1, "redirects: exit status 1")
        _ok(t, wd, HOPPER, two, "redirect chain of 2 (max_redirects=2)")
        r = _one_failure(t, wd, five, "redirect chain of 5 (max_redirects=2)")
        t.check("redirect" in r.lower(), "chain of 5 > max_redirects: reason mentions redirect (%r)" % r)
        _no_thumbs(t, wd, IGUANA[1], "chain of 5")


def test_redirect_to_other_schemes_and_loops(t):
    """A Location: file:/// or ftp:// must not be followed (the file is never
    read), a redirect loop ends as a failure."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    q = urllib.parse.quote
    with C.serve(cdir) as srv, C.Workdir() as wd:
        local = os.path.join(cdir, HOPPER[0])
        to_file = srv.url("location/" + q("file://" + local, safe=""))
        to_ftp = srv.url("location/" + q("ftp://127.0.0.1:%d/%s" % (srv.port, IGUANA[0]), safe=""))
        loop = srv.url("location/loop.jpg")     # Location: loop.jpg (relative) = itself
        rc, out, err = wd.run_urls([to_file, to_ftp, loop], timeout=60)
        t.eq(rc, 1, "redirects to other schemes / loops: exit status 1")
        for u, what in ((to_file, "redirect to file:///"), (to_ftp, "redirect to ftp://"),
                        (loop, "redirect loop")):
            r = _one_failure(t, wd, u, what)
            t.check(r.strip() != "", "%s: a reason is given (%r)" % (what, r))
        r = (wd.failures_for(loop) or [""])[0]
        t.check("redirect" in r.lower(), "redirect loop: reason mentions redirect (%r)" % r)
        t.eq(wd.thumbs(), [], "redirects to other schemes / loops: no thumbnails at all")
        t.eq(wd.incoming_files(), [], "redirects to other schemes / loops: incoming/ empty")


def test_content(t):
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir() as wd:
        html = srv.url("ctype/text%2Fhtml/broken/html_named_as.jpg")
        plain = srv.url("ctype/text/plain/" + HOPPER[0])
        gz = srv.url("gzip/" + WEBP[0])
        chunked = srv.url("chunked/" + IGUANA[0])
        nolen = srv.url("nolength/" + PNG[0])
        short = srv.url("short/" + FRANGI[0])
        rc, out, err = wd.run_urls([html, plain, gz, chunked, nolen, short], timeout=120)
        t.eq(rc, 1, "content: exit status 1")
        t.eq(_one_failure(t, wd, html, "HTML served as text/html"), "not an image (text/html)",
             "HTML served as text/html: reason")
        _ok(t, wd, HOPPER, plain, "image served as text/plain (sniffed)")
        _ok(t, wd, WEBP, gz, "gzip Content-Encoding")
        _ok(t, wd, IGUANA, chunked, "chunked Transfer-Encoding")
        _ok(t, wd, PNG, nolen, "no Content-Length, body ends at close")
        r = _one_failure(t, wd, short, "body shorter than Content-Length")
        t.check(any(w in r.lower() for w in ("truncated", "partial")),
                "short body: reason mentions truncated/partial (%r)" % r)
        _no_thumbs(t, wd, FRANGI[1], "short body")
        t.eq(wd.incoming_files(), [], "content: incoming/ empty (no partial download left)")
        t.eq(wd.base_strays(), [], "content: no partial file anywhere else")
        t.eq(wd.stray_outgoing(C.thumb_names(HOPPER[1], "JPEG") + C.thumb_names(WEBP[1], "WEBP") +
                               C.thumb_names(IGUANA[1], "JPEG") + C.thumb_names(PNG[1], "PNG")), [],
             "content: outgoing/ holds only the expected thumbnails")


def test_max_bytes(t):
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir({"download.max_bytes": "100K"}) as wd:
        big, small = srv.url(BIG[0]), srv.url(HOPPER[0])
        chunked_big = srv.url("chunked/" + BIG[0])
        rc, out, err = wd.run_urls([big, small, chunked_big])
        t.eq(rc, 1, "max_bytes=100K: exit status 1")
        # the length the server declared, not curl's -1 after it refused it
        r = _one_failure(t, wd, big, "400 KB body > max_bytes=100K")
        t.eq(r, "too large: Content-Length %d > max_bytes 102400" % os.path.getsize(os.path.join(cdir, BIG[0])),
             "400 KB body > max_bytes: reason gives the Content-Length")
        r = _one_failure(t, wd, chunked_big, "400 KB chunked body (no Content-Length) > max_bytes")
        t.eq(r, "too large: more than 102400 bytes (max_bytes)", "chunked 400 KB > max_bytes: reason")
        _ok(t, wd, HOPPER, small, "small image under max_bytes")
        _no_thumbs(t, wd, BIG[1], "too large body")
        t.eq(wd.incoming_files(), [], "max_bytes: incoming/ empty")


def test_recycled_download_files(t):
    """Downloads reuse the files of finished ones (spare.c) without emptying
    them first: each must end up exactly as long as its own body.  After the
    whole of a 400 KB JPEG, its first 2 KB come as complete responses, one
    at a time, into recycled files: a leftover tail would make them the
    whole JPEG again and give thumbnails instead of 'truncated JPEG'."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir({"download.connections": "1", "download.per_host": "1",
                                          "resize.workers": "1"}) as wd:
        big = srv.url(BIG[0])
        heads = [srv.url("later/0.15/head/2048/%s?n=%d" % (BIG[0], i)) for i in range(6)]
        small = srv.url("slowhead/0.15/" + HOPPER[0])
        rc, out, err = wd.run_urls([big] + heads + [small], timeout=120)
        t.eq(rc, 1, "recycled files: exit status 1 (the cut bodies fail)")
        _ok(t, wd, BIG, big, "400 KB JPEG first")
        for i, u in enumerate(heads):
            t.eq(wd.failures_for(u), ["truncated JPEG"],
                 "first 2 KB of it, %d, in a recycled file: 'truncated JPEG'" % i)
        _ok(t, wd, HOPPER, small, "small JPEG after them")
        t.eq(wd.incoming_files(), [], "recycled files: incoming/ holds no download at the end")


def test_open_files_limit(t):
    """A hard open-files limit below what connections needs (ulimit -n 120
    against 128 connections: a socket and a .part file each, and curl's
    own): thumbd says so and opens fewer connections, and every URL gets
    its thumbnails; before, the transfers past the limit failed with 'Too
    many open files' or as connect failures."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    prlimit = shutil.which("prlimit")
    if not t.check(prlimit is not None, "prlimit is installed (util-linux)"):
        return
    n = 200
    with C.serve(cdir) as srv, C.Workdir() as wd:
        urls = [srv.url("slowalias/0.3/photos%%2Fhopper_128x128.jpg/h%d.jpg" % i) for i in range(n)]
        rc, out, err = wd.run(wd.write_list(urls), timeout=120, prefix=[prlimit, "--nofile=120:120"])
        t.eq(rc, 0, "ulimit -n 120: exit status 0 (stderr %r)" % err[-600:])
        t.check("thumbd: warning: open files limited to 120 (ulimit -n): 16 connections instead of 128" in err,
                "ulimit -n 120: stderr says how many connections fit (%r)" % err[-600:])
        t.check(any("16 connections" in l and "starting" in l for l in wd.log_lines() or []),
                "ulimit -n 120: the log's start line shows the connections used")
        t.eq(wd.failed_lines(), [], "ulimit -n 120: no URL failed")
        t.eq(len(wd.outgoing_files()), 3 * n, "ulimit -n 120: 3 thumbnails for each of the %d URLs" % n)


def test_loop_cannot_start(t):
    """So few open files that the download loop cannot be set up: nothing
    was done, so the exit status is 1, not 0 (which says every URL made its
    thumbnails), and stderr says why."""
    prlimit = shutil.which("prlimit")
    if not t.check(prlimit is not None, "prlimit is installed (util-linux)"):
        return
    with C.Workdir() as wd:
        rc, out, err = wd.run(wd.write_list(["http://127.0.0.1:1/x.jpg"]), timeout=60,
                              prefix=[prlimit, "--nofile=13:13"])
        t.eq(rc, 1, "ulimit -n 13: exit status 1 (stderr %r)" % err[-400:])
        t.check("Too many open files" in err, "ulimit -n 13: stderr says why (%r)" % err[-400:])


CAR = ("photos/car_interior_2164x1626.jpg", 1010466)
WRITE_PIECE = 128 * 1024        # fetch.c FETCH_WRITE_BUFFER
READ_TURN = 16                  # fetch.c READ_TURN


def _download_trace(trace):
    """strace -f -y lines -> ({download temp file: writes to it}, claims written to the
    name registry before the first request went out, all claims)."""
    writes, claims, before = {}, 0, None
    for line in trace:
        m = re.search(r'\b(write|sendto)\((\d+)<([^>]*)>', line)
        if not m:
            continue
        call, path = m.group(1), m.group(3)
        if call == "write" and os.path.basename(path).startswith(".thumbd-part."):
            name = os.path.basename(path)
            writes[name] = writes.get(name, 0) + 1
        elif call == "write" and path.endswith("/.thumbd-names"):
            claims += 1
        elif call == "sendto" and path.startswith(("TCP:", "socket:")) and before is None:
            before = claims
    return writes, before, claims


def test_download_syscalls(t):
    """Two costs of the download loop, counted in system calls.  A body is
    written to its .part file in pieces of up to 128 KB: libcurl hands it
    over 16 KB at a time, and a write per piece was a sixth of the fetch
    thread's time on 300 MB of photos.  And the first requests go out after
    a turn or two of reading the list, not after up to 4 x connections URLs
    have each been claimed on disk."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    n = 300
    with C.serve(cdir) as srv, C.Workdir() as wd:
        big = [srv.url("alias/%s/car%d.jpg" % (urllib.parse.quote(CAR[0], safe=""), i)) for i in range(3)]
        small = [srv.url("slowalias/0.05/%s/n%03d.jpg" % (urllib.parse.quote(HOPPER[0], safe=""), i))
                 for i in range(n)]
        r = wd.run_traced(t, wd.write_list(big + small), "write,sendto", timeout=180)
        if r is None:
            return
        rc, err, tr, _ = r
        t.eq(rc, 0, "download syscalls: exit status 0 (stderr %r; failed %r)" % (err[-300:], wd.failed()[:3]))
        t.eq(len(wd.thumbs()), 3 * (n + 3), "download syscalls: three thumbnails per URL")
        with open(tr, encoding="utf-8", errors="replace") as f:
            writes, before, claims = _download_trace(f)
        most = -(-CAR[1] // WRITE_PIECE) + 1
        for i in range(3):
            k = ".thumbd-part.car%d" % i
            t.check(1 <= writes.get(k, 0) <= most, "download syscalls: the 1 MB body of car%d.jpg written in "
                    "%d write()s (1 to %d; 16 KB pieces would be 62)" % (i, writes.get(k, 0), most))
        t.eq(claims, n + 3, "download syscalls: one name claim per URL seen in the trace")
        t.check(before is not None and before <= 3 * READ_TURN,
                "download syscalls: the first request went out after %r of %d claims (want <= %d: "
                "a turn or two of reading the list)" % (before, n + 3, 3 * READ_TURN))


def test_connection_refused(t):
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir({"download.connect_timeout": "5"}) as wd:
        refused = "http://127.0.0.1:%d/nobody-listens.jpg" % C.free_port()
        good = srv.url(HOPPER[0])
        rc, out, err = wd.run_urls([refused, good], timeout=120)
        t.eq(rc, 1, "connection refused: exit status 1")
        r = _one_failure(t, wd, refused, "connection refused")
        t.check(r.startswith("cannot connect to 127.0.0.1 port ")
                and r.endswith("Connection refused (after 4 attempts)"),
                "connection refused: the reason names host, port and cause (%r)" % r)
        _ok(t, wd, HOPPER, good, "run continues after a refused connection")


def test_duplicate_url(t):
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir() as wd:
        u = srv.url(HOPPER[0])
        rc, out, err = wd.run_urls([u, srv.url(IGUANA[0]), u])
        t.eq(rc, 0, "same URL twice: exit status 0")
        t.eq(wd.failed_lines(), [], "same URL twice: no failure line for the duplicate")
        _ok(t, wd, HOPPER, u, "same URL twice")
        exp = C.thumb_names(HOPPER[1], "JPEG") + C.thumb_names(IGUANA[1], "JPEG")
        t.eq(sorted(wd.thumbs()), sorted(exp), "same URL twice: one set of thumbnails (no hashed second name)")
        gets = [p for m, p in srv.requests() if m == "GET" and p == "/" + HOPPER[0]]
        t.eq(len(gets), 1, "same URL twice: downloaded once")


def test_slow_url_does_not_hold_up_others(t):
    """One URL whose server takes 6 s to answer must not delay or fail the
    other URLs of the same host (nor count against their connect timeout)."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir({"download.connect_timeout": "2", "download.timeout": "30"}) as wd:
        slow = srv.url("slowhead/6/" + FRANGI[0])
        goods = [(HOPPER, srv.url(HOPPER[0])), (IGUANA, srv.url(IGUANA[0])),
                 (WEBP, srv.url(WEBP[0])), (PNG, srv.url(PNG[0]))]
        rc, out, err = wd.run_urls([slow] + [u for _, u in goods], timeout=60)
        t.eq(rc, 0, "slow URL first in the list: exit status 0 (failed: %r)" % wd.failed())
        for item, u in goods:
            _ok(t, wd, item, u, "same host as a 6 s slow URL (connect_timeout=2)")
        _ok(t, wd, FRANGI, slow, "the slow URL itself (6 s < timeout 30)")

        def mtimes(stem, ext):
            ps = [os.path.join(wd.outgoing, n) for n in C.thumb_names(stem, ext)]
            return [os.stat(p).st_mtime for p in ps if os.path.exists(p)]
        good_t = [m for item, _ in goods for m in mtimes(item[1], item[2])]
        slow_t = mtimes(FRANGI[1], FRANGI[2])
        if t.check(good_t and slow_t, "thumbnail times available"):
            t.check(max(good_t) < min(slow_t) - 3.0,
                    "the other URLs finished without waiting for the slow one "
                    "(their last thumbnail %.1f s before the slow URL's first; want > 3 s)"
                    % (min(slow_t) - max(good_t)))


def test_stalls_and_drops(t):
    """A server that hangs up without answering, one that stalls the body,
    one that never answers: each ends as a failure within the configured limits."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    # retries 1: the URL with no answer takes the whole timeout per attempt
    cfg = {"download.low_speed_limit": "1024", "download.low_speed_time": "2",
           "download.timeout": "6", "download.connect_timeout": "3", "download.retries": "1"}
    with C.serve(cdir) as srv, C.Workdir(cfg) as wd:
        drop = srv.url("drop/" + HOPPER[0])
        stall = srv.url("stallbody/60/" + FRANGI[0])
        slow = srv.url("slowhead/60/" + IGUANA[0])
        good = srv.url(WEBP[0])
        rc, out, err = wd.run_urls([drop, stall, slow, good], timeout=110)
        t.eq(rc, 1, "stalls and drops: exit status 1")
        for u, what in ((drop, "connection closed without an answer"),
                        (stall, "body stalled after 1 KiB (low_speed_time=2)"),
                        (slow, "no answer for 60 s (timeout=6)")):
            r = _one_failure(t, wd, u, what)
            t.check(r.strip() != "", "%s: a reason is given (%r)" % (what, r))
        _ok(t, wd, WEBP, good, "good URL next to stalls")
        t.eq(wd.incoming_files(), [], "stalls and drops: incoming/ empty")


def _refusing_proxy():
    """A proxy on 127.0.0.1 that answers 403 to everything (CONNECT too);
    -> (port, stop)."""
    import socket
    import threading
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)
    ls.settimeout(0.2)
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            try:
                c, _ = ls.accept()
            except OSError:
                continue
            try:
                c.settimeout(2)
                c.recv(65536)
                c.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            c.close()
        ls.close()
    th = threading.Thread(target=loop, daemon=True)
    th.start()
    return ls.getsockname()[1], lambda: (stop.set(), th.join())


def test_proxy_failures(t):
    """Proxies come from the environment as with curl(1); when one fails, the
    reason says it was the proxy, not the origin, and the log names the
    variables in use."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    dead = C.free_port()
    pport, stop = _refusing_proxy()
    try:
        with C.serve(cdir) as srv, C.Workdir({"download.retries": "0"}) as wd:
            url = srv.url(HOPPER[0])
            env = dict(os.environ, http_proxy="http://127.0.0.1:%d" % dead)
            env.pop("no_proxy", None)
            env.pop("NO_PROXY", None)
            rc, out, err = wd.run(wd.write_list([url]), env=env)
            t.eq(rc, 1, "dead proxy: exit status 1")
            r = _one_failure(t, wd, url, "dead proxy")
            t.check(r.startswith("cannot connect to the proxy: ") and ("port %d" % dead) in r,
                    "dead proxy: the reason names the proxy and its port (%r)" % r)
            t.eq([p for m, p in srv.requests()], [], "dead proxy: the origin saw no request")
            t.check(any("proxy settings from the environment: http_proxy=http://127.0.0.1:%d" % dead in l
                        for l in wd.log_lines()), "dead proxy: the log names http_proxy")
        with C.Workdir({"download.retries": "0"}) as wd:
            url = "https://127.0.0.1:%d/x.jpg" % C.free_port()
            env = dict(os.environ, https_proxy="http://127.0.0.1:%d" % pport)
            env.pop("no_proxy", None)
            env.pop("NO_PROXY", None)
            rc, out, err = wd.run(wd.write_list([url]), env=env)
            t.eq(rc, 1, "proxy refusing CONNECT: exit status 1")
            t.eq(_one_failure(t, wd, url, "proxy refusing CONNECT"), "the proxy answered HTTP 403 to CONNECT",
                 "proxy refusing CONNECT: reason")
        # no proxy variable: a connection refused names the origin, as before
        with C.Workdir({"download.retries": "0"}) as wd:
            port = C.free_port()
            url = "http://127.0.0.1:%d/x.jpg" % port
            env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
            rc, out, err = wd.run(wd.write_list([url]), env=env)
            t.eq(_one_failure(t, wd, url, "no proxy"), "cannot connect to 127.0.0.1 port %d: Connection refused" % port,
                 "no proxy: the origin's host and port")
    finally:
        stop()
