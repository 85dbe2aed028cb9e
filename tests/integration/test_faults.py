"""Failure handling (README "Failure handling") against a loopback server that
misbehaves on purpose: the data-driven fault table (fault_cases.py), then
what a table row cannot express: the circuit breaker, host_delay spacing,
a server that allows two connections, rerun/skip semantics with
--retry-failed, and a full disk (RLIMIT_FSIZE)."""

import os
import re
import shutil
import threading
import time
import urllib.parse

import common as C
import fault_cases as FC
import faultkit as K
import httpd

SLACK = FC.GAP_SLACK
LATE = FC.GAP_SLACK_LATE


# -- the table -------------------------------------------------------------------

def _ext(path):
    return os.path.splitext(path)[1] or ".jpg"


def _tokens(text, case, srv):
    size = case.get("_len", 0)
    return (text.replace("{len}", str(size)).replace("{half}", str(size // 2))
            .replace("{port}", str(srv.port)).replace("{host}", case.get("_host", ""))
            .replace("{refused}", str(case.get("_refused", ""))))


def _prepare(cases, cdir, www, srv, hole):
    """Copies each case's file to www/c/<id>.<ext>, builds its URL and request target."""
    refused = C.free_port()
    for c in cases:
        src = c.get("file", FC.H)
        rel = "c/%s%s" % (c["id"], _ext(src))
        os.makedirs(os.path.join(www, "c"), exist_ok=True)
        shutil.copyfile(os.path.join(cdir, src), os.path.join(www, rel))
        c["_len"] = os.path.getsize(os.path.join(www, rel))
        c["_refused"] = refused
        name = c["id"] + ".jpg"
        if "url" in c:
            c["_url"] = c["url"].format(refused=refused, blackhole=hole.hostport if hole else "", name=name)
            c["_target"] = None
        else:
            target = "/" + c["route"].format(file=rel, name=name, refused=refused)
            c["_url"] = srv.url(target)
            c["_target"] = target
        c["_host"] = urllib.parse.urlsplit(c["_url"]).hostname


def _run_batch(name, cases, cdir, res):
    """One thumbd run over the batch's cases (called in a thread: no checks here)."""
    www = K.web_root()
    hole = K.Blackhole() if any("{blackhole}" in c.get("url", "") for c in cases) else None
    srv = httpd.start(www)
    wd = C.Workdir(FC.BATCHES[name])
    r = {"www": www, "srv": srv, "wd": wd, "hole": hole, "error": None}
    res[name] = r
    try:
        _prepare(cases, cdir, www, srv, hole)
        for c in cases:
            if c.get("route", "").startswith("gzipbomb/"):
                httpd.gzip_bomb(httpd._size(c["route"].split("/")[1]))    # made before the clock starts
        r["hole_works"] = hole.works(0.5) if hole else True
        r["start"] = time.time()
        t0 = time.monotonic()
        r["rc"], r["out"], r["err"] = wd.run_urls([c["_url"] for c in cases], timeout=120)
        r["took"] = time.monotonic() - t0
    except Exception as e:      # reported by the checking thread
        r["error"] = "%s: %s" % (type(e).__name__, e)


def _outcome_time(wd, c, stem_fmt):
    if stem_fmt is not None:
        ps = [p for p in K.thumb_paths(wd, c["id"], stem_fmt) if os.path.exists(p)]
        return max(os.stat(p).st_mtime for p in ps) if ps else None
    times = [K.iso_to_epoch(ts) for ts, u, _ in wd.failed() if u == c["_url"]]
    return times[0] if times and times[0] is not None else None


def _check_case(t, c, r):
    wd, srv = r["wd"], r["srv"]
    what = "case %s (%s)" % (c["id"], c.get("route") or c.get("url"))
    url = c["_url"]
    fails = wd.failures_for(url)
    fmt = None
    if "thumbs" in c:
        fmt, W, H = c["thumbs"]
        t.eq(fails, [], "%s: no failed.tsv line" % what)
        t.eq(K.complete_thumbs(wd, c["id"], fmt, W, H), None, "%s: complete thumbnails %r" % (what, c["thumbs"]))
    else:
        t.eq(len(fails), 1, "%s: exactly one failed.tsv line (%r)" % (what, fails))
        got = fails[0] if fails else ""
        if "reason" in c:
            t.eq(got, _tokens(c["reason"], c, srv), "%s: reason" % what)
        else:
            pat = _tokens(c["reason_re"], c, srv)
            t.check(re.fullmatch(pat, got, re.S) is not None, "%s: reason %r matches %r" % (what, got, pat))
        t.eq(K.any_thumbs(wd, c["id"]), [], "%s: no thumbnails" % what)

    hits = srv.hits(c["_target"]) if c["_target"] else []
    log = srv.log(c["_target"], "GET") if c["_target"] else []
    if isinstance(c.get("requests"), tuple):
        lo, hi = c["requests"]
        t.check(lo <= len(hits) <= hi, "%s: %d GET requests seen by the server, expected %d..%d"
                % (what, len(hits), lo, hi))
    elif "requests" in c:
        t.eq(len(hits), c["requests"], "%s: GET requests seen by the server (1 + retries)" % what)
    gaps = [b - a for a, b in zip(hits, hits[1:])]
    for i, (lo, hi) in enumerate(c.get("gaps", [])):
        if i >= len(gaps):
            t.fail("%s: gap %d between requests: only %d requests" % (what, i + 1, len(hits)))
            continue
        t.check(lo - SLACK <= gaps[i] <= hi + LATE,
                "%s: wait before attempt %d is %.3f s, expected %.2f..%.2f s (-%.2f/+%.2f)"
                % (what, i + 2, gaps[i], lo, hi, SLACK, LATE))
    if "span" in c:
        lo, hi = c["span"]
        span = hits[-1] - hits[0] if hits else -1
        t.check(lo - SLACK <= span <= hi + LATE, "%s: first to last request %.2f s, expected %.1f..%.1f s"
                % (what, span, lo, hi))
    if "within" in c:
        when = _outcome_time(wd, c, fmt)
        if t.check(when is not None, "%s: outcome time known" % what):
            t.check(when - r["start"] <= c["within"], "%s: outcome %.1f s after the start, limit %s s"
                    % (what, when - r["start"], c["within"]))
    if "range2" in c:
        if t.check(len(log) >= 2, "%s: a second request was made (%d)" % (what, len(log))):
            first, second = log[0], log[1]
            if c["range2"] is None:
                t.eq(second["headers"].get("range"), None, "%s: no Range on the retry (it starts over)" % what)
            else:
                t.eq(second["headers"].get("range"), _tokens(c["range2"], c, srv),
                     "%s: the retry asks for the rest with Range" % what)
                ir = second["headers"].get("if-range")
                full = os.path.join(r["www"], "c", c["id"] + _ext(c.get("file", FC.H)))
                with open(full, "rb") as f:
                    etag, lm = httpd._validators(full, f.read())
                t.check(ir in (etag, lm), "%s: If-Range %r is the ETag %r or Last-Modified %r"
                        % (what, ir, etag, lm))
    if "after" in c:
        other, secs = c["after"]
        oc = r["by_id"][other]
        oh = srv.hits(oc["_target"])
        if t.check(hits and oh, "%s: both it and %s were requested" % (what, other)):
            t.check(hits[0] - oh[0] >= secs - SLACK,
                    "%s: first request %.2f s after %s's (Retry-After holds the host), want >= %.1f"
                    % (what, hits[0] - oh[0], other, secs))
    if "before_retry_of" in c:
        other = c["before_retry_of"]
        oh = srv.hits(r["by_id"][other]["_target"])
        if t.check(hits and len(oh) >= 2, "%s: it and %s's retry were requested" % (what, other)):
            t.check(hits[0] < oh[1], "%s: requested %.2f s before %s's retry (the waiting retry holds "
                    "no per-host slot)" % (what, oh[1] - hits[0], other))
    return gaps


def _check_batch(t, name, cases, r):
    wd = r["wd"]
    what = "batch %s" % name
    if not t.check(r["error"] is None, "%s: ran (%s)" % (what, r["error"])):
        return
    if r.get("hole") is not None:
        t.check(r["hole_works"], "%s: the blackhole socket really swallows connects" % what)
    nfail = len([c for c in cases if "thumbs" not in c])
    t.eq(r["rc"], 1 if nfail else 0, "%s: exit status (stderr %r)" % (what, r["err"][-300:]))
    C.stdout_summary(t, r["out"], what, urls=len(cases), done=len(cases) - nfail, failed=nfail)
    C.check_failed_format(t, wd, what)
    t.eq(len(wd.failed_lines()), nfail, "%s: failed.tsv has one line per failed URL" % what)
    t.eq(K.leftovers(wd), [], "%s: no partial or stray files in incoming/ or outgoing/" % what)
    exp = [n for c in cases if "thumbs" in c for n in C.thumb_names(c["id"], c["thumbs"][0])]
    t.eq(sorted(set(wd.thumbs()) - set(exp)), [], "%s: outgoing/ holds only the expected thumbnails" % what)
    t.eq(wd.base_strays(), [], "%s: nothing written outside incoming/ outgoing/ logs/" % what)


def test_fault_table(t):
    cdir = C.corpus(t)
    if cdir is None:
        return
    ids = [c["id"] for c in FC.CASES]
    t.eq(len(ids), len(set(ids)), "fault table: case ids are unique")
    batches = {}
    for c in FC.CASES:
        c = dict(c)
        batches.setdefault(c.get("batch", "main"), []).append(c)
    res = {}
    threads = [threading.Thread(target=_run_batch, args=(n, cs, cdir, res)) for n, cs in batches.items()]
    t0 = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    print("   fault table: %d cases in %d batches, %.1f s (%s)" % (
        len(FC.CASES), len(batches), time.monotonic() - t0,
        ", ".join("%s %.1f s" % (n, res[n].get("took", -1)) for n in batches)), flush=True)
    jitter = []
    try:
        for n, cs in batches.items():
            r = res[n]
            r["by_id"] = {c["id"]: c for c in cs}
            _check_batch(t, n, cs, r)
            if r["error"] is not None:
                continue
            for c in cs:
                gaps = _check_case(t, c, r)
                if c.get("jitter") and gaps:
                    jitter.append(gaps[0])
        if t.check(len(jitter) >= 4, "backoff jitter: at least 4 samples (%d)" % len(jitter)):
            t.check(max(jitter) - min(jitter) > 0.01,
                    "backoff jitter: the first waits of %d always-failing URLs differ (%s)"
                    % (len(jitter), ", ".join("%.3f" % g for g in sorted(jitter))))
    finally:
        for r in res.values():
            r["srv"].stop()
            if r.get("hole"):
                r["hole"].close()
            r["wd"].cleanup()
            shutil.rmtree(r["www"], ignore_errors=True)


# -- classes of answers that break HTTP ---------------------------------------------

def test_bad_answers_class(t):
    """No status line, a 200 KB header line, a 206 nobody asked for: the
    remote's doing, so class http in the summary (they were "invalid",
    "other" -- curl's "Out of memory" -- and "decode"), and each tried once."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir(FC.FAST) as wd:
        urls = [srv.url("junk/x.jpg"), srv.url("bigheader/200K/" + FC.H), srv.url("partial/1000/" + FC.F)]
        rc, out, err = wd.run_urls(urls)
        t.eq(rc, 1, "bad answers: exit status 1")
        notes = [l for l in err.splitlines() if "failed: " in l]
        t.check(len(notes) == 1 and re.search(r"failed: http 3[;,]?( |$)", notes[0]) is not None,
                "bad answers: the summary counts all three as http (%r)" % notes)
        t.eq(len(wd.failed_lines()), 3, "bad answers: one failed.tsv line each")
        per = {}
        for m, p in srv.requests():
            per[p] = per.get(p, 0) + 1
        t.check(all(n <= 2 for n in per.values()), "bad answers: not retried (requests %r)" % per)
        t.eq(K.leftovers(wd), [], "bad answers: nothing partial left (the 206 part is not kept)")


# -- the circuit breaker -----------------------------------------------------------

def test_circuit_breaker(t):
    """A host that answers nothing (every connection dropped) is paused after
    host_max_failures attempts; its other URLs fail at once, with a reason
    that is not final; other hosts go on.  A host that answers 503 to
    everything is paused once host_max_failures URLs failed all their
    attempts: its busy answers alone, retried, do not count."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    cfg = dict(FC.FAST, **{"download.host_max_failures": "5", "download.per_host": "2",
                           "download.retry_delay": "0.1"})
    with C.serve(cdir) as srv, C.Workdir(cfg) as wd:
        bad = ["http://localhost:%d/drop/x.jpg?n=%d" % (srv.port, i) for i in range(30)]
        good = srv.url(FC.H)
        t0 = time.monotonic()
        rc, out, err = wd.run_urls(bad[:15] + [good] + bad[15:], timeout=60)
        took = time.monotonic() - t0
        t.eq(rc, 1, "breaker: exit status 1")
        C.stdout_summary(t, out, "breaker", urls=31, done=1, failed=30)
        n = len([1 for m, p in srv.requests() if p.startswith("/drop/")])
        t.check(n <= 5 + 2, "breaker: at most host_max_failures + per_host requests to the failing host "
                "(saw %d for 30 URLs)" % n)
        t.check(n >= 5, "breaker: the host was tried host_max_failures times before the pause (%d)" % n)
        # N is the count that opened the circuit: host_max_failures, whatever fails after
        paused = re.compile(r"host localhost:%d paused after 5 consecutive failures "
                            r"\(last: connection closed: .+\)" % srv.port)
        reasons = [wd.failures_for(u) for u in bad]
        t.eq([u for u, rs in zip(bad, reasons) if len(rs) != 1 or not paused.fullmatch(rs[0])], [],
             "breaker: every URL of the paused host has one failed.tsv line, the pause, as they all "
             "had retries left (e.g. %r)" % reasons[-1:])
        t.eq(wd.failures_for(good), [], "breaker: another host (127.0.0.1) is not paused")
        t.eq(K.complete_thumbs(wd, "hopper_128x128", "JPEG", 128, 128), None,
             "breaker: the other host's URL is done")
        t.check(took < 10, "breaker: the paused host's URLs fail at once (run took %.1f s)" % took)
    with C.serve(cdir) as srv, C.Workdir(dict(cfg, **{"download.retry_delay": "0.05"})) as wd:
        bad = [srv.url("status/503?n=%d" % i) for i in range(30)]
        rc, out, err = wd.run_urls(bad, timeout=60)
        t.eq(rc, 1, "breaker 503: exit status 1")
        per = {}
        for m, p in srv.requests():
            per[p] = per.get(p, 0) + 1
        t.check(max(per.values()) <= 4, "breaker 503: no URL is tried more than 4 times (%r)"
                % max(per.values()))
        reasons = [r for u in bad for r in wd.failures_for(u)]
        t.eq(len(reasons), 30, "breaker 503: one failed.tsv line per URL")
        final = [r for r in reasons if r == "HTTP 503 (after 4 attempts)"]
        paused = [r for r in reasons if re.fullmatch(r"host 127\.0\.0\.1:%d paused after 5 consecutive "
                                                     r"failures \(last: HTTP 503\)" % srv.port, r)]
        t.check(len(final) >= 5 and len(final) + len(paused) == 30 and paused,
                "breaker 503: paused once 5 URLs failed all 4 attempts; the rest fail with the "
                "pause (%d final, %d paused, e.g. %r)" % (len(final), len(paused), reasons[-1:]))


