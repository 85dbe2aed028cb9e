"""logs/thumbd.log format and totals; stdout is one summary line when it is not a TTY."""

import os
import re
import time

import common as C

GOOD = [("photos/hopper_128x128.jpg", "hopper_128x128", "JPEG", 128, 128),
        ("edge/png_gray_8bit.png", "png_gray_8bit", "PNG", 32, 32),
        ("edge/webp_lossless.webp", "webp_lossless", "WEBP", 512, 512)]


def test_log_file(t):
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir() as wd:
        urls = [srv.url(g[0]) for g in GOOD] + [srv.url("status/404"), srv.url("broken/zero_bytes.jpg")]
        rc, out, err = wd.run_urls(urls)
        t.eq(rc, 1, "log run: exit status 1 (two failures)")
        C.stdout_summary(t, out, "log run")
        lines = wd.log_lines()
        if not t.check(lines is not None, "logs/thumbd.log exists"):
            return
        t.check(len(lines) > 0, "logs/thumbd.log is not empty")
        bad = [l for l in lines if not C.LOG_LINE.match(l)]
        t.eq(bad[:5], [], "every log line is '[name, YYYY-MM-DD HH:MM:SS.mmm, LEVEL] message'")
        dl = [int(m.group(1)) for l in lines for m in [re.search(r"downloaded (\d+) images? in", l)] if m]
        cr = [int(m.group(1)) for l in lines for m in [re.search(r"created (\d+) thumbnails? in", l)] if m]
        if t.eq(len(dl), 1, "one 'downloaded N images in' line"):
            t.check(len(GOOD) <= dl[0] <= len(GOOD) + 1,
                    "downloaded N: N counts the successful downloads (N=%d, 3 good + 1 empty body)" % dl[0])
        if t.eq(len(cr), 1, "one 'created M thumbnails in' line"):
            t.eq(cr[0], 3 * len(GOOD), "created M thumbnails: M = 3 x successful images")
        t.check(any("ERROR" in l or "WARNING" in l for l in lines if C.LOG_LINE.match(l)),
                "failures are logged at WARNING or ERROR")


def test_progress_on_a_terminal(t):
    """With stderr on a TTY, a live one-line progress display is drawn there
    (rewritten in place with CR); stdout still gets only the summary."""
    import os
    import pty
    import select
    import subprocess
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir() as wd:
        urls = [srv.url("slowhead/0.4/photos/hopper_128x128.jpg?n=%d" % i) for i in range(4)]
        lst = wd.write_list(urls)
        master, slave = pty.openpty()
        p = subprocess.Popen([C.thumbd_path(), "-c", wd.config, lst], stdout=subprocess.PIPE,
                             stderr=slave, stdin=subprocess.DEVNULL, cwd=wd.cwd)
        os.close(slave)
        seen = b""
        while True:
            r, _, _ = select.select([master], [], [], 30)
            if not r:
                break
            try:
                chunk = os.read(master, 4096)
            except OSError:          # EIO once the child has closed the pty
                break
            if not chunk:
                break
            seen += chunk
        out = p.stdout.read().decode()
        rc = p.wait(30)
        os.close(master)
        t.eq(rc, 0, "progress run: exit 0")
        C.stdout_summary(t, out, "progress run", urls=4, done=4, failed=0)
        text = seen.decode("utf-8", "replace")
        t.check("\r" in text and "downloaded" in text and "in flight" in text,
                "a progress line is drawn on the terminal (got %r)" % text[-300:])
        t.check("\n" not in text.strip("\n"), "the progress display stays on one line (%r)" % text[-300:])


def _dev_full(t, wd):
    """logs/failed.tsv as a symlink to /dev/full: every write gets ENOSPC."""
    if not t.check(os.path.exists("/dev/full"), "/dev/full exists (a disk that is always full)"):
        return False
    os.symlink("/dev/full", os.path.join(wd.logs, "failed.tsv"))
    return True


