"""SIGINT/SIGTERM during a run: stop starting work, abandon what was in
flight without recording it (it has no outcome yet), leave no partial
files, print a summary and end killed by the same signal within seconds
(so a shell loop around thumbd stops too); the next run finishes."""

import os
import shutil
import signal
import subprocess
import time

import common as C


def _interrupt(t, sig):
    cdir = C.corpus(t)
    if cdir is None:
        return
    what = signal.Signals(sig).name
    with C.serve(cdir) as srv, C.Workdir({"download.connections": 4}) as wd:
        # slow answers keep transfers in flight when the signal arrives
        urls = [srv.url("slowhead/3/photos/hopper_128x128.jpg?n=%d" % i) for i in range(8)]
        lst = wd.write_list(urls)
        p = _spawn(wd, lst)
        time.sleep(1.0)
        p.send_signal(sig)
        out, err, took = _finish(p, 10)
        t.eq(p.returncode, -sig, "%s: ended killed by %s, after its summary (stderr %r)"
             % (what, what, err[-300:]))
        t.check(took < 5, "%s: exited %.1f s after the signal" % (what, took))
        t.check(out.count("\n") == 1 and "(interrupted" in out, "%s: one summary line saying interrupted: %r" % (what, out))
        t.eq(wd.failed(), [], "%s: abandoned transfers are not failures" % what)
        t.eq(wd.incoming_files(), [], "%s: incoming/ left empty (no .part files)" % what)
        t.eq([f for f in os.listdir(wd.outgoing) if f.endswith(".tmp")], [], "%s: no temp files in outgoing/" % what)
        # the next run, undisturbed, does every URL
        rc, out, err = wd.run(lst, timeout=60)
        t.eq(rc, 0, "%s: the next run finishes (exit 0, stderr %r)" % (what, err[-300:]))
        C.stdout_summary(t, out, "%s: rerun" % what, urls=len(urls), failed=0)
        t.eq(wd.failed(), [], "%s: rerun: no failures" % what)


def test_sigint(t):
    _interrupt(t, signal.SIGINT)


def test_sigterm(t):
    _interrupt(t, signal.SIGTERM)


def _default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_shell_loop_stops(t):
    """^C (SIGINT to the foreground process group) while a shell loop runs
    thumbd over several lists: thumbd stops, prints its summary and dies of
    SIGINT, so bash stops the loop and dies of it too.  An exit status of
    its own (1) would tell bash that thumbd handled the signal, and bash
    would go on with the next list."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir({"download.connections": 4}) as wd:
        lists = []
        for k in range(2):
            urls = [srv.url("slowhead/3/photos/hopper_128x128.jpg?l=%d&n=%d" % (k, i)) for i in range(4)]
            lists.append(wd.write_list(urls, name="list%d.txt" % k))
        script = 'for l in "$@"; do "$T" -c "$C" "$l"; echo "after $l: $?"; done; echo "loop ended"'
        env = dict(os.environ, T=C.thumbd_path(), C=wd.config)
        # a new session, so the signal reaches bash and thumbd as a terminal's ^C does;
        # SIGINT at its default in bash (one ignored on entry could not be trapped)
        p = subprocess.Popen(["bash", "-c", script, "bash"] + lists, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=wd.cwd, env=env,
                             start_new_session=True, preexec_fn=_default_sigint)
        time.sleep(1.0)
        os.killpg(p.pid, signal.SIGINT)
        try:
            out, err = p.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, err = p.communicate()
            t.fail("shell loop: still running 20 s after ^C")
            return
        out = out.decode()
        t.check("(interrupted" in out, "shell loop: the first thumbd printed its summary: %r" % out)
        t.check("after " not in out and "loop ended" not in out,
                "shell loop: bash did not go on after thumbd (stdout %r)" % out)
        t.eq(p.returncode, -signal.SIGINT, "shell loop: bash died of SIGINT (stderr %r)" % err[-300:])
        t.eq(wd.incoming_files(), [], "shell loop: incoming/ left empty")


def _slow_site(wd):
    """A web root in wd holding one slow-to-decode big.png."""
    root = os.path.join(wd.base, "www")
    os.makedirs(root)
    _slow_png(os.path.join(root, "big.png"))
    return root


def _spawn(wd, lst):
    return subprocess.Popen([C.thumbd_path(), "-c", wd.config, lst], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=wd.cwd)


def _first_thumbnails(wd, p, timeout=30):
    """Wait until p has made its first thumbnails (or ended): the moment to
    stop it whatever this machine's speed, with most of its list ahead."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout and p.poll() is None:
        if any(f.startswith("big") for f in os.listdir(wd.outgoing)):
            return
        time.sleep(0.02)


