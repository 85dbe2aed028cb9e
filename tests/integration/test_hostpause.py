"""The host pause (download.host_max_failures): what trips it, what it keys
on, what it leaves behind, and how it ends.

- a storm of busy answers (429, 503) that retries get past is not a dead
  host: no pause, every URL ends as thumbnails;
- a pause is per host and port: a dead service beside a healthy one on the
  same address pauses only itself;
- URLs failed because their host was paused are not final: the summary
  counts them in the class of what paused the host, and the next run does
  them;
- in the daemon a pause ends by itself after a cool-down (max_retry_wait)
  and a probe, and at once on SIGHUP; the list entries of the URLs it
  failed are kept and tried again by the running daemon (retry_kept)."""

import collections
import os
import re
import signal
import time

import common as C
import httpd
from test_daemon import Daemon, Notify, _append, _drop_list, _layout, _daemon_config, _wait

IMG = "photos/rocket_640x427.jpg"


def _paused_re(port, last):
    return re.compile(r"host 127\.0\.0\.1:%d paused after \d+ consecutive failures \(last: %s\)"
                      % (port, last))


def test_busy_storm_does_not_pause(t):
    """Each URL answered once with 503 (no Retry-After), or once with 429 and
    Retry-After: 1: every URL succeeds on its first retry and the host is
    never paused, whatever host_max_failures is."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir({"download.retry_delay": "0.05"}) as wd:
        urls = [srv.url("flaky/1/503/%s?t=%d" % (IMG, i)) for i in range(40)]
        rc, out, err = wd.run_urls(urls, timeout=60)
        f = wd.failed()
        t.check(f == [], "503 storm: no URL fails (the default host_max_failures is 10): %d did, e.g. %r"
                % (len(f), f[-1:]))
        t.eq(rc, 0, "503 storm: exit status 0 (%s)" % err.strip()[-300:])
        t.check("paused" not in "\n".join(wd.log_lines() or []), "503 storm: the host is not paused")
    # one request at a time, so each 429 comes after the host's hold: every
    # one of them is a new failure in a row, not one burst
    cfg = {"download.per_host_start": "1", "download.per_host": "1", "download.host_max_failures": "2",
           "download.retry_delay": "0.05"}
    with C.serve(cdir) as srv, C.Workdir(cfg) as wd:
        urls = [srv.url("retryafter/1/429/1/%s?t=%d" % (IMG, i)) for i in range(4)]
        rc, out, err = wd.run_urls(urls, timeout=60)
        t.eq(wd.failed(), [], "429 + Retry-After storm: no URL fails (host_max_failures 2)")
        t.eq(rc, 0, "429 + Retry-After storm: exit status 0")
        t.check("paused" not in "\n".join(wd.log_lines() or []),
                "429 + Retry-After storm: the host is not paused")


def test_dead_redirect_target_does_not_pause(t):
    """A healthy host whose URLs redirect to a dead one (a name that does not
    resolve, a port nobody listens on) is not paused: those failures are the
    target's, and the image after them, on the healthy host, is made.  Before,
    they were charged to the list URL's host, paused after host_max_failures
    (10), and the image failed with 'host ... paused'."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    dead = "a" * 64 + ".invalid"          # refused by the resolver itself: no query leaves
    cfg = {"download.per_host_start": "1", "download.per_host": "1", "download.retries": "0",
           "download.retry_delay": "0.05"}
    with C.serve(cdir) as srv, C.Workdir(cfg) as wd:
        refused = C.free_port()
        urls = [srv.url("location/http%%3A%%2F%%2F%s%%2Fimg%d.jpg" % (dead, i)) for i in range(6)]
        urls += [srv.url("location/http%%3A%%2F%%2F127.0.0.1%%3A%d%%2Fimg%d.jpg" % (refused, i)) for i in range(6)]
        img = srv.url(IMG)
        rc, out, err = wd.run_urls(urls + [img], timeout=60)
        t.eq(wd.failures_for(img), [], "dead redirect target: the image on the healthy host is not failed")
        C.check_thumbs(t, wd, "rocket_640x427", "JPEG", 640, 427, what="dead redirect target")
        reasons = [r for (_, u, r) in wd.failed()]
        t.eq(len(reasons), 12, "dead redirect target: the 12 redirected URLs fail (%r)" % reasons[-2:])
        t.check(all(r.startswith(("cannot resolve host " + dead, "cannot connect to 127.0.0.1 port %d" % refused))
                    for r in reasons), "dead redirect target: each with its target's reason (%r)" % reasons[:2])
        t.check("paused" not in "\n".join(wd.log_lines() or []), "dead redirect target: no host paused")