def test_failed_tsv_full(t):
    """A failure that cannot be recorded (failed.tsv on a full disk) is not
    lost silently: one warning on stderr and in the log for the episode, exit
    status 1, and the URL is not "failed before": the next run (disk free
    again) does it again and records it once."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir() as wd:
        if not _dev_full(t, wd):
            return
        bad = [srv.url("status/404/a.jpg"), srv.url("status/404/b.jpg")]
        rc, out, err = wd.run_urls(bad)
        t.eq(rc, 1, "failed.tsv full: exit status 1")
        C.stdout_summary(t, out, "failed.tsv full", urls=2, failed=2)
        t.eq(len(re.findall(r"cannot write \S*failed\.tsv: No space left on device", err)), 1,
             "failed.tsv full: stderr says once that failed.tsv cannot be written (%r)" % err[-600:])
        t.check(re.search(r"2 failures could not be recorded in \S*/logs/failed\.tsv", err) is not None,
                "failed.tsv full: stderr counts the failures not recorded (%r)" % err[-600:])
        lines = wd.log_lines() or []
        t.eq(len([l for l in lines if "ERROR] cannot write " in l and "failed.tsv" in l]), 1,
             "failed.tsv full: the log says it once too")
        os.unlink(os.path.join(wd.logs, "failed.tsv"))
        n0 = len(srv.requests())
        rc, out, err = wd.run_urls(bad)
        t.eq(sorted(p for m, p in srv.requests()[n0:]), ["/status/404/a.jpg", "/status/404/b.jpg"],
             "failed.tsv full, next run: the URLs not recorded are fetched again")
        t.eq(C.summary_notes(out.strip())["failed before"], 0, "failed.tsv full, next run: none failed before")
        t.eq(sorted(u for _, u, _ in wd.failed()), sorted(bad), "failed.tsv full, next run: one line each")


def test_failed_tsv_full_daemon(t):
    """The daemon does not count a URL whose failure could not be recorded
    as ended: its list is not finished (not moved to done/), and after a
    restart with room again the URL is done and recorded."""
    import test_daemon as D
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir() as wd, D.Notify() as nt:
        queue, follow, src = D._layout(wd)
        wd.write_config(D._daemon_config(queue, follow))
        cp = D.Corpus(cdir, srv)
        d1, d2 = D.Daemon(wd, nt, 1), D.Daemon(wd, nt, 2)
        try:
            if not _dev_full(t, wd) or not d1.start(t, "daemon, failed.tsv full"):
                return
            good = cp.alias("photos/hopper_128x128.jpg", "full1")
            bad = srv.url("status/404/full2.jpg")
            _ = D._drop_list(src, queue, "full.urls", [bad, good.url])
            t.check(D._wait(lambda: good.done(wd) and any("failed " + bad in l for l in wd.log_lines() or []),
                            10, d1.proc), "daemon, failed.tsv full: the list's URLs were tried")
            time.sleep(0.5)
            t.check(os.path.isfile(os.path.join(queue, "full.urls"))
                    and not os.path.exists(os.path.join(queue, "done", "full.urls")),
                    "daemon, failed.tsv full: the list is not finished (its failure is not recorded)")
            t.check("cannot write " in d1.stderr() + "\n".join(wd.log_lines() or []),
                    "daemon, failed.tsv full: it says failed.tsv cannot be written")
            if not d1.stop(t, "daemon, failed.tsv full"):
                return
            os.unlink(os.path.join(wd.logs, "failed.tsv"))
            if not d2.start(t, "daemon, failed.tsv full: restart"):
                return
            t.check(D._wait(lambda: os.path.isfile(os.path.join(queue, "done", "full.urls")), 10, d2.proc),
                    "daemon, failed.tsv full: after the restart the list is finished")
            t.eq([u for _, u, _ in wd.failed()], [bad], "daemon, failed.tsv full: the URL recorded once")
            t.eq(len(srv.log(D._target(bad), "GET")), 2, "daemon, failed.tsv full: the URL tried again")
            t.eq(len(srv.log(good.target(), "GET")), 1, "daemon, failed.tsv full: the good URL not again")
            d2.stop(t, "daemon, failed.tsv full: second run")
        finally:
            d1.kill()
            d2.kill()


def test_retry_failed_one_line(t):
    """--retry-failed: a URL that fails again keeps one failed.tsv line (the
    new one), one that succeeds now keeps none, and lines of URLs this run
    did not touch stay."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir() as wd:
        dead = srv.url("status/404/dead.jpg")
        fl = srv.url("flaky/1/404/photos/iguana_100x68.jpg")   # 404 the first time, the image after
        other = srv.url("status/410/other.jpg")
        wd.run_urls([dead, fl, other])
        t.eq(sorted(u for _, u, _ in wd.failed()), sorted([dead, fl, other]), "retry: run 1 records 3 failures")
        first = {u: tm for tm, u, _ in wd.failed()}
        time.sleep(1.1)                 # a new line has a later time
        rc, out, err = wd.run_urls([dead, fl], "--retry-failed")
        t.eq(rc, 1, "retry: --retry-failed run exit status 1 (dead fails again)")
        got = wd.failed()
        t.eq(sorted(u for _, u, _ in got), sorted([dead, other]),
             "retry: one line for the URL that failed again, none for the one done now, other kept")
        t.check(all(tm != first[u] for tm, u, _ in got if u == dead), "retry: the dead URL's line is the new one")
        C.check_failed_format(t, wd, "retry")
        rc, out, err = wd.run_urls([dead, fl, other])
        t.eq(C.summary_notes(out.strip()), {"already done": 1, "failed before": 2, "duplicates skipped": 0},
             "retry: the next run skips them as before (%r)" % out.strip())


