"""HTTPS and HTTP/2: a test CA and a server certificate for IP 127.0.0.1 made
with the openssl CLI; a valid chain (download.ca_file) downloads, an
untrusted certificate or a host name the certificate does not cover fails
with "TLS: ..." after one connection (certificate errors are permanent);
nghttpd (Debian nghttp2-server) serves HTTP/2, where per_host counts
streams and requests share few connections."""

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

import common as C
import fault_cases as FC
import faultkit as K
import httpd

CFG = dict(FC.FAST, **{"download.retry_delay": "0.2"})


def _certs(t, d):
    try:
        return K.make_certs(d)
    except RuntimeError as e:
        t.fail("test certificates: %s" % e)
        return None


def test_https_certificates(t):
    cdir = C.corpus(t)
    if cdir is None:
        return
    tmp = tempfile.mkdtemp(prefix="thumbd-it-tls-")
    try:
        certs = _certs(t, tmp)
        if certs is None:
            return
        ctx = K.server_context(certs)
        good_srv = httpd.start(cdir, ssl_context=ctx)
        wrong_name = httpd.start(cdir, ssl_context=ctx)       # reached as "localhost": not in the cert
        untrusted = httpd.start(cdir, ssl_context=ctx)        # reached without ca_file
        try:
            with C.Workdir(dict(CFG, **{"download.ca_file": certs["ca"]})) as wd:
                goods = [(FC.H, "hopper_128x128", "JPEG", 128, 128), (FC.P, "png_rgba_photo_500x500", "PNG", 500, 500),
                         (FC.W, "webp_lossy", "WEBP", 128, 128)]
                urls = [good_srv.url(g[0]) for g in goods]
                bad = wrong_name.url(FC.I, host="localhost")
                rc, out, err = wd.run_urls(urls + [bad], timeout=60)
                t.eq(rc, 1, "https with ca_file: exit 1 (one name mismatch)")
                for g, u in zip(goods, urls):
                    t.eq(wd.failures_for(u), [], "https, valid certificate: %s not failed" % g[0])
                    t.eq(K.complete_thumbs(wd, *g[1:]), None, "https, valid certificate: %s done" % g[0])
                rs = wd.failures_for(bad)
                t.check(len(rs) == 1 and rs[0].startswith("TLS: ") and "(after" not in rs[0],
                        "https, certificate not for 'localhost': one failure starting 'TLS: ', not retried (%r)" % rs)
                t.eq(wrong_name.accepts(), 1, "https, name mismatch: exactly one connection (not retried)")
                t.eq(wrong_name.requests(), [], "https, name mismatch: no HTTP request sent")
                t.eq(len(good_srv.tls_errors()), 0, "https, valid certificate: no handshake failed (%r)"
                     % good_srv.tls_errors()[:2])
                t.eq(K.leftovers(wd), [], "https: no partial files")

            with C.Workdir(CFG) as wd:
                u = untrusted.url(FC.H)
                rc, out, err = wd.run_urls([u], timeout=60)
                t.eq(rc, 1, "https, untrusted CA (no ca_file): exit 1")
                rs = wd.failures_for(u)
                t.check(len(rs) == 1 and rs[0].startswith("TLS: ") and "(after" not in rs[0],
                        "https, untrusted CA: one failure starting 'TLS: ', not retried (%r)" % rs)
                t.eq(untrusted.accepts(), 1, "https, untrusted CA: exactly one connection (not retried)")
                t.eq(untrusted.requests(), [], "https, untrusted CA: no HTTP request sent")
                t.eq(wd.thumbs(), [], "https, untrusted CA: no thumbnails")
        finally:
            for s in (good_srv, wrong_name, untrusted):
                s.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


H2_FILES = ["photos/trail_camera_2048x1536.jpg", "photos/hubble_deep_field_1000x872.jpg",
            "photos/coffee_600x400.png", "photos/field_970x644.jpg", "photos/tree_1024x772.webp",
            "photos/portrait_800x533.jpg"]