def test_host_name_case(t):
    """A host name's case does not make another host: DNS names are
    case-insensitive, so NAME.invalid and name.invalid share one failure
    count and pause (before, each spelling had its own, and a dead host
    written three ways took three times host_max_failures to pause)."""
    dead = "a" * 63 + "b.invalid"          # 64 bytes: refused by the resolver itself
    spellings = [dead.upper(), dead, dead[:32].upper() + dead[32:]]
    cfg = {"download.per_host_start": "1", "download.per_host": "1", "download.retries": "0",
           "download.host_max_failures": "2"}
    with C.Workdir(cfg) as wd:
        urls = ["http://%s/img%d.jpg" % (h, i) for i, h in enumerate(spellings)]
        rc, out, err = wd.run_urls(urls, timeout=60)
        t.eq(rc, 1, "host name case: exit status 1")
        reasons = [wd.failures_for(u) for u in urls]
        t.eq([len(r) for r in reasons], [1, 1, 1], "host name case: one failed.tsv line each (%r)" % reasons)
        t.check(all(r[0].startswith("cannot resolve host ") for r in reasons[:2]),
                "host name case: the first two cannot be resolved (%r)" % reasons[:2])
        t.check(re.fullmatch(r"host %s:80 paused after 2 consecutive failures \(last: cannot resolve host .*\)"
                             % re.escape(dead), reasons[2][0] if reasons[2] else "") is not None,
                "host name case: the third spelling meets the pause of the first two (%r)" % reasons[2])


def test_pause_per_port_not_final(t):
    """A dead service (connection refused) on 127.0.0.1:DEAD is paused after
    host_max_failures attempts; a healthy one on 127.0.0.1:other is not.  The
    dead one's URLs fail with the pause, counted as network, not final: once
    the service is up, the next run does them."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    dead = C.free_port()
    cfg = {"download.host_max_failures": "5", "download.retries": "3", "download.retry_delay": "0.5"}
    with C.serve(cdir) as srv, C.Workdir(cfg) as wd:
        bad = ["http://127.0.0.1:%d/%s?n=%d" % (dead, IMG, i) for i in range(20)]
        good = [srv.url(IMG + "?n=%d" % i) for i in range(5)]
        t0 = time.monotonic()
        rc, out, err = wd.run_urls(bad + good, timeout=60)
        took = time.monotonic() - t0
        t.eq(rc, 1, "dead port: exit status 1")
        t.eq([u for u in good if wd.failures_for(u)], [],
             "dead port: the healthy service on the same address is not paused (%r)"
             % [wd.failures_for(u) for u in good][:1])
        paused = _paused_re(dead, r"cannot connect to 127\.0\.0\.1 port %d: Connection refused" % dead)
        reasons = [wd.failures_for(u) for u in bad]
        t.eq([u for u, rs in zip(bad, reasons) if len(rs) != 1 or not paused.fullmatch(rs[0])], [],
             "dead port: each of its URLs has one failed.tsv line, the pause (e.g. %r)" % reasons[-1:])
        t.check(took < 10, "dead port: its URLs fail at once, not after every retry (%.1f s)" % took)
        notes = [l for l in err.splitlines() if "failed: " in l]
        t.check(len(notes) == 1 and re.search(r"failed: network 20[;,]?( |$)", notes[0]) is not None,
                "dead port: the summary counts the paused URLs as network (%r)" % notes)
        # the service comes up: the paused URLs were not final
        up = httpd.start(cdir, dead)
        try:
            rc, out, err = wd.run_urls(bad + good, timeout=60)
            t.eq(rc, 0, "dead port, now up: the next run does the paused URLs (%s)" % err.strip()[-300:])
            t.check("failed before" not in "\n".join(wd.log_lines() or []),
                    "dead port, now up: no paused URL is skipped as failed before")
            t.eq(len([1 for m, p in up.requests() if p.startswith("/" + IMG)]), 20,
                 "dead port, now up: each paused URL is fetched once")
        finally:
            up.stop()


def _daemon_pause(t, what, cfg_extra, lift):
    """A daemon follows a file; URLs for a dead port pause it; the service
    comes up; lift() ends the pause; URLs appended after that are done."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    dead = C.free_port()
    nt = Notify()
    d = None
    up = None
    try:
        with C.Workdir() as wd:
            queue, follow, src = _layout(wd)
            extra = {"download.host_max_failures": "3", "download.retries": "3",
                     "download.retry_delay": "0.2"}
            extra.update(cfg_extra)
            wd.write_config(_daemon_config(queue, follow, extra))
            d = Daemon(wd, nt)
            if not d.start(t, what):
                return
            bad = ["http://127.0.0.1:%d/%s?n=%d" % (dead, IMG, i) for i in range(6)]
            _append(follow, *bad)
            got = _wait(lambda: len(wd.failed()) >= len(bad), 10, d.proc)
            t.check(got, "%s: the dead port's URLs fail (%r)" % (what, wd.failed()[-2:]))
            t.check(any(re.search(r"host 127\.0\.0\.1:%d paused" % dead, l) for l in wd.log_lines() or []),
                    "%s: the dead port is paused" % what)
            up = httpd.start(cdir, dead)
            lift(d, wd)
            later = ["http://127.0.0.1:%d/%s?later=%d" % (dead, IMG, i) for i in range(3)]
            _append(follow, *later)
            done = _wait(lambda: len(wd.thumbs()) >= 3 * len(later), 10, d.proc)
            t.check(done, "%s: URLs for the host after the pause end as thumbnails (failed %r)"
                    % (what, [r for _, u, r in wd.failed() if u in later]))
            t.eq([u for u in later if wd.failures_for(u)], [], "%s: none of them fails" % what)
            d.stop(t, what)
    finally:
        if d is not None:
            d.kill()
        if up is not None:
            up.stop()
        nt.close()