# -- host_delay ----------------------------------------------------------------------

def test_host_delay(t):
    """download.host_delay spaces request starts to one host; another host is not held."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    cfg = dict(FC.FAST, **{"download.host_delay": "0.3"})
    with C.serve(cdir) as srv, C.Workdir(cfg) as wd:
        a = [srv.url(FC.H + "?n=%d" % i) for i in range(6)]
        b = ["http://localhost:%d/%s?n=%d" % (srv.port, FC.I, i) for i in range(6)]
        rc, out, err = wd.run_urls([x for pair in zip(a, b) for x in pair], timeout=60)
        t.eq(rc, 0, "host_delay: exit 0 (failed %r)" % wd.failed()[:3])
        for host in ("127.0.0.1", "localhost"):
            ts = sorted(e["t"] for e in srv.log() if e["host"].startswith(host + ":"))
            gaps = [y - x for x, y in zip(ts, ts[1:])]
            t.eq(len(ts), 6, "host_delay: 6 requests to %s" % host)
            t.check(gaps and min(gaps) >= 0.3 - 0.03,
                    "host_delay=0.3: request starts to %s at least 0.3 s apart (%s)"
                    % (host, ", ".join("%.2f" % g for g in gaps)))
        ta = min(e["t"] for e in srv.log() if e["host"].startswith("127.0.0.1:"))
        tb = min(e["t"] for e in srv.log() if e["host"].startswith("localhost:"))
        t.check(abs(ta - tb) < 0.25, "host_delay is per host: both hosts start at once (%.2f s apart)"
                % abs(ta - tb))


# -- a server that allows two connections -------------------------------------------

def test_few_connections(t):
    """A server that takes 2 connections at once and closes any other right
    after accepting it: every URL still ends as thumbnails, each downloaded once.
    (The closed connections are transient failures; retries with enough
    patience -- 6 retries, waits up to 2 s -- get every URL through.)"""
    cdir = C.corpus(t)
    if cdir is None:
        return
    cfg = dict(FC.FAST, **{"download.per_host": "8", "download.retries": "6",
                           "download.retry_delay": "0.3", "download.max_retry_wait": "2"})
    srv = httpd.start(cdir, max_conns=2)
    try:
        with C.Workdir(cfg) as wd:
            urls = [srv.url("slowhead/0.2/" + FC.H + "?n=%d" % i) for i in range(12)]
            rc, out, err = wd.run_urls(urls, timeout=90)
            t.eq(rc, 0, "2-connection server: exit 0 (failed: %r)" % wd.failed()[:3])
            t.eq(wd.failed(), [], "2-connection server: no failures")
            t.eq(len([f for f in wd.thumbs() if f.endswith("_200.jpg")]), 12,
                 "2-connection server: 12 sets of thumbnails")
            t.check(srv.max_open_connections() <= 2, "the server never held more than 2 connections (%d)"
                    % srv.max_open_connections())
            t.check(srv.rejected() > 0, "the server closed surplus connections (%d), so the test exercised "
                    "them" % srv.rejected())
            per = {}
            for m, p in srv.requests():
                per[p] = per.get(p, 0) + 1
            t.eq(sorted(set(per.values())), [1], "2-connection server: each URL requested exactly once")
            t.eq(K.leftovers(wd), [], "2-connection server: no partial files")
    finally:
        srv.stop()


# -- rerun semantics -----------------------------------------------------------------

def test_rerun_skips_and_retry_failed(t):
    """A second run skips URLs that are done ("already done") or have a
    failed.tsv line ("failed before") without a request; --retry-failed
    tries the failed ones again."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir(FC.FAST) as wd:
        good = srv.url(FC.H)
        fl = srv.url("flaky/1/404/" + FC.I)          # 404 the first time, the image after
        dead = srv.url("status/410")
        urls = [good, fl, dead]
        rc, out, err = wd.run_urls(urls)
        t.eq(rc, 1, "rerun, run 1: exit 1")
        t.eq(wd.failures_for(fl), ["HTTP 404"], "rerun, run 1: the flaky URL failed with HTTP 404")
        n0 = len(srv.requests())

        rc, out, err = wd.run_urls(urls)
        t.eq(len(srv.requests()), n0, "rerun, run 2: no request at all (%r)" % srv.requests()[n0:])
        t.eq(K.notes(out), {"already done": 1, "failed before": 2, "duplicates skipped": 0},
             "rerun, run 2: summary notes (%r)" % out.strip())
        t.eq(len(wd.failed_lines()), 2, "rerun, run 2: failed.tsv unchanged (2 lines)")
        C.stdout_summary(t, out, "rerun, run 2", urls=3)

        rc, out, err = wd.run_urls(urls, "--retry-failed")
        new = [p for m, p in srv.requests()[n0:]]
        t.eq(sorted(new), sorted(["/flaky/1/404/" + FC.I, "/status/410"]),
             "rerun --retry-failed: only the failed URLs are requested again")
        t.eq(K.complete_thumbs(wd, "iguana_100x68", "JPEG", 100, 68), None,
             "rerun --retry-failed: the URL that failed before is done now")
        t.eq(K.notes(out)["already done"] if K.notes(out) else None, 1,
             "rerun --retry-failed: the done URL is still skipped (%r)" % out.strip())
        t.eq(len(wd.failures_for(dead)) >= 1, True, "rerun --retry-failed: the dead URL still failed")
        n1 = len(srv.requests())

        rc, out, err = wd.run_urls(urls)
        t.eq(srv.requests()[n1:], [], "rerun, run 4: nothing requested")
        nt = K.notes(out) or {}
        t.eq(nt.get("already done", 0) + nt.get("failed before", 0), 3,
             "rerun, run 4: every URL skipped as already done or failed before (%r)" % out.strip())
        t.eq(K.leftovers(wd), [], "rerun: no partial or stray files")
        t.check(os.path.exists(os.path.join(wd.incoming, K.NAMES_FILE)),
                "the names registry is incoming/.thumbd-names")
        t.check(not os.path.exists(os.path.join(wd.outgoing, K.NAMES_FILE)),
                "no names registry in outgoing/ (only thumbnails there)")