def _wait_port(port, secs=5.0):
    end = time.monotonic() + secs
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def _h2_log(text):
    """nghttpd -v output -> (sessions {id: protocol}, streams [(session, stream, path)],
    most streams open at once over all sessions, most at once on one session)."""
    protos, streams = [], []
    open_now, most, most_one = {}, 0, 0
    for line in text.splitlines():
        m = re.match(r"The negotiated protocol: (\S+)", line)
        if m:
            protos.append(m.group(1))
        m = re.match(r"\[id=(\d+)\] \[\s*[\d.]+\] recv \(stream_id=(\d+)\) :path: (\S+)", line)
        if m:
            sid = int(m.group(1))
            streams.append((sid, int(m.group(2)), m.group(3)))
            open_now.setdefault(sid, set()).add(int(m.group(2)))
        m = re.match(r"\[id=(\d+)\] \[\s*[\d.]+\] stream_id=(\d+) closed", line)
        if m:
            open_now.get(int(m.group(1)), set()).discard(int(m.group(2)))
        most = max(most, sum(len(v) for v in open_now.values()))
        most_one = max([most_one] + [len(v) for v in open_now.values()])
    return protos, streams, most, most_one


def test_http2_multiplexing(t):
    cdir = C.corpus(t)
    if cdir is None:
        return
    ng = shutil.which("nghttpd")
    if not t.check(ng is not None, "nghttpd is installed (Debian package nghttp2-server, part of make deps); "
                   "without it HTTP/2 is NOT tested"):
        return
    tmp = tempfile.mkdtemp(prefix="thumbd-it-h2-")
    proc = None
    try:
        certs = _certs(t, tmp)
        if certs is None:
            return
        www = os.path.join(tmp, "www")
        os.makedirs(www)
        items = []
        for i in range(24):
            src = H2_FILES[i % len(H2_FILES)]
            ext = os.path.splitext(src)[1]
            name = "h2_%02d%s" % (i, ext)
            shutil.copyfile(os.path.join(cdir, src), os.path.join(www, name))
            row = [r for r in C.manifest(cdir) if r["path"] == src][0]
            W, H = C.displayed_size(row)
            items.append((name, "h2_%02d" % i, row["format"], W, H))
        port = C.free_port()
        logf = open(os.path.join(tmp, "nghttpd.log"), "a")     # O_APPEND: the truncation below is safe
        proc = subprocess.Popen([ng, "-v", "-a", "127.0.0.1", "-d", www, str(port), certs["key"], certs["cert"]],
                                stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if not t.check(_wait_port(port), "nghttpd listens on 127.0.0.1:%d" % port):
            return
        with open(os.path.join(tmp, "nghttpd.log"), "w"):
            pass                            # forget the readiness probe
        cfg = dict(CFG, **{"download.ca_file": certs["ca"], "download.per_host": "4",
                           "download.connections": "16"})
        with C.Workdir(cfg) as wd:
            urls = ["https://127.0.0.1:%d/%s" % (port, it[0]) for it in items]
            rc, out, err = wd.run_urls(urls, timeout=90)
            time.sleep(0.3)
            proc.terminate()
            proc.wait(5)
            logf.close()
            with open(os.path.join(tmp, "nghttpd.log"), errors="replace") as f:
                text = f.read()
            t.eq(rc, 0, "http/2: exit 0 (failed %r)" % wd.failed()[:3])
            bad = [(it[0], K.complete_thumbs(wd, *it[1:])) for it in items]
            t.eq([b for b in bad if b[1] is not None], [], "http/2: every URL has complete thumbnails")
            protos, streams, most, most_one = _h2_log(text)
            t.check(protos and all(p == "h2" for p in protos),
                    "http/2: every connection negotiated h2 via ALPN (%r)" % protos)
            paths = sorted(p for _, _, p in streams)
            t.eq(paths, sorted("/" + it[0] for it in items), "http/2: each URL requested exactly once")
            sessions = sorted(set(s for s, _, _ in streams))
            t.check(1 <= len(sessions) <= 4, "http/2: %d requests over few connections (%d, per_host 4)"
                    % (len(streams), len(sessions)))
            t.check(most <= 4, "http/2: per_host=4 caps streams in flight (most at once: %d)" % most)
            # Concurrent streams on one connection depend on timing: the first
            # requests start together, before any connection has confirmed h2,
            # and thumbd sets no CURLOPT_PIPEWAIT (see fetch.c), so each may get
            # its own connection and later ones reuse an idle one.  What is
            # certain is that connections are reused as HTTP/2 sessions: a
            # later request on a session is stream 3, 5, ... of it.
            t.check(max([0] + [st for _, st, _ in streams]) >= 3,
                    "http/2: sessions carry several requests (highest stream id %d; most streams open at "
                    "once on one connection: %d)" % (max([0] + [st for _, st, _ in streams]), most_one))
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