def test_many_hosts(t):
    """A list of 6,000 URLs on 6,000 hosts (127.a.b.c, nothing listening):
    each fails once with its own reason, none is paused, and URLs of a live
    server among them all succeed.  A dead host whose URLs come every 500
    URLs is still remembered between them (hosts are forgotten only 4,096
    newer hosts later) and paused after host_max_failures, as if its URLs
    had come together."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    dead = C.free_port()
    # a cool-down longer than the run: no probe between the paused URLs
    cfg = {"download.host_max_failures": "5", "download.retries": "0", "download.max_retry_wait": "600"}
    with C.serve(cdir) as srv, C.Workdir(cfg) as wd:
        urls, many, good, again = [], [], [], []
        for i in range(6000):
            u = "http://127.%d.%d.%d:%d/x%d.jpg" % (1 + i // 62500, i // 250 % 250, 1 + i % 250, dead, i)
            many.append(u)
            urls.append(u)
            if i % 100 == 50:
                good.append(srv.url(IMG + "?n=%d" % i))
                urls.append(good[-1])
            if i % 500 == 250:
                again.append("http://127.0.0.1:%d/%s?n=%d" % (dead, IMG, i))
                urls.append(again[-1])
        rc, out, err = wd.run_urls(urls, timeout=300)
        t.eq(rc, 1, "6,000 hosts: exit status 1")
        by_url = collections.defaultdict(list)
        for _, u, r in wd.failed():
            by_url[u].append(r)
        t.eq([u for u in good if by_url[u]], [], "6,000 hosts: the live server's URLs all succeed")
        wrong = []
        for u in many:
            rs = by_url[u]
            host = u.split("/")[2].split(":")[0]
            if len(rs) != 1 or rs[0] != "cannot connect to %s port %d: Connection refused" % (host, dead):
                wrong.append((u, rs))
        t.eq(wrong[:3], [], "6,000 hosts: each URL has one failed.tsv line, its own refusal (%d wrong)" % len(wrong))
        paused = _paused_re(dead, r"cannot connect to 127\.0\.0\.1 port %d: Connection refused" % dead)
        after = [by_url[u] for u in again[5:]]
        t.eq([rs for rs in after if len(rs) != 1 or not paused.fullmatch(rs[0])], [],
             "6,000 hosts: the dead host met every 500 URLs is paused after 5 failures (%r)" % after[:1])
        t.eq(len(wd.failed_lines()), len(many) + len(again), "6,000 hosts: one failed.tsv line per failed URL")


def test_daemon_pause_ends_after_cooldown(t):
    """The pause lasts max_retry_wait, then a probe finds the host up again."""
    def lift(d, wd):
        time.sleep(1.3)              # max_retry_wait 1: the cool-down is over
    _daemon_pause(t, "daemon cool-down", {"download.max_retry_wait": "1"}, lift)


def test_daemon_pause_lifted_by_sighup(t):
    """A reload lifts every pause at once, however long the cool-down."""
    def lift(d, wd):
        n = len(wd.log_lines() or [])
        d.signal(signal.SIGHUP)
        t.check(_wait(lambda: any("reloaded" in l for l in (wd.log_lines() or [])[n:]), 5, d.proc),
                "daemon SIGHUP: the config is reloaded")
    _daemon_pause(t, "daemon SIGHUP", {"download.max_retry_wait": "60"}, lift)


def test_daemon_pause_kept_entries_retried(t):
    """URLs failed while their host was paused are kept, not ended: with
    daemon.retry_kept the running daemon tries them again by itself once
    the service is up (no new URL, no reload, no restart): each is fetched
    once, and their directory list moves to done/."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    dead = C.free_port()
    nt = Notify()
    d = None
    up = None
    try:
        with C.Workdir() as wd:
            queue, follow, src = _layout(wd)
            extra = {"download.host_max_failures": "3", "download.retries": "3",
                     "download.retry_delay": "0.2", "download.max_retry_wait": "1",
                     "daemon.retry_kept": "0.5"}
            wd.write_config(_daemon_config(queue, follow, extra))
            d = Daemon(wd, nt)
            if not d.start(t, "paused, kept"):
                return
            bad = ["http://127.0.0.1:%d/%s?k=%d" % (dead, IMG, i) for i in range(6)]
            _drop_list(src, queue, "paused.urls", bad)
            paused = _paused_re(dead, r".*")
            t.check(_wait(lambda: all(any(paused.fullmatch(r) for r in wd.failures_for(u)) for u in bad),
                          10, d.proc),
                    "paused, kept: each URL fails with the pause (%r)" % wd.failed()[-2:])
            t.check(_wait(lambda: sum(": its list entry is kept, tried again in" in l
                                      for l in wd.log_lines() or []) >= len(bad), 5, d.proc),
                    "paused, kept: each URL's entry is kept with a retry")
            t.check(os.path.isfile(os.path.join(queue, "paused.urls")),
                    "paused, kept: the list is not moved to done/ meanwhile")
            up = httpd.start(cdir, dead)
            done = os.path.join(queue, "done", "paused.urls")
            t.check(_wait(lambda: len(wd.thumbs()) >= 3 * len(bad) and os.path.isfile(done), 20, d.proc),
                    "paused, kept: once the service is up the running daemon does every kept URL "
                    "and moves the list to done/ (thumbnails %d)" % len(wd.thumbs()))
            got = collections.Counter(p for m, p in up.requests() if m == "GET")
            t.eq(sorted(got.values()), [1] * len(bad), "paused, kept: each URL fetched once (%r)" % got)
            d.stop(t, "paused, kept")
    finally:
        if d is not None:
            d.kill()
        if up is not None:
            up.stop()
        nt.close()