# -- disk full -------------------------------------------------------------------------

BIGS = ["photos/trail_camera_2048x1536.jpg", "photos/coffee_600x400.png", "photos/hubble_deep_field_1000x872.jpg"]
SMALLS = [(FC.H, "hopper_128x128", "JPEG", 128, 128), (FC.I, "iguana_100x68", "JPEG", 100, 68),
          (FC.W, "webp_lossy", "WEBP", 128, 128), (FC.F, "frangipani_480x360", "JPEG", 480, 360)]
BIG_INFO = {"photos/trail_camera_2048x1536.jpg": ("trail_camera_2048x1536", "JPEG", 2048, 1536),
            "photos/coffee_600x400.png": ("coffee_600x400", "PNG", 600, 400),
            "photos/hubble_deep_field_1000x872.jpg": ("hubble_deep_field_1000x872", "JPEG", 1000, 872)}


def test_disk_full_incoming(t):
    """Downloads bigger than the file-size limit fail with 'cannot write ...',
    the small ones succeed, nothing partial is left, and the next run (no
    limit) does only the failed ones."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    limit = 200 * 1024          # every BIG is > 300 KB, every SMALL < 40 KB
    with C.serve(cdir) as srv, C.Workdir(FC.FAST) as wd:
        urls = [srv.url(p) for p in BIGS] + [srv.url(s[0]) for s in SMALLS]
        rc, out, err = K.run_limited(wd, [wd.write_list(urls)], limit)
        t.eq(rc, 1, "disk full: exit 1 (stderr %r)" % err[-300:])
        for p in BIGS:
            rs = wd.failures_for(srv.url(p))
            t.check(len(rs) == 1 and rs[0].startswith("cannot write "),
                    "disk full: %s fails with 'cannot write ...' (%r)" % (p, rs))
            t.eq(K.any_thumbs(wd, BIG_INFO[p][0]), [], "disk full: no thumbnails of %s" % p)
        for s in SMALLS:
            t.eq(wd.failures_for(srv.url(s[0])), [], "disk full: small %s has no failure" % s[0])
            t.eq(K.complete_thumbs(wd, *s[1:]), None, "disk full: small %s done" % s[0])
        t.eq(K.leftovers(wd), [], "disk full: nothing partial left")
        n0 = len(srv.requests())

        rc, out, err = wd.run_urls(urls)
        t.eq(rc, 0, "after disk full, rerun without the limit: exit 0 (failed %r)" % wd.failed()[-3:])
        t.eq(sorted(p for m, p in srv.requests()[n0:]), sorted("/" + p for p in BIGS),
             "rerun after disk full: exactly the URLs that could not be written are fetched again")
        for p in BIGS:
            t.eq(K.complete_thumbs(wd, *BIG_INFO[p]), None, "rerun after disk full: %s done" % p)
        nt = K.notes(out) or {}
        t.eq(nt.get("already done"), len(SMALLS), "rerun after disk full: small ones 'already done' (%r)"
             % out.strip())
        t.eq(nt.get("failed before"), 0, "rerun after disk full: a 'cannot write' failure is not final")
        t.eq(K.leftovers(wd), [], "rerun after disk full: nothing partial left")


def test_disk_full_outgoing(t):
    """A thumbnail that cannot be written (1000 px PNG, level 0: ~3 MB, limit
    1 MB) fails its URL with 'cannot write ...', leaves none of its
    thumbnails, and the next run without the limit makes them."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    cfg = dict(FC.FAST, **{"thumbnails.sizes": "32,1000", "thumbnails.format": "png",
                           "thumbnails.png_level": "0"})
    with C.serve(cdir) as srv, C.Workdir(cfg) as wd:
        u = srv.url(FC.H)
        rc, out, err = K.run_limited(wd, [wd.write_list([u])], 1024 * 1024)
        t.eq(rc, 1, "outgoing full: exit 1 (stderr %r)" % err[-300:])
        rs = wd.failures_for(u)
        t.check(len(rs) == 1 and rs[0].startswith("cannot write "),
                "outgoing full: the URL fails with 'cannot write ...' (%r)" % rs)
        t.eq(wd.thumbs(), [], "outgoing full: none of its thumbnails is left (not even the 32 px one)")
        t.eq(K.leftovers(wd), [], "outgoing full: no temp files left")
        rc, out, err = wd.run_urls([u])
        t.eq(rc, 0, "outgoing full, rerun without the limit: exit 0 (%r)" % wd.failed())
        t.eq(K.complete_thumbs(wd, "hopper_128x128", "PNG", 128, 128, sizes=(32, 1000)), None,
             "outgoing full, rerun: thumbnails made")