def test_newer_line_counts(t):
    """A URL with two failed.tsv lines (a run killed before it removed the
    old one) is judged by the newer: a final line followed by a non-final
    one (a paused host) is tried again, and then keeps no line; a non-final
    one followed by a final one is failed before, without a request."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv:
        url = srv.url("photos/hopper_128x128.jpg")
        final = "2026-01-01T00:00:00Z\t%s\tHTTP 404\n" % url
        paused = ("2026-01-01T00:00:01Z\t%s\thost 127.0.0.1:%d paused after 1 consecutive failures "
                  "(last: HTTP 503)\n" % (url, srv.port))
        for lines, tried in (([final, paused], True), ([paused, final], False)):
            what = "newer line counts (%s last)" % ("paused" if tried else "HTTP 404")
            with C.Workdir() as wd:
                with open(os.path.join(wd.logs, "failed.tsv"), "w") as f:
                    f.write("".join(lines))
                before = len(srv.log("/photos/hopper_128x128.jpg", "GET"))
                rc, out, err = wd.run_urls([url])
                asked = len(srv.log("/photos/hopper_128x128.jpg", "GET")) - before
                if tried:
                    t.eq((rc, asked), (0, 1), "%s: tried again and done (%r)" % (what, out.strip()))
                    t.eq(wd.failed(), [], "%s: no line left" % what)
                else:
                    t.eq((rc, asked), (1, 0), "%s: failed before, not asked (%r)" % (what, out.strip()))
                    t.eq(C.summary_notes(out.strip())["failed before"], 1, "%s: counted as failed before" % what)
                    t.eq(len(wd.failed()), 2, "%s: failed.tsv unchanged" % what)


def test_summary_wording(t):
    """One URL is "1 URL", one file "1 file", one thumbnail "1 thumbnail";
    a few KB downloaded do not read "0.0 MB"."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    small = "edge/png_gray_8bit.png"
    with C.serve(cdir) as srv, C.Workdir({"thumbnails.sizes": "32"}) as wd:
        rc, out, err = wd.run_urls([srv.url(small)])
        t.eq(rc, 0, "wording: exit status 0 (%r)" % err[-300:])
        m = re.match(r"^thumbd: 1 URL: 1 done, 0 failed; 1 thumbnail, (\d+(?:\.\d)? (?:bytes?|KB|MB)) in ", out)
        t.check(m is not None, "wording: '1 URL', '1 thumbnail' and a size (%r)" % out)
        size = os.path.getsize(os.path.join(cdir, small))
        if m:
            t.check(m.group(1) != "0.0 MB" and not m.group(1).startswith("0.0"),
                    "wording: %d bytes are not '0.0 MB' (%r)" % (size, m.group(1)))
        t.check("0.0 MB downloaded" not in err, "wording: stderr detail not '0.0 MB downloaded' (%r)" % err[-300:])
        rc, out, err = wd.run("--files", os.path.join(cdir, small))
        t.check(re.match(r"^thumbd: 1 file: 1 done, 0 failed; 1 thumbnail in ", out) is not None,
                "wording: --files: '1 file' (%r)" % out)