def test_daemon_kept_round_keeps_loop_answering(t):
    """20,000 URLs of a paused host, kept and tried again by rounds
    (retry_kept 1 s, then 2 s): each round fails them all at once again.
    The fetch loop goes round meanwhile, in turns, so the watchdog is
    pinged throughout (reading them all in one turn, and a pass over every
    entry out per retry asking for duplicates, held it for seconds)."""
    dead = C.free_port()
    nt = Notify()
    d = None
    n = 20000
    try:
        with C.Workdir() as wd:
            queue, follow, src = _layout(wd)
            extra = {"download.host_max_failures": "2", "download.retries": "0",
                     "download.max_retry_wait": "3600", "daemon.retry_kept": "1"}
            wd.write_config(_daemon_config(queue, follow, extra))
            d = Daemon(wd, nt)
            if not d.start(t, "kept rounds"):
                return
            _drop_list(src, queue, "many.urls", ["http://127.0.0.1:%d/r/%d.jpg" % (dead, i) for i in range(n)])
            tried = lambda: sum("trying a kept entry again" in l for l in wd.log_lines() or [])
            t.check(_wait(lambda: tried() >= 2 * n, 60, d.proc),
                    "kept rounds: two rounds of retries (%d tried again)" % tried())
            stuck = [l for l in wd.log_lines() or [] if "watchdog:" in l]
            t.eq(stuck[:3], [], "kept rounds: the watchdog is pinged throughout")
            d.stop(t, "kept rounds")
    finally:
        if d is not None:
            d.kill()
        nt.close()