def _finish(p, timeout):
    """Wait for p (killed past timeout) -> (stdout text, stderr bytes, seconds waited)."""
    t0 = time.monotonic()
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    return out.decode(), err, time.monotonic() - t0


def test_second_signal(t):
    """A second signal while the first one's drain resizes quits at once,
    killed by that signal, and still leaves nothing half-written in
    outgoing/ (thumbnails are renamed into place whole)."""
    with C.Workdir({"download.connections": 8, "resize.workers": 1}) as wd:
        with C.serve(_slow_site(wd)) as srv:
            p = _spawn(wd, wd.write_list([srv.url("big.png?n=%d" % i) for i in range(40)]))
            _first_thumbnails(wd, p)
            p.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            p.send_signal(signal.SIGINT)
            out, err, took = _finish(p, 10)
            t.eq(p.returncode, -signal.SIGINT, "second signal: killed by it (stderr %r)" % err[-300:])
            t.check(took < 1.0, "second signal: gone %.2f s after it (a worker was mid-image)" % took)
            log = open(os.path.join(wd.logs, "thumbd.log")).read()
            t.check("second signal: quitting at once" in log, "second signal: the log says so")
            t.eq([f for f in os.listdir(wd.outgoing) if not f.startswith("big")], [],
                 "second signal: only whole thumbnails in outgoing/, no temp files")


def _slow_png(path, w=10000, h=9000):
    """A PNG that is small on the wire (1.8 MB) and slow to decode (90 MP
    inflated and box-filtered: about 0.4 s here): a full queue of them holds
    a worker for many seconds."""
    import struct
    import zlib
    row = bytes([0]) + bytes((x * 7 + (x >> 5)) & 255 for x in range(w * 3))
    row2 = bytes([1]) + row[1:]
    raw = b"".join(row if y % 2 else row2 for y in range(h))

    def chunk(tag, data):
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xffffffff))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def test_stop_with_full_queue(t):
    """A stop resizes the images already downloaded for 5 s, then leaves the
    rest for the next run: with one worker and 60 slow images queued (10 s
    of work on a fast machine) stopped after its first one, thumbd exits
    within seconds, deletes its abandoned downloads,
    records nothing, leaves every image with all its thumbnails or none,
    and the next run does the rest."""
    with C.Workdir({"download.connections": 48, "resize.workers": 1}) as wd:
        with C.serve(_slow_site(wd)) as srv:
            urls = [srv.url("big.png?n=%d" % i) for i in range(60)]
            lst = wd.write_list(urls)
            p = _spawn(wd, lst)
            # the downloads (108 MB over loopback) are all in soon after; the
            # 5 s drain cannot resize the other 59 unless one takes < 0.085 s
            _first_thumbnails(wd, p)
            p.send_signal(signal.SIGTERM)
            out, err, took = _finish(p, 60)
            t.eq(p.returncode, -signal.SIGTERM, "full queue: killed by SIGTERM after the drain (stderr %r)"
                 % err[-300:])
            t.check(took < 9, "full queue: exited %.1f s after the signal (5 s of resizing, "
                    "then the queue left for the next run)" % took)
            t.check("(interrupted" in out, "full queue: the summary says interrupted: %r" % out)
            log = open(os.path.join(wd.logs, "thumbd.log")).read()
            t.check("queued images left for the next run" in log,
                    "full queue: the log says the queued images were left")
            t.eq(wd.failed(), [], "full queue: nothing recorded as failed")
            t.eq(wd.incoming_files(), [], "full queue: the abandoned downloads are deleted")
            outs = os.listdir(wd.outgoing)
            t.eq([f for f in outs if f.endswith(".tmp")], [], "full queue: no temp files in outgoing/")
            stems = {}
            for f in outs:
                stems.setdefault(f.rsplit("_", 1)[0], []).append(f)
            t.check(all(len(v) == 3 for v in stems.values()),
                    "full queue: every image has all three thumbnails or none (%r)"
                    % sorted((k, len(v)) for k, v in stems.items() if len(v) != 3))
            t.check(0 < len(stems) < len(urls), "full queue: %d of %d done before the stop"
                    % (len(stems), len(urls)))
            rc, out, err = wd.run("--set", "resize.workers=2", lst, timeout=300)
            t.eq(rc, 0, "full queue: the next run finishes (stderr %r)" % err[-300:])
            C.stdout_summary(t, out, "full queue: rerun", urls=len(urls), failed=0)
            t.eq(len(os.listdir(wd.outgoing)), 3 * len(urls), "full queue: rerun: every thumbnail")


