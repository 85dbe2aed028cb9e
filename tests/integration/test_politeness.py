"""Concurrency limits and connection reuse, observed from the server side:
download.per_host caps requests in flight per host name (thumbd counts them
itself, libcurl would only count connections), download.connections caps
the total, and keep-alive connections are reused."""

import common as C

SLOW = "slowhead/0.3/photos/hopper_128x128.jpg?n=%d"


def _run(t, urls, overrides, what):
    with C.Workdir(overrides) as wd:
        rc, out, err = wd.run_urls(urls, timeout=60)
        t.eq(rc, 0, "%s: exit 0 (stderr %s)" % (what, err[-500:]))
        C.stdout_summary(t, out, what, urls=len(urls), done=len(urls), failed=0)
        t.eq(wd.failed(), [], "%s: no failures" % what)
        t.eq(len([f for f in wd.outgoing_files() if f.endswith("_200.jpg")]), len(urls),
             "%s: one set of thumbnails per URL" % what)


def test_per_host_cap(t):
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv:
        port = srv.port
        urls = ["http://127.0.0.1:%d/%s" % (port, SLOW % i) for i in range(12)]
        urls += ["http://localhost:%d/%s" % (port, SLOW % i) for i in range(12)]
        _run(t, urls, {"download.per_host": 2, "download.connections": 16}, "per_host=2")
        per_host, total = srv.concurrency()
        a, b = "127.0.0.1:%d" % port, "localhost:%d" % port
        t.check(per_host.get(a, 0) <= 2 and per_host.get(b, 0) <= 2,
                "per_host=2: at most 2 requests at once per host name, saw %r" % per_host)
        t.check(per_host.get(a, 0) == 2 and per_host.get(b, 0) == 2,
                "per_host=2: the cap is used, not undershot (saw %r)" % per_host)
        t.check(total >= 3, "two hosts are served at the same time (most at once: %d)" % total)


def test_connections_cap_and_reuse(t):
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv:
        urls = [srv.url(SLOW % i) for i in range(15)]
        _run(t, urls, {"download.per_host": 8, "download.connections": 3}, "connections=3")
        _, total = srv.concurrency()
        t.check(total <= 3, "connections=3: at most 3 requests at once, saw %d" % total)
        t.eq(total, 3, "connections=3: the cap is used")
        # 15 requests, 3 at a time: keep-alive means a handful of connections, not 15
        t.check(srv.connections() <= 6, "connections are reused (%d for 15 requests)" % srv.connections())