# -- the new configuration keys ----------------------------------------------------------

def test_config_keys(t):
    """The failure-handling keys parse with their ranges (README "Failure handling")."""
    with C.Workdir() as wd:
        ok = ["download.retries=0", "download.retries=20", "download.retry_delay=0.2",
              "download.max_retry_wait=1.5", "download.host_delay=0.25", "download.host_delay=0",
              "download.host_max_failures=0", "download.host_max_failures=10", "download.ca_file="]
        for kv in ok:
            rc, out, err = wd.run("--set", kv, "--check-config", timeout=20)
            t.eq(rc, 0, "--set %s --check-config: exit 0 (%r)" % (kv, (out + err)[-200:]))
        bad = ["download.retries=21", "download.retries=-1", "download.retries=x",
               "download.retry_delay=abc", "download.max_retry_wait=-1", "download.host_delay=soon"]
        for kv in bad:
            rc, out, err = wd.run("--set", kv, "--check-config", timeout=20)
            t.eq(rc, 2, "--set %s --check-config: exit 2 (%r)" % (kv, (out + err)[-200:]))
            t.check(kv.split("=")[0] in err, "--set %s: the error names the key (%r)" % (kv, err[-200:]))
        rc, out, err = wd.run("--help", config=False, timeout=20)
        t.check("--retry-failed" in out + err, "--help mentions --retry-failed")