def test_interrupted_retry_keeps_lines(t):
    """An interrupted --retry-failed run removes the old failed.tsv lines
    of the URLs it ended (here one now done), not of those it only started:
    a URL in flight at SIGINT keeps its line, and the next plain run skips
    it as failed before without a request."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.Workdir({"download.retries": 0}) as wd:
        www = os.path.join(wd.base, "www")
        os.makedirs(www)
        with C.serve(www) as srv:
            fast, slow = "/fast.jpg", "/slowhead/3/slow.jpg"
            lst = wd.write_list([srv.url(fast[1:]), srv.url(slow[1:])])
            rc, out, err = wd.run(lst)
            t.eq(sorted(r for _, _, r in wd.failed()), ["HTTP 404", "HTTP 404"],
                 "interrupted retry: run 1 records both 404s (stderr %r)" % err[-300:])
            first = wd.failed()
            shutil.copy(os.path.join(cdir, "photos/hopper_128x128.jpg"), os.path.join(www, "fast.jpg"))
            p = subprocess.Popen([C.thumbd_path(), "-c", wd.config, "--retry-failed", lst],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 stdin=subprocess.DEVNULL, cwd=wd.cwd)
            # the fast URL done, the slow one in flight (its answer is 3 s away)
            want = C.thumb_names("fast", "JPEG")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and p.poll() is None and not (
                    len(srv.hits(slow)) == 2 and all(os.path.exists(os.path.join(wd.outgoing, f))
                                                     for f in want)):
                time.sleep(0.02)
            p.send_signal(signal.SIGINT)
            out, err, _ = _finish(p, 20)
            t.eq(p.returncode, -signal.SIGINT, "interrupted retry: run 2 ended by SIGINT (stderr %r)"
                 % err[-300:])
            t.eq(len(srv.hits(slow)), 2, "interrupted retry: run 2 asked for the slow URL")
            t.eq(wd.failed(), [l for l in first if l[1] == srv.url(slow[1:])],
                 "interrupted retry: the done URL lost its line, the one in flight kept it")
            rc, out, err = wd.run(lst)
            t.eq(rc, 1, "interrupted retry: run 3 exit status 1 (the slow URL failed before)")
            notes = C.summary_notes(out.strip())
            t.eq((notes["already done"], notes["failed before"]), (1, 1),
                 "interrupted retry: run 3: 1 already done, 1 failed before (%r)" % out)
            t.eq(len(srv.hits(slow)), 2, "interrupted retry: run 3 did not ask for the slow URL")

def test_stop_abandons_retryable_failures(t):
    """A transient failure (503) that ends while a stop is under way, with
    retries left, is abandoned like the transfers in flight, not recorded as
    final: it has no outcome yet, and the next run does it.  The server holds
    200 requests; thumbd is frozen (SIGSTOP) while they are all answered 503,
    goes on (SIGCONT) and gets SIGINT at once: the answers wait in its
    sockets, so it reads them while the stop begins.  (The old code recorded
    some in about 5 runs of 6: two rounds.)"""
    cdir = C.corpus(t)
    if cdir is None:
        return
    n = 200
    conf = {"download.connections": n, "download.per_host_start": n, "download.per_host": n,
            "download.retries": 3, "download.retry_delay": 5}
    for r in (1, 2):
        what = "stop with 503s, round %d" % r
        with C.serve(cdir) as srv, C.Workdir(conf) as wd:
            urls = [srv.url("hold/503/photos/hopper_128x128.jpg?n=%d" % i) for i in range(n)]
            p = _spawn(wd, wd.write_list(urls))
            try:
                deadline = time.monotonic() + 30
                while srv.held() < n and time.monotonic() < deadline and p.poll() is None:
                    time.sleep(0.01)
                t.eq(srv.held(), n, "%s: all %d requests in flight before the signal" % (what, n))
                p.send_signal(signal.SIGSTOP)
                t.eq(srv.release_held(n), n, "%s: every request answered 503 while thumbd is frozen" % what)
            finally:
                p.send_signal(signal.SIGCONT)
            p.send_signal(signal.SIGINT)
            out, err, took = _finish(p, 20)
            t.eq(p.returncode, -signal.SIGINT, "%s: ended killed by SIGINT (stderr %r)" % (what, err[-300:]))
            t.eq(wd.failed()[:3], [], "%s: no URL with retries left recorded as failed" % what)
            t.eq(wd.incoming_files(), [], "%s: incoming/ left empty" % what)
