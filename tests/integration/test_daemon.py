"""thumbd --daemon under a systemd-like supervisor: sd_notify datagrams
(READY, STATUS, WATCHDOG, RELOADING, STOPPING) on a NOTIFY_SOCKET this test
binds; intake from a watched directory (lists renamed in, moved to done/),
a followed file (tail -F) and hand-off images renamed into incoming/; config
reload on SIGHUP (a bad config keeps the old one); the Prometheus file;
the watchdog while idle and busy; no CPU use while idle; log reopen on
SIGUSR1; SIGTERM drains, exits 0, and a restart on the same state finishes
every list exactly once; an entry kept for a failure of this machine is
tried again by the running daemon (daemon.retry_kept) or, with 0, by the
next start.

Every wait has a timeout, and a daemon this file started is killed in a
finally.  A binary without --daemon fails each test at its first check."""

import collections
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import types
import urllib.parse

import common as C

WATCHDOG_USEC = 2000000
PING_LIMIT = WATCHDOG_USEC / 2 / 1e6 + 0.25      # s between WATCHDOG=1 datagrams, slack included
PROM = "thumbd.prom"
PROM_SERIES = ("thumbd_urls_done_total", 'thumbd_urls_failed_total{reason="',
               "thumbd_transfers_in_flight", "thumbd_queue_depth", "thumbd_workers_busy",
               'thumbd_download_seconds_bucket{le="+Inf"}')
PROM_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")
HASHED = re.compile(r"^.+-[0-9a-f]{8}_\d+\.(jpg|png|webp)$")


# -- the supervisor's side ---------------------------------------------------

class Notify:
    """The NOTIFY_SOCKET end (AF_UNIX, SOCK_DGRAM): a thread records every
    line of every datagram with its arrival time (time.monotonic())."""

    def __init__(self):
        d = tempfile.mkdtemp(prefix="thumbd-sd-")
        if len(d) > 90:                                  # sun_path is 108 bytes
            shutil.rmtree(d, ignore_errors=True)
            d = tempfile.mkdtemp(prefix="thumbd-sd-", dir="/tmp")
        self.dir = d
        self.path = os.path.join(d, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self._lock = threading.Lock()
        self._lines = []                                 # (t, line)
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="notify", daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stop:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            now = time.monotonic()
            with self._lock:
                for line in data.decode("utf-8", "replace").split("\n"):
                    if line:
                        self._lines.append((now, line))

    def mark(self):
        with self._lock:
            return len(self._lines)

    def lines(self, since=0):
        with self._lock:
            return list(self._lines[since:])

    def find(self, line, since=0):
        """(index, time) of the first line equal to line at or after index since, or None."""
        with self._lock:
            for i in range(since, len(self._lines)):
                if self._lines[i][1] == line:
                    return i, self._lines[i][0]
        return None

    def wait(self, line, since, timeout, proc=None):
        return _wait(lambda: self.find(line, since), timeout, proc)

    def pings(self):
        return [tm for tm, l in self.lines() if l == "WATCHDOG=1"]

    def close(self):
        self._stop = True
        self._thread.join(2)
        self.sock.close()
        if not os.environ.get("THUMBD_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Daemon:
    """One `thumbd --daemon -c CONF` process in the environment systemd gives
    a Type=notify service with WatchdogSec=2.  stdout and stderr go to files
    next to the notify socket (outside the work directory)."""

    def __init__(self, wd, nt, n=1, prefix=()):
        self.wd, self.nt, self.n, self.prefix = wd, nt, n, list(prefix)
        self.proc = None
        self.t_ready = None
        self.err_path = os.path.join(nt.dir, "daemon%d.err" % n)
        self.out_path = os.path.join(nt.dir, "daemon%d.out" % n)

    def start(self, t, what):
        """Starts it and waits for READY=1 (10 s): True, or a counted failure."""
        env = {k: v for k, v in os.environ.items()
               if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")}
        env["NOTIFY_SOCKET"] = self.nt.path
        env["WATCHDOG_USEC"] = str(WATCHDOG_USEC)
        since = self.nt.mark()
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(self.prefix + [C.thumbd_path(), "--daemon", "-c", self.wd.config],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         cwd=self.wd.cwd, env=env)
        got = self.nt.wait("READY=1", since, 10, self.proc)
        if got is None:
            rc = self.proc.poll()
            how = ("exited with status %s" % rc) if rc is not None else "is still running after 10 s"
            return t.fail("%s: thumbd --daemon sends READY=1 on NOTIFY_SOCKET (it %s; stderr %r)"
                          % (what, how, self.stderr()[-600:]))
        self.t_ready = got[1]
        return t.check(True, "%s: thumbd --daemon started and sent READY=1" % what)

    def stderr(self):
        try:
            with open(self.err_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def alive(self, t, what):
        rc = self.proc.poll()
        return t.check(rc is None, "%s: the daemon is still running (exit status %r, stderr %r)"
                       % (what, rc, self.stderr()[-600:] if rc is not None else ""))

    def signal(self, sig):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, t, what, timeout=10):
        """SIGTERM: STOPPING=1, exit status 0 within timeout.  -> True when it exited 0."""
        since = self.nt.mark()
        t0 = time.monotonic()
        self.signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            rc = None
        took = time.monotonic() - t0
        t.check(self.nt.find("STOPPING=1", since) is not None,
                "%s: SIGTERM -> STOPPING=1 (datagrams since: %r)"
                % (what, [l for _, l in self.nt.lines(since)][-10:]))
        if not t.check(rc is not None, "%s: exited within %d s of SIGTERM" % (what, timeout)):
            self.kill()
            return False
        self.check_sanitizer(t, what)
        return t.eq(rc, 0, "%s: exit status after SIGTERM (%.1f s; stderr %r)"
                    % (what, took, self.stderr()[-600:]))

    def check_sanitizer(self, t, what):
        err = self.stderr()
        t.check("Sanitizer" not in err and "runtime error:" not in err,
                "%s: no sanitizer report: %s" % (what, err[-3000:]))

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass

    def cpu_ms(self):
        """CPU time of the whole process (every thread), in ms: the scheduler's
        own nanosecond count (/proc/PID/task/*/schedstat), not the clock ticks
        of /proc/PID/stat, which charge a whole 10 ms tick to any thread that
        happens to be running when the tick fires."""
        total, seen = 0, 0
        tdir = "/proc/%d/task" % self.proc.pid
        for tid in os.listdir(tdir):
            try:
                with open(os.path.join(tdir, tid, "schedstat")) as f:
                    total += int(f.read().split()[0])
                seen += 1
            except (FileNotFoundError, ProcessLookupError):
                pass        # a thread that just ended
        if seen:
            return total / 1e6
        # a kernel without schedstat: the clock ticks, coarse but never 0 for a busy process
        with open("/proc/%d/stat" % self.proc.pid) as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) * 1000.0 / os.sysconf("SC_CLK_TCK")

    def sanitized(self):
        """A sanitizer build: its runtime has threads and timers of its own."""
        with open("/proc/%d/maps" % self.proc.pid) as f:
            maps = f.read()
        return any(lib in maps for lib in ("libtsan", "libasan", "libubsan"))


class PromReader:
    """Reads logs/thumbd.prom every 10 ms in a thread: every read must be a
    whole file (all the series, ends with a newline).  Also notes the inodes
    seen: a file replaced by rename gets a new one each time."""

    def __init__(self, path):
        self.path = path
        self.reads = 0
        self.bad = []
        self.inodes = set()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="prom", daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stop:
            try:
                with open(self.path, "rb") as f:
                    ino = os.fstat(f.fileno()).st_ino
                    data = f.read()
            except OSError:
                time.sleep(0.01)
                continue
            self.reads += 1
            self.inodes.add(ino)
            text = data.decode("utf-8", "replace")
            missing = [s for s in PROM_SERIES if s not in text]
            if (missing or not text.endswith("\n")) and len(self.bad) < 3:
                self.bad.append("%d bytes, missing %r, tail %r" % (len(data), missing, text[-80:]))
            time.sleep(0.01)

    def close(self):
        self._stop = True
        self._thread.join(2)


# -- helpers -------------------------------------------------------------------

def _wait(pred, timeout, proc=None, step=0.05):
    """pred() once it is truthy, polling; its last value after timeout or once proc has exited."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= end or (proc is not None and proc.poll() is not None):
            return pred()
        time.sleep(step)


def _target(url):
    """The request target the test server records for url."""
    u = urllib.parse.urlsplit(url)
    return u.path + ("?" + u.query if u.query else "")


class Item:
    """One image the test expects: its URL (or path), output stem, real format
    and displayed size."""

    def __init__(self, url, stem, fmt, w, h):
        self.url, self.stem, self.fmt, self.w, self.h = url, stem, fmt, w, h

    def names(self, sizes=C.DEFAULT_SIZES):
        return C.thumb_names(self.stem, self.fmt, sizes)

    def done(self, wd, sizes=C.DEFAULT_SIZES):
        return all(os.path.isfile(os.path.join(wd.outgoing, n)) for n in self.names(sizes))

    def target(self):
        return _target(self.url)

    def check(self, t, wd, what, sizes=C.DEFAULT_SIZES):
        return C.check_thumbs(t, wd, self.stem, self.fmt, self.w, self.h, sizes=sizes,
                              what="%s %s" % (what, self.stem))


class Corpus:
    def __init__(self, cdir, srv):
        self.cdir, self.srv = cdir, srv
        self.rows = {r["path"]: r for r in C.manifest(cdir)}

    def _dims(self, path):
        row = self.rows[path]
        w, h = C.displayed_size(row)
        return row["format"], w, h

    def plain(self, path):
        fmt, w, h = self._dims(path)
        stem = os.path.splitext(os.path.basename(path))[0]
        return Item(self.srv.url(path), stem, fmt, w, h)

    def alias(self, path, stem, delay=None):
        """The image at path under another name (optionally answered after delay s)."""
        fmt, w, h = self._dims(path)
        name = "%s.%s" % (stem, C.EXT[fmt])
        enc = urllib.parse.quote(path, safe="")
        rel = ("slowalias/%s/%s/%s" % (delay, enc, name)) if delay else ("alias/%s/%s" % (enc, name))
        return Item(self.srv.url(rel), stem, fmt, w, h)


def _layout(wd):
    """The watched list directory (wd.lists), the followed file (its directory
    exists, the file not yet) and a staging directory on the same filesystem."""
    feed = os.path.join(wd.root, "feed")
    src = os.path.join(wd.root, "src")
    os.makedirs(feed)
    os.makedirs(src)
    return wd.lists, os.path.join(feed, "follow.urls"), src


def _daemon_config(queue, follow, extra=None):
    cfg = {"daemon.watch": "%s %s" % (queue, follow), "daemon.log": "file",
           "daemon.metrics": PROM, "daemon.metrics_interval": "1"}
    cfg.update(extra or {})
    return cfg


def _drop_list(src, queue, name, lines):
    """Write a list in the staging directory, then rename it into the watched one."""
    p = os.path.join(src, name)
    with open(p, "w") as f:
        f.write("".join(l + "\n" for l in lines))
    os.rename(p, os.path.join(queue, name))


def _append(follow, *lines):
    with open(follow, "a") as f:
        f.write("".join(l + "\n" for l in lines))


def _read_prom(path):
    """{series (name + labels): float} or None when the file is missing."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        m = PROM_LINE.match(line)
        if m and not line.startswith("#"):
            try:
                out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
            except ValueError:
                pass
    return out


def _max_gap(pings, a, b):
    """Largest gap between WATCHDOG=1 times over the window (a, b), counting
    from the last ping at or before a (else from a itself) to the first ping
    at or after b (else to b itself)."""
    before = [p for p in pings if p <= a]
    after = [p for p in pings if p >= b]
    seq = before[-1:] or [a]
    seq += [p for p in pings if a < p < b]
    seq += after[:1] or [b]
    return max(y - x for x, y in zip(seq, seq[1:]))


def _check_gap(t, nt, a, b, what):
    g = _max_gap(nt.pings(), a, b)
    t.check(g <= PING_LIMIT, "watchdog %s (%.1f s): WATCHDOG=1 at least every %.2f s, largest gap %.2f s"
            % (what, b - a, PING_LIMIT, g))


def _leftovers(wd):
    """What must not exist after a stop: anything in incoming/ but .thumbd-*
    dot-files, any *.tmp or *.part anywhere in the work directory."""
    bad = ["incoming/" + f for f in wd.incoming_files()]
    for d, _, files in os.walk(wd.root):
        for f in files:
            if f.endswith(".tmp") or f.endswith(".part"):
                bad.append(os.path.relpath(os.path.join(d, f), wd.root))
    return sorted(set(bad))


# -- the tests -------------------------------------------------------------------

def test_daemon_intake(t):
    """READY/STATUS/WATCHDOG; a list renamed in, a followed file created
    after start, a hand-off image; failed.tsv; the metrics file; watchdog
    gaps busy and idle; idle CPU; SIGUSR1 reopens the log; SIGTERM."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir() as wd, Notify() as nt:
        queue, follow, src = _layout(wd)
        wd.write_config(_daemon_config(queue, follow))
        cp = Corpus(cdir, srv)
        d = Daemon(wd, nt)
        prom = PromReader(os.path.join(wd.logs, PROM))
        try:
            _intake(t, wd, cp, d, nt, prom, queue, follow, src)
        finally:
            d.kill()
            prom.close()


def _intake(t, wd, cp, d, nt, prom, queue, follow, src):
    if not d.start(t, "intake"):
        return

    # 0. one process per incoming directory: a second thumbd on the same
    # state is refused before it touches anything (it would delete the
    # daemon's downloads as leftovers)
    second = os.path.join(wd.cwd, "second.urls")     # not in lists/: the daemon watches that
    with open(second, "w") as f:
        f.write(cp.plain("photos/hopper_128x128.jpg").url + "\n")
    rc, out, err = wd.run(second)
    t.eq(rc, 75, "lock: a one-shot run on the daemon's directories exits 75, EX_TEMPFAIL "
         "(stderr %r)" % err[-300:])
    t.check("in use by another thumbd (pid %d)" % d.proc.pid in err,
            "lock: and says which process holds them (%r)" % err[-300:])
    # its own incoming/ (so its own name registry) but the daemon's outgoing/
    # or logs/: refused too, as it could give two images one name or rewrite
    # the daemon's failed.tsv
    own = os.path.join(wd.base, "own")
    for what, sets in (("outgoing", ["paths.incoming=%s/in" % own]),
                       ("logs", ["paths.incoming=%s/in2" % own, "paths.outgoing=%s/out2" % own])):
        args = []
        for kv in sets:
            args += ["--set", kv]
        rc, out, err = wd.run(*args, second)
        t.eq(rc, 75, "lock: a one-shot run with the daemon's %s/ exits 75 (stderr %r)" % (what, err[-300:]))
        t.check("is the %s directory of another running thumbd" % what in err,
                "lock: says whose %s/ it is (%r)" % (what, err[-300:]))
    t.eq(sorted(os.listdir(os.path.join(own, "in"))), [".thumbd-lock"],
         "lock: the refused run made nothing but its own lock file")

    # 1. a list renamed into the watched directory, busy for a few seconds
    good = [cp.plain("photos/hopper_128x128.jpg"), cp.plain("photos/iguana_100x68.jpg"),
            cp.plain("edge/png_palette_trns.png"), cp.plain("edge/webp_lossy.webp")]
    good += [cp.alias(p, "big%d" % i) for i, p in enumerate((
        "photos/milky_way_4000x6000.jpg", "photos/laptop_tablet_5760x3840.jpg",
        "photos/koi_kodak_pixpro_s1_4640x3480.jpg", "photos/red_panda_3872x2592.jpg",
        "photos/iphone_xs_orient6_4032x3024.jpg"))]
    good += [cp.alias("photos/rocket_640x427.jpg", "slow1", delay=1.5),
             cp.alias("photos/portrait_800x533.jpg", "slow2", delay=2.5)]
    bad_url = cp.srv.url("status/404/missing.jpg")
    lines = ["# a comment", ""] + [x.url for x in good[:6]] + [bad_url] + [x.url for x in good[6:]]
    t_busy = time.monotonic()
    _drop_list(src, queue, "batch1.urls", lines)
    done_dir = os.path.join(queue, "done")
    finished = _wait(lambda: all(x.done(wd) for x in good) and wd.failures_for(bad_url)
                     and os.path.isfile(os.path.join(done_dir, "batch1.urls")), 20, d.proc)
    t_busy_end = time.monotonic()
    t.check(finished, "intake: every URL of a list renamed into the watched directory ends "
            "(thumbnails or failed.tsv) and the list moves to done/ within 20 s")
    for x in good:
        x.check(t, wd, "intake list:")
    t.eq([u for _, u, _ in wd.failed()], [bad_url], "intake: failed.tsv holds the 404 URL, once")
    C.check_failed_format(t, wd, "intake")
    t.check(not os.path.exists(os.path.join(queue, "batch1.urls")),
            "intake: the finished list is gone from the watched directory")
    t.check(os.path.isfile(os.path.join(done_dir, "batch1.urls")),
            "intake: the finished list is at <dir>/done/batch1.urls")
    if not d.alive(t, "intake after the list"):
        return

    # 2. the followed file, created after READY, then appended to
    n_done = len(good)
    for i, path in enumerate(("photos/hopper_128x128.jpg", "edge/webp_lossy.webp"), 1):
        x = cp.alias(path, "follow%d" % i)
        t0 = time.monotonic()
        _append(follow, x.url)
        ok = _wait(lambda: x.done(wd), 10, d.proc)
        took = time.monotonic() - t0
        t.check(ok and took <= 3.0, "intake: a line %s gets its thumbnails within 3 s (%s)"
                % ("in the followed file, created after READY," if i == 1 else "appended to the followed file",
                   "%.1f s" % took if ok else "not within 10 s"))
        x.check(t, wd, "intake follow:")
        n_done += 1

    # 3. a hand-off image renamed into incoming/
    h = Item(None, "handoff", "JPEG", 100, 68)
    tmp = os.path.join(src, "handoff.jpg.partial")
    shutil.copyfile(os.path.join(cp.cdir, "photos/iguana_100x68.jpg"), tmp)
    landed = os.path.join(wd.incoming, "handoff.jpg")
    os.rename(tmp, landed)
    ok = _wait(lambda: h.done(wd) and not os.path.exists(landed), 10, d.proc)
    t.check(ok, "intake: incoming/handoff.jpg gets outgoing/handoff_{32,64,200}.jpg and leaves incoming/ within 10 s")
    h.check(t, wd, "intake hand-off:")
    t.check(not os.path.exists(landed), "intake: the hand-off file is gone from incoming/")
    n_done += 1

    # 4. the metrics file
    prom_path = os.path.join(wd.logs, PROM)
    def prom_caught_up():
        v = _read_prom(prom_path)
        return v if v and v.get("thumbd_urls_done_total") == n_done else None
    m = _wait(prom_caught_up, 5, d.proc) or _read_prom(prom_path) or {}
    t.check(os.path.isfile(prom_path), "metrics: logs/%s exists" % PROM)
    for s in PROM_SERIES:
        t.check(any(k.startswith(s) for k in m), "metrics: %s has %s" % (PROM, s))
    t.eq(m.get("thumbd_urls_done_total"), float(n_done),
         "metrics: thumbd_urls_done_total reaches the images done (%d)" % n_done)
    failed_sum = sum(v for k, v in m.items() if k.startswith("thumbd_urls_failed_total{"))
    t.eq(failed_sum, 1.0, "metrics: thumbd_urls_failed_total summed over reasons = failed.tsv lines")

    # 5. idle: no CPU, watchdog still pinging
    time.sleep(1.0)
    t_idle = time.monotonic()
    c0 = d.cpu_ms()
    time.sleep(5.0)
    c1 = d.cpu_ms()
    t_idle_end = time.monotonic()
    # a plain build uses 6-9 ms here (the metrics file every second, the
    # watchdog, the workers' one trim); TSan's runtime adds about 10
    limit = 50 if d.sanitized() else 20
    t.check(c1 - c0 <= limit, "idle: at most %d ms of CPU time over 5 s idle (used %.1f ms)" % (limit, c1 - c0))
    if not d.alive(t, "intake after idling"):
        return

    # 6. SIGUSR1 reopens the log
    log = os.path.join(wd.logs, "thumbd.log")
    rotated = log + ".1"
    t.check(os.path.isfile(log), "intake: logs/thumbd.log exists (log = file)")
    if os.path.exists(log):
        os.rename(log, rotated)
    d.signal(signal.SIGUSR1)
    _wait(lambda: os.path.exists(log), 2, d.proc)
    x = cp.alias("edge/png_palette_trns.png", "follow3")
    _append(follow, x.url)
    t.check(_wait(lambda: x.done(wd), 10, d.proc), "SIGUSR1: work after the reopen still gets done")
    n_done += 1

    def new_log_has_url():
        lines = wd.log_lines()
        return lines is not None and any(x.url in l for l in lines)
    t.check(_wait(new_log_has_url, 5, d.proc),
            "SIGUSR1: a new logs/thumbd.log appears and logs the URL taken after the reopen")
    old = ""
    if os.path.exists(rotated):
        with open(rotated, encoding="utf-8", errors="replace") as f:
            old = f.read()
    t.check(x.url not in old, "SIGUSR1: the renamed-away log gets no lines after the reopen")

    # 7. status, watchdog, stop
    status = [l for _, l in nt.lines() if l.startswith("STATUS=")]
    t.check(len(status) >= 1 and any(re.search(r"\d", l) for l in status),
            "intake: STATUS= datagrams with live counters (got %r)" % status[-3:])
    _wait(lambda: prom.reads > 0 and len(prom.inodes) >= 3, 3, d.proc)
    if not d.alive(t, "intake before the stop"):
        return
    t_stop = time.monotonic()
    d.stop(t, "intake")
    stopping = nt.find("STOPPING=1")
    _check_gap(t, nt, t_busy, t_busy_end, "while busy")
    _check_gap(t, nt, t_idle, t_idle_end, "while idle")
    _check_gap(t, nt, d.t_ready, stopping[1] if stopping else t_stop, "from READY=1 to STOPPING=1")
    prom.close()
    t.eq(prom.bad, [], "metrics: every read of %s during the run saw a whole file (%d reads)" % (PROM, prom.reads))
    t.check(len(prom.inodes) >= 3, "metrics: the file is replaced by rename every interval (%d inodes seen)"
            % len(prom.inodes))
    t.check(os.path.isfile(prom_path), "metrics: %s still there after the stop" % PROM)
    start = (_read_prom(prom_path) or {}).get("thumbd_start_time_seconds", 0)
    t.check(abs(start - time.time()) < 600,
            "metrics: the file left after the stop still says when the daemon started (%r)" % start)
    t.eq(_leftovers(wd), [], "intake: after the stop no .tmp/.part files, incoming/ holds only .thumbd-* files")


def test_daemon_reload(t):
    """SIGHUP with new sizes: RELOADING=1, READY=1, new URLs get the new
    widths.  SIGHUP with a bad config: the old one stays, the log says why."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir() as wd, Notify() as nt:
        queue, follow, src = _layout(wd)
        cfg = _daemon_config(queue, follow)
        wd.write_config(cfg)
        cp = Corpus(cdir, srv)
        d = Daemon(wd, nt)
        try:
            _reload(t, wd, cp, d, nt, cfg, follow)
        finally:
            d.kill()


def _sighup(t, d, nt, what):
    """SIGHUP -> RELOADING=1 then READY=1 (5 s each)."""
    since = nt.mark()
    d.signal(signal.SIGHUP)
    r = nt.wait("RELOADING=1", since, 5, d.proc)
    ok = t.check(r is not None, "%s: SIGHUP -> RELOADING=1" % what)
    if r is not None:
        mono = [l for _, l in nt.lines(since) if l.startswith("MONOTONIC_USEC=")]
        if mono:
            v = mono[0].split("=", 1)[1]
            now = time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6
            t.check(v.isdigit() and abs(int(v) - now) < 10e6,
                    "%s: MONOTONIC_USEC= with RELOADING=1 is CLOCK_MONOTONIC in microseconds (%r)" % (what, v))
        ok &= t.check(nt.wait("READY=1", r[0], 5, d.proc) is not None,
                      "%s: READY=1 after RELOADING=1" % what)
    return ok


def _reload(t, wd, cp, d, nt, cfg, follow):
    if not d.start(t, "reload"):
        return
    r1 = cp.alias("photos/hopper_128x128.jpg", "r1")
    _append(follow, r1.url)
    t.check(_wait(lambda: r1.done(wd), 10, d.proc), "reload: before SIGHUP, default widths 32, 64, 200")

    new = (48, 100)
    wd.write_config(dict(cfg, **{"thumbnails.sizes": "48,100"}))
    _sighup(t, d, nt, "reload sizes = 48,100")
    r2 = cp.alias("photos/iguana_100x68.jpg", "r2")
    _append(follow, r2.url)
    t.check(_wait(lambda: r2.done(wd, new), 10, d.proc), "reload: a URL after SIGHUP gets widths 48 and 100")
    time.sleep(0.3)
    r2.check(t, wd, "reload:", sizes=new)
    t.eq(sorted(f for f in wd.thumbs() if f.startswith("r2")), sorted(r2.names(new)),
         "reload: only the new widths for the URL after SIGHUP (no _32/_64/_200)")
    if not d.alive(t, "reload after a good SIGHUP"):
        return

    log_before = len(wd.log_lines() or [])
    wd.write_config(dict(cfg, **{"thumbnails.sizes": "banana"}))
    _sighup(t, d, nt, "reload sizes = banana")
    time.sleep(0.3)
    if not d.alive(t, "reload after a bad SIGHUP"):
        return

    def says_why():
        return [l for l in (wd.log_lines() or [])[log_before:] if wd.config in l]
    why = _wait(says_why, 3, d.proc)
    t.check(why, "reload: after a bad config, logs/thumbd.log has a line naming %s (new lines: %r)"
            % (wd.config, (wd.log_lines() or [])[log_before:][-5:]))
    t.check(any("sizes" in l or "banana" in l for l in why or []),
            "reload: that line says what is wrong (mentions sizes or banana): %r" % (why or [])[:2])
    r3 = cp.alias("edge/webp_lossy.webp", "r3")
    _append(follow, r3.url)
    t.check(_wait(lambda: r3.done(wd, new), 10, d.proc),
            "reload: after a bad config the previous one (48, 100) stays in force")
    time.sleep(0.3)
    t.eq(sorted(f for f in wd.thumbs() if f.startswith("r3")), sorted(r3.names(new)),
         "reload: after a bad config, only widths 48 and 100")

    # many reloads while images are being made: old configs are freed as
    # soon as no thread reads them (a sanitizer build catches a use after
    # free), and reloads keep working past any fixed count
    wd.write_config(dict(cfg, **{"thumbnails.sizes": "48,100"}))
    storm = [cp.alias("photos/hopper_128x128.jpg", "s%02d" % i) for i in range(12)]
    for i, it in enumerate(storm):
        _append(follow, it.url)
        for _ in range(8):
            d.signal(signal.SIGHUP)
            time.sleep(0.01)
    t.check(_wait(lambda: all(it.done(wd, new) for it in storm), 20, d.proc),
            "reload storm: 96 SIGHUPs while 12 URLs are done: every URL gets widths 48 and 100")
    before = nt.mark()
    t.check(_sighup(t, d, nt, "reload after the storm"), "reload storm: one more SIGHUP still reloads")
    t.check(nt.mark() > before, "reload storm: the daemon still talks to systemd")
    d.stop(t, "reload")


def _two_daemons(t, body, extra=None):
    """body(e) with the corpus served, a work directory laid out for the
    daemon (_layout, _daemon_config with extra) and two Daemon handles, a
    first run and its restart, both killed at the end whatever happens.  e
    has t, wd, cp, srv, nt, d1, d2, queue, follow, src."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir() as wd, Notify() as nt:
        queue, follow, src = _layout(wd)
        wd.write_config(_daemon_config(queue, follow, extra))
        d1, d2 = Daemon(wd, nt, 1), Daemon(wd, nt, 2)
        try:
            body(types.SimpleNamespace(t=t, wd=wd, cp=Corpus(cdir, srv), srv=srv, nt=nt, d1=d1, d2=d2,
                                       queue=queue, follow=follow, src=src))
        finally:
            d1.kill()
            d2.kill()


def test_daemon_reload_low_nofile(t):
    """Under an open-files limit that lowered the connections at start, a
    SIGHUP with the same config warns of nothing: the config's value did
    not change (before, every reload said download.connections changed)."""
    prlimit = shutil.which("prlimit")
    if not t.check(prlimit is not None, "prlimit is installed (util-linux)"):
        return
    with C.Workdir() as wd, Notify() as nt:
        queue, follow, src = _layout(wd)
        wd.write_config(_daemon_config(queue, follow))
        d = Daemon(wd, nt, prefix=[prlimit, "--nofile=200:200"])
        try:
            if not d.start(t, "reload, low nofile"):
                return
            t.check("connections instead of 128" in d.stderr(),
                    "reload, low nofile: the start lowered the connections (%r)" % d.stderr()[-300:])
            since = nt.mark()
            d.signal(signal.SIGHUP)
            t.check(nt.wait("READY=1", since, 10, d.proc) is not None, "reload, low nofile: reloaded")
            t.check(_wait(lambda: any("reloaded " in l for l in wd.log_lines() or []), 5, d.proc),
                    "reload, low nofile: the log says it reloaded")
            t.eq([l for l in wd.log_lines() or [] if "reload: " in l and "changed" in l], [],
                 "reload, low nofile: no key is said to have changed")
            d.stop(t, "reload, low nofile")
        finally:
            d.kill()


def test_daemon_reload_metrics_off(t):
    """A reload that turns the metrics file off (or moves it) removes the
    old one: left behind, a scraper would export its last values for ever."""
    with C.Workdir() as wd, Notify() as nt:
        queue, follow, src = _layout(wd)
        cfg = _daemon_config(queue, follow)
        wd.write_config(cfg)
        prom = os.path.join(wd.logs, PROM)
        d = Daemon(wd, nt)
        try:
            if not d.start(t, "metrics off"):
                return
            t.check(_wait(lambda: os.path.isfile(prom), 5, d.proc), "metrics off: %s written" % PROM)
            cfg = dict(cfg, **{"daemon.metrics": "other.prom"})
            wd.write_config(cfg)
            since = nt.mark()
            d.signal(signal.SIGHUP)
            t.check(nt.wait("READY=1", since, 10, d.proc) is not None, "metrics moved: reloaded")
            t.check(_wait(lambda: os.path.isfile(os.path.join(wd.logs, "other.prom")), 5, d.proc),
                    "metrics moved: the new file is written")
            t.check(not os.path.exists(prom), "metrics moved: the old file is gone")
            cfg = dict(cfg, **{"daemon.metrics": ""})
            wd.write_config(cfg)
            since = nt.mark()
            d.signal(signal.SIGHUP)
            t.check(nt.wait("READY=1", since, 10, d.proc) is not None, "metrics off: reloaded")
            t.check(not os.path.exists(os.path.join(wd.logs, "other.prom")), "metrics off: the file is gone")
            time.sleep(1.5)         # past a metrics interval (1 s): nothing writes it again
            t.check(not os.path.exists(os.path.join(wd.logs, "other.prom")) and not os.path.exists(prom),
                    "metrics off: no metrics file written after the reload")
            d.stop(t, "metrics off")
        finally:
            d.kill()


def test_daemon_drain_restart(t):
    """SIGTERM with transfers in flight: STOPPING=1, exit 0; a restart on the
    same state ends every URL exactly once under its first name."""
    _two_daemons(t, lambda e: _drain(e.t, e.wd, e.cp, e.srv, e.d1, e.d2, e.nt, e.queue, e.follow, e.src))


def _drain(t, wd, cp, srv, d1, d2, nt, queue, follow, src):
    if not d1.start(t, "drain"):
        return
    fol = [cp.alias("photos/hopper_128x128.jpg", "f1"), cp.alias("photos/iguana_100x68.jpg", "f2"),
           cp.alias("edge/png_palette_trns.png", "f3")]
    _append(follow, *[x.url for x in fol])
    t.check(_wait(lambda: all(x.done(wd) for x in fol), 10, d1.proc),
            "drain: three lines of the followed file done before the stop")

    # 30 URLs: 10 answered at once, 20 after 1.5 s; 3 of them end in a 404
    good, bad = [], []
    for i in range(30):
        stem = "d%02d" % i
        if i % 10 == 9:
            bad.append(srv.url(("slowhead/1.5/missing/%s.jpg" if i > 9 else "status/404/%s.jpg") % stem))
        else:
            good.append(cp.alias("photos/hopper_128x128.jpg", stem, delay=1.5 if i > 9 else None))
    urls = [x.url for x in good] + bad
    urls.sort(key=lambda u: re.search(r"/d(\d\d)\.jpg", u).group(1))
    _drop_list(src, queue, "drain.urls", urls)

    def slow_started():
        return any("/slow" in p for _, p in srv.requests())
    t.check(_wait(slow_started, 5, d1.proc), "drain: the list's slow downloads started")
    time.sleep(0.5)
    before = [x for x in good if x.done(wd)] + [u for u in bad if wd.failures_for(u)]
    t.check(0 < len(before) < len(urls), "drain: the stop comes with the list partly done (%d of %d ended)"
            % (len(before), len(urls)))
    seen_before = collections.Counter(p for m, p in srv.requests() if m == "GET")
    if not d1.stop(t, "drain: first run"):
        return
    t.eq(_leftovers(wd), [], "drain: after the stop no .tmp/.part files, incoming/ holds only .thumbd-* files")

    # a line appended while no daemon runs is read after the restart
    f4 = cp.alias("edge/webp_lossy.webp", "f4")
    _append(follow, f4.url)
    if not d2.start(t, "drain: restart"):
        return

    def all_ended():
        return (all(x.done(wd) for x in good) and all(wd.failures_for(u) for u in bad)
                and f4.done(wd) and os.path.isfile(os.path.join(queue, "done", "drain.urls")))
    t.check(_wait(all_ended, 30, d2.proc),
            "drain: after the restart every URL ends and the list moves to done/ within 30 s")
    for x in good:
        t.check(x.done(wd), "drain: %s has all its thumbnails" % x.url)
    failed = [u for _, u, _ in wd.failed()]
    for u in bad:
        t.eq(failed.count(u), 1, "drain: %s in failed.tsv exactly once" % u)
    twice = sorted(u for u, n in collections.Counter(failed).items() if n > 1)
    t.eq(twice, [], "drain: no URL in failed.tsv twice")
    t.eq(sorted(f for f in wd.thumbs() if HASHED.match(f)), [],
         "drain: no output under a second (<stem>-<hash>) name")
    expected = set()
    for x in good + fol + [f4]:
        expected.update(x.names())
    t.eq(sorted(set(wd.thumbs()) - expected), [], "drain: outgoing/ holds only the expected thumbnails")
    t.check(not os.path.exists(os.path.join(queue, "drain.urls")),
            "drain: the list is gone from the watched directory")
    for x in before:
        url = x if isinstance(x, str) else x.url
        target = _target(url)
        t.eq(len(srv.log(target, "GET")) - seen_before[target], 0,
             "drain: a list URL ended before the stop is not downloaded again (%s)" % url)
    for x in fol:
        t.eq(len(srv.log(x.target(), "GET")), 1,
             "drain: followed line finished before the stop not downloaded again (%s)" % x.stem)
    t.eq(len(srv.log(f4.target(), "GET")), 1, "drain: the line appended while stopped downloaded once")
    if d2.alive(t, "drain: after the restart's work"):
        d2.stop(t, "drain: second run")
    t.eq(_leftovers(wd), [], "drain: finally no .tmp/.part files, incoming/ holds only .thumbd-* files")


def test_daemon_list_lines(t):
    """Lists the daemon reads follow the batch rules: a UTF-8 byte order
    mark at the start of a list dropped in a watched directory, or of a
    followed file, is skipped; a bad line is recorded in failed.tsv once and
    is failed before when a later list (after a restart) has it again."""
    _two_daemons(t, lambda e: _list_lines(e.t, e.wd, e.cp, e.d1, e.d2, e.queue, e.follow, e.src))


def _list_lines(t, wd, cp, d1, d2, queue, follow, src):
    if not d1.start(t, "list lines"):
        return
    a, b = cp.alias("photos/hopper_128x128.jpg", "bom1"), cp.alias("photos/iguana_100x68.jpg", "bom2")
    bad = "ftp://127.0.0.1/bad.jpg"
    # a NUL byte inside a line: the whole line is refused (shown with DEL), not
    # read as the URL before the NUL, which is a's and would count as done
    nul = a.url + "\0.png"
    with open(follow, "wb") as f:
        f.write(b"\xef\xbb\xbf" + (a.url + "\r\n").encode())
    _drop_list(src, queue, "bom.urls", ["\ufeff" + b.url, bad, nul])
    listed = os.path.join(queue, "done", "bom.urls")
    t.check(_wait(lambda: a.done(wd) and b.done(wd) and os.path.isfile(listed), 10, d1.proc),
            "list lines: the first URLs of a followed file and a list with a BOM are done")
    a.check(t, wd, "list lines: followed file with a BOM:")
    b.check(t, wd, "list lines: directory list with a BOM:")
    t.eq(sorted((u, r) for _, u, r in wd.failed()),
         sorted([(bad, "%s:2: not an http(s) URL" % os.path.join(queue, "bom.urls")),
                 (a.url + "\\x7f.png", "%s:3: invalid URL: a NUL byte in the line" % os.path.join(queue, "bom.urls"))]),
         "list lines: failed.tsv holds the bad lines only, once each")
    if not d1.stop(t, "list lines: first run"):
        return
    if not d2.start(t, "list lines: restart"):
        return
    _drop_list(src, queue, "again.urls", [bad])
    t.check(_wait(lambda: os.path.isfile(os.path.join(queue, "done", "again.urls")), 10, d2.proc),
            "list lines: a second list with the bad line is finished")
    t.eq(sorted(u for _, u, _ in wd.failed()), sorted([bad, a.url + "\\x7f.png"]),
         "list lines: the bad line failed before, not recorded again")
    t.check(any("failed before " + bad in l for l in wd.log_lines() or []),
            "list lines: the log says it failed before")
    if d2.alive(t, "list lines: after the second list"):
        d2.stop(t, "list lines: second run")


def test_daemon_rotation(t):
    """logrotate's "create" on a followed file: lines a writer appends to the
    renamed-away file before the new one appears are read (tail -F); a stop
    while the old file's entries are in flight loses none of them after a
    restart; a URL seen again after its thumbnails were deleted is done
    again, and one whose first is still in flight is a duplicate."""
    _two_daemons(t, lambda e: _rotation(e.t, e.wd, e.cp, e.srv, e.d1, e.d2, e.follow))


def _rotation(t, wd, cp, srv, d1, d2, follow):
    photo = "photos/rocket_640x427.jpg"
    if not d1.start(t, "rotation"):
        return
    q0, q1, m = (cp.alias(photo, s) for s in ("rq0", "rq1", "rm"))
    _append(follow, q0.url)
    t.check(_wait(lambda: q0.done(wd), 10, d1.proc), "rotation: the first line is done")
    old = follow + ".1"
    os.rename(follow, old)
    time.sleep(0.3)
    _append(old, q1.url)            # the writer has not reopened yet
    time.sleep(0.7)
    _append(follow, m.url)
    t.check(_wait(lambda: q1.done(wd) and m.done(wd), 10, d1.proc),
            "rotation: a line appended to the renamed-away file (no new file yet) is done, "
            "and so is the new file's")

    # the same URL again: a duplicate while its first is in flight; after
    # its thumbnails are deleted, done again
    slow = cp.alias(photo, "rslow", delay=1.5)
    _append(follow, slow.url, slow.url)
    t.check(_wait(lambda: slow.done(wd), 10, d1.proc), "rotation: a slow URL listed twice is done")
    t.check(_wait(lambda: any("duplicate " + slow.url in l for l in wd.log_lines() or []), 5),
            "rotation: its second line is a duplicate while the first is in flight")
    t.eq(len(srv.log(slow.target(), "GET")), 1, "rotation: the duplicate is downloaded once")
    for n in m.names():
        os.unlink(os.path.join(wd.outgoing, n))
    _append(follow, m.url)
    t.check(_wait(lambda: m.done(wd), 10, d1.proc),
            "rotation: a URL appended again after its thumbnails were deleted is done again")
    t.eq(len(srv.log(m.target(), "GET")), 2, "rotation: ... downloaded a second time")
    _append(follow, q0.url)
    t.check(_wait(lambda: any("already done " + q0.url in l for l in wd.log_lines() or []), 5, d1.proc),
            "rotation: a URL whose thumbnails exist is already done")

    # rotated while slow entries of the old file are out, then a stop
    s1, s2 = cp.alias(photo, "rs1", delay=3), cp.alias(photo, "rs2", delay=3)
    _append(follow, s1.url, s2.url)
    t.check(_wait(lambda: len(srv.log(s2.target(), "GET")) >= 1, 5, d1.proc),
            "rotation: the slow lines are in flight")
    os.rename(follow, old)
    _append(follow, m.url)
    time.sleep(1.5)                 # past the grace period: the old file is retired
    if not d1.stop(t, "rotation: first run"):
        return
    if not d2.start(t, "rotation: restart"):
        return
    t.check(_wait(lambda: s1.done(wd) and s2.done(wd), 15, d2.proc),
            "rotation: the rotated-away file's entries that were in flight at the stop are done "
            "after a restart (log %r)" % [l for l in wd.log_lines() or [] if "watch:" in l][-5:])
    if d2.alive(t, "rotation: after the restart"):
        d2.stop(t, "rotation: second run")


def test_daemon_truncated_stop(t):
    """logrotate's copytruncate on a followed file while a URL of it is in
    flight, then a stop: the file's lines are gone, so the state file keeps
    that URL by its text, the restart does it, and once it has ended the
    state file no longer holds it."""
    _two_daemons(t, lambda e: _truncated_stop(e.t, e.wd, e.cp, e.srv, e.d1, e.d2, e.follow))


def _truncated_stop(t, wd, cp, srv, d1, d2, follow):
    state = os.path.join(wd.incoming, ".thumbd-follow")

    def saved(url):
        try:
            with open(state, encoding="utf-8", errors="replace") as f:
                return "url " + url in f.read().splitlines()
        except OSError:
            return False

    open(follow, "w").close()
    if not d1.start(t, "truncated stop"):
        return
    # answered after 5 s: still in flight at the stop, which waits at most 3 s
    # for a save (at most once a second) to show the URL
    slow = cp.alias("photos/rocket_640x427.jpg", "tstop", delay=5)
    _append(follow, slow.url)
    t.check(_wait(lambda: srv.log(slow.target(), "GET"), 5, d1.proc), "truncated stop: the slow URL is in flight")
    shutil.copy(follow, follow + ".1")      # copytruncate
    open(follow, "w").close()
    t.check(_wait(lambda: saved(slow.url), 3, d1.proc),
            "truncated stop: the state file keeps the URL in flight of the truncated file (%r)"
            % [l for l in wd.log_lines() or [] if "watch:" in l][-3:])
    t.check(not slow.done(wd), "truncated stop: the stop comes while the URL is in flight")
    if not d1.stop(t, "truncated stop: first run"):
        return
    if not d2.start(t, "truncated stop: restart"):
        return
    t.check(_wait(lambda: slow.done(wd), 15, d2.proc),
            "truncated stop: the URL in flight at the stop is done after the restart (log %r)"
            % [l for l in wd.log_lines() or [] if "watch:" in l][-3:])
    t.check(_wait(lambda: not saved(slow.url), 5, d2.proc),
            "truncated stop: once it is done the state file no longer holds it")
    t.eq(wd.failed(), [], "truncated stop: nothing failed")
    t.eq(len(srv.log(slow.target(), "GET")), 2, "truncated stop: downloaded again once, after the restart")
    if d2.alive(t, "truncated stop: after the restart"):
        d2.stop(t, "truncated stop: second run")

def test_daemon_local_failure(t):
    """A failure of this machine (outgoing/ unusable) in the daemon is not an
    outcome: the list stays where it is (not moved to done/) and, with
    daemon.retry_kept = 0, waits for a restart, which does the URL once
    outgoing/ is fixed."""
    _two_daemons(t, lambda e: _local_failure(e.t, e.wd, e.cp, e.d1, e.d2, e.queue, e.src),
                 {"daemon.retry_kept": "0"})


def _local_failure(t, wd, cp, d1, d2, queue, src):
    if not d1.start(t, "local failure"):
        return
    x = cp.alias("photos/rocket_640x427.jpg", "lf")
    aside = wd.outgoing + ".real"
    os.rename(wd.outgoing, aside)   # as root a chmod stops nothing: a file instead
    open(wd.outgoing, "w").close()
    _drop_list(src, queue, "lf.urls", [x.url])
    t.check(_wait(lambda: any(u == x.url for _, u, _ in wd.failed()), 10, d1.proc),
            "local failure: the write error is recorded in failed.tsv")
    time.sleep(0.5)
    t.check(os.path.isfile(os.path.join(queue, "lf.urls"))
            and not os.path.exists(os.path.join(queue, "done", "lf.urls")),
            "local failure: the list is not moved to done/")
    t.check(any(x.url + ": its list entry is kept, the next start does it again" in l
                for l in wd.log_lines() or []),
            "local failure: with retry_kept = 0 the log says the next start does it again")
    if not d1.stop(t, "local failure: first run"):
        return
    os.unlink(wd.outgoing)
    os.rename(aside, wd.outgoing)
    if not d2.start(t, "local failure: restart"):
        return
    t.check(_wait(lambda: x.done(wd) and os.path.isfile(os.path.join(queue, "done", "lf.urls")), 10, d2.proc),
            "local failure: after outgoing/ is fixed and a restart, the URL is done and the list finished")
    if d2.alive(t, "local failure: after the restart"):
        d2.stop(t, "local failure: second run")


def test_daemon_config_and_log(t):
    """--check-config refuses a watch path whose directory is missing, as
    --daemon does; log = stderr uses the journal form only when stderr is
    the journal (JOURNAL_STREAM), else "[thread, time, level] message"."""
    with C.Workdir() as wd, Notify() as nt:
        missing = os.path.join(wd.root, "nodir", "later.txt")
        wd.write_config({"daemon.watch": "%s %s" % (wd.lists, missing)})
        rc, out, err = wd.run("--check-config")
        t.eq(rc, 2, "check-config: a watch path in a missing directory is an error (stdout %r)" % out)
        t.check("does not exist" in err and "configuration OK" not in out,
                "check-config: says what is wrong (%r)" % err)
        wd.write_config({"daemon.watch": wd.lists, "daemon.log": "stderr"})
        rc, out, err = wd.run("--check-config")
        t.eq(rc, 0, "check-config: a good watch passes (%r)" % err)
        d = Daemon(wd, nt)
        try:
            if not d.start(t, "log stderr"):
                return
            d.stop(t, "log stderr")
            lines = [l for l in d.stderr().splitlines() if "daemon ready" in l]
            t.check(lines and re.match(r"^\[main, \d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}, INFO\] daemon ready",
                                       lines[0]),
                    "log stderr: without JOURNAL_STREAM the file format (%r)" % lines[:1])
        finally:
            d.kill()


def _kept_lines(wd, url):
    return [l for l in wd.log_lines() or [] if url + ": its list entry is kept" in l]


def test_daemon_retry_kept(t):
    """daemon.retry_kept: an entry kept for a failure of this machine
    (outgoing/ unusable) is tried again by the running daemon, after
    retry_kept and then twice as long each time; once outgoing/ is fixed
    the same daemon, without a restart, makes the thumbnails, moves the
    directory list to done/ and commits the followed file past the line,
    so a restart does neither URL again.  A reload's retry_kept applies to
    the entries kept after it."""
    _two_daemons(t, lambda e: _retry_kept(e.t, e.wd, e.cp, e.srv, e.nt, e.d1, e.d2, e.queue, e.follow,
                                          e.src),
                 {"daemon.retry_kept": "0.3"})


def _retry_kept(t, wd, cp, srv, nt, d1, d2, queue, follow, src):
    if not d1.start(t, "retry kept"):
        return
    x, y = cp.alias("photos/rocket_640x427.jpg", "rk1"), cp.alias("photos/iguana_100x68.jpg", "rk2")
    aside = wd.outgoing + ".real"
    os.rename(wd.outgoing, aside)   # as root a chmod stops nothing: a file instead
    open(wd.outgoing, "w").close()
    _drop_list(src, queue, "rk.urls", [x.url])
    _append(follow, y.url)
    t.check(_wait(lambda: wd.failures_for(x.url) and wd.failures_for(y.url), 10, d1.proc),
            "retry kept: the write errors are recorded in failed.tsv")
    t.check(_wait(lambda: any(l.endswith("tried again in 0.3 s") for l in _kept_lines(wd, x.url)), 5, d1.proc),
            "retry kept: the log says when the entry is tried again (%r)" % _kept_lines(wd, x.url))
    # tried again while outgoing/ is still a file: kept again, for twice as long
    t.check(_wait(lambda: any(l.endswith("tried again in 0.6 s") for l in _kept_lines(wd, x.url))
                  and any(l.endswith("tried again in 0.6 s") for l in _kept_lines(wd, y.url)), 5, d1.proc),
            "retry kept: tried again, failed again, kept for twice as long (%r)" % _kept_lines(wd, x.url))
    t.check(any("trying a kept entry again: " + x.url in l for l in wd.log_lines() or []),
            "retry kept: the log says a kept entry is tried again")
    # each try failed, but only the first try's failure has a line: a
    # host down for days would otherwise add up to 24 lines a day per URL
    t.eq((len(wd.failures_for(x.url)), len(wd.failures_for(y.url))), (1, 1),
         "retry kept: one failed.tsv line per kept URL, however many tries failed")
    t.check(any(x.url in l and "(tried again; not recorded again)" in l for l in wd.log_lines() or []),
            "retry kept: the log has the retry's failure")
    t.check(os.path.isfile(os.path.join(queue, "rk.urls"))
            and not os.path.exists(os.path.join(queue, "done", "rk.urls")),
            "retry kept: while it fails the list is not moved to done/")
    os.unlink(wd.outgoing)
    os.rename(aside, wd.outgoing)
    t.check(_wait(lambda: x.done(wd) and y.done(wd) and os.path.isfile(os.path.join(queue, "done", "rk.urls")),
                  15, d1.proc),
            "retry kept: once outgoing/ is fixed the running daemon makes both URLs' thumbnails "
            "and moves the list to done/, without a restart")
    x.check(t, wd, "retry kept: the directory list's URL:")
    y.check(t, wd, "retry kept: the followed file's URL:")
    if not d1.alive(t, "retry kept: after the retries") or not d1.stop(t, "retry kept: first run"):
        return
    gets = {u.url: len(srv.log(u.target(), "GET")) for u in (x, y)}
    mark = len(wd.log_lines() or [])
    if not d2.start(t, "retry kept: restart"):
        return
    # a reload's retry_kept: for the entries kept from then on
    wd.write_config(_daemon_config(queue, follow, {"daemon.retry_kept": "0.7"}))
    if not _sighup(t, d2, nt, "retry kept: reload"):
        return
    os.rename(wd.outgoing, aside)
    open(wd.outgoing, "w").close()
    z = cp.alias("edge/webp_lossy.webp", "rk3")
    _append(follow, z.url)
    t.check(_wait(lambda: any(l.endswith("tried again in 0.7 s") for l in _kept_lines(wd, z.url)), 10, d2.proc),
            "retry kept: after a reload the entry is kept for the new retry_kept (%r)" % _kept_lines(wd, z.url))
    os.unlink(wd.outgoing)
    os.rename(aside, wd.outgoing)
    t.check(_wait(lambda: z.done(wd), 10, d2.proc), "retry kept: ... and done once outgoing/ is fixed")
    after = (wd.log_lines() or [])[mark:]
    t.eq([l for l in after if x.url in l or y.url in l], [],
         "retry kept: after the restart neither retried URL is read again (offsets committed)")
    t.eq({u.url: len(srv.log(u.target(), "GET")) for u in (x, y)}, gets,
         "retry kept: after the restart neither retried URL is downloaded again")
    if d2.alive(t, "retry kept: after the restart"):
        d2.stop(t, "retry kept: second run")


def _hand_off(cdir, src, incoming, path, name):
    """Copy a corpus image to the staging directory, then rename it into incoming/ as name."""
    p = os.path.join(src, name)
    shutil.copyfile(os.path.join(cdir, path), p)
    os.rename(p, os.path.join(incoming, name))
    return os.path.join(incoming, name)


def test_daemon_handoff_local_failure(t):
    """A hand-off image whose thumbnails cannot be written because of this
    machine (outgoing/ unusable) is not deleted: it stays in incoming/, is
    tried again after daemon.retry_kept (doubling), and once outgoing/ is
    fixed the running daemon makes its thumbnails and deletes it."""
    _two_daemons(t, lambda e: _handoff_local(e.t, e.wd, e.cp, e.d1, e.src), {"daemon.retry_kept": "0.3"})


def _handoff_local(t, wd, cp, d1, src):
    if not d1.start(t, "hand-off local failure"):
        return
    fmt, w, h = cp._dims("photos/rocket_640x427.jpg")
    x = Item(None, "hl", fmt, w, h)
    aside = wd.outgoing + ".real"
    os.rename(wd.outgoing, aside)   # as root a chmod stops nothing: a file instead
    open(wd.outgoing, "w").close()
    path = _hand_off(cp.cdir, src, wd.incoming, "photos/rocket_640x427.jpg", "hl.jpg")

    def recorded():             # thumbd spells the path from the config: etc/../incoming/hl.jpg
        return [u for _, u, _ in wd.failed() if u.endswith("/incoming/hl.jpg")]

    def kept(delay):
        return any(l.endswith("/incoming/hl.jpg: the image is kept, tried again in %s s" % delay)
                   for l in wd.log_lines() or [])
    t.check(_wait(lambda: recorded() and kept("0.3"), 10, d1.proc),
            "hand-off local failure: recorded in failed.tsv, the log says it is tried again in 0.3 s")
    t.check(_wait(lambda: kept("0.6"), 5, d1.proc),
            "hand-off local failure: tried again, failed again, kept for twice as long")
    t.check(os.path.isfile(path), "hand-off local failure: the image is still in incoming/")
    os.unlink(wd.outgoing)
    os.rename(aside, wd.outgoing)
    t.check(_wait(lambda: x.done(wd) and not os.path.exists(path), 15, d1.proc),
            "hand-off local failure: once outgoing/ is fixed the running daemon makes its thumbnails "
            "and deletes it, without a restart")
    x.check(t, wd, "hand-off local failure:")
    t.eq(len(recorded()), 1, "hand-off local failure: one failed.tsv line, however many tries")
    if d1.alive(t, "hand-off local failure: after the retries"):
        d1.stop(t, "hand-off local failure")


class _Inotify:
    """A minimal inotify(7) reader through ctypes (the standard library has
    none): to act at the moment thumbd's worker has read a file."""
    IN_CLOSE_NOWRITE = 0x10

    def __init__(self, path, mask):
        import ctypes
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0 or self._libc.inotify_add_watch(self.fd, os.fsencode(path), mask) < 0:
            raise OSError(ctypes.get_errno(), "inotify")

    def wait_name(self, name, timeout):
        """True once an event for name arrives within timeout s."""
        import select
        import struct
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not select.select([self.fd], [], [], max(0, end - time.monotonic()))[0]:
                continue
            buf = os.read(self.fd, 65536)
            while buf:
                _, _, _, n = struct.unpack_from("iIII", buf)
                if buf[16:16 + n].rstrip(b"\0") == os.fsencode(name):
                    return True
                buf = buf[16 + n:]
        return False

    def close(self):
        os.close(self.fd)


def test_daemon_handoff_same_name(t):
    """A hand-off image moved in under the name of one being resized is not
    deleted by that job (it deletes only the file it was handed) and is made
    once that one has ended; one moved in right after the previous one of the
    same name was deleted is taken too, round after round: incoming/ ends
    empty, nothing waits there for a restart."""
    _two_daemons(t, lambda e: _handoff_same_name(e.t, e.wd, e.cp, e.d1, e.src))


def _handoff_same_name(t, wd, cp, d1, src):
    if not d1.start(t, "hand-off same name"):
        return
    fmt, w, h = cp._dims("photos/rocket_640x427.jpg")
    b = Item(None, "x", fmt, w, h)
    ino = _Inotify(wd.incoming, _Inotify.IN_CLOSE_NOWRITE)
    try:
        # A, a large picture (its decode takes a while), then B under its
        # name the moment the worker has read A
        _hand_off(cp.cdir, src, wd.incoming, "edge/jpeg_huge_9643x10328.jpg", "x.jpg")
        t.check(ino.wait_name("x.jpg", 10), "hand-off same name: the worker read the first x.jpg")
        shutil.copyfile(os.path.join(cp.cdir, "photos/rocket_640x427.jpg"), os.path.join(src, "x.jpg"))
        os.rename(os.path.join(src, "x.jpg"), os.path.join(wd.incoming, "x.jpg"))
    finally:
        ino.close()

    def resized():
        return [l for l in wd.log_lines() or [] if "resized " in l and l.split("resized ")[1].split(" ")[0]
                .endswith("/incoming/x.jpg")]
    t.check(_wait(lambda: len(resized()) == 2 and not wd.incoming_files(), 10, d1.proc),
            "hand-off same name: both x.jpg are resized and incoming/ ends empty (log %r, incoming %r)"
            % (resized(), wd.incoming_files()))
    b.check(t, wd, "hand-off same name: the second x.jpg's thumbnails:")

    # the fast re-arrival: the next one comes the moment the last one is gone
    stuck = None
    for i in range(150):
        path = _hand_off(cp.cdir, src, wd.incoming, "photos/hopper_128x128.jpg", "y.jpg")
        if not _wait(lambda: not os.path.exists(path), 5, d1.proc, step=0.001):
            stuck = i
            break
    t.eq(stuck, None, "hand-off same name: every y.jpg moved in right after the last one was deleted is taken "
         "(the round where one stayed in incoming/)")
    if d1.alive(t, "hand-off same name: at the end"):
        d1.stop(t, "hand-off same name")


def test_daemon_done_names(t):
    """A list whose name is in done/ 1001 times already (batch.urls and
    batch.urls.1 ... .1000) still moves to done/, under a free name."""
    _two_daemons(t, lambda e: _done_names(e.t, e.wd, e.cp, e.d1, e.queue, e.src))


def _done_names(t, wd, cp, d1, queue, src):
    done = os.path.join(queue, "done")
    os.makedirs(done)
    taken = ["batch.urls"] + ["batch.urls.%d" % i for i in range(1, 1001)]
    for n in taken:
        open(os.path.join(done, n), "w").close()
    if not d1.start(t, "done names"):
        return
    x = cp.alias("photos/hopper_128x128.jpg", "dn")
    _drop_list(src, queue, "batch.urls", [x.url])

    def moved():
        new = sorted(set(os.listdir(done)) - set(taken))
        return new if new and not os.path.exists(os.path.join(queue, "batch.urls")) else None
    new = _wait(moved, 10, d1.proc)
    # any free N is right; the search finds the lowest above a taken one
    t.check(x.done(wd) and new == ["batch.urls.1001"],
            "done names: the list is done and moved to done/ as batch.urls.1001 (%r; log %r)"
            % (new, [l for l in wd.log_lines() or [] if "watch:" in l][-3:]))
    if new:
        with open(os.path.join(done, new[0])) as f:
            t.eq(f.read(), x.url + "\n", "done names: %s is the list" % new[0])
    t.eq(sum(os.path.getsize(os.path.join(done, n)) for n in taken), 0,
         "done names: the lists in done/ before are untouched")
    if d1.alive(t, "done names: at the end"):
        d1.stop(t, "done names")


def test_daemon_list_appended(t):
    """A list written in place in the watched directory by two appends (two
    close-writes), its first URL slow to answer: the second part is read
    too, and the list moves to done/ only once both lines have ended."""
    _two_daemons(t, lambda e: _list_appended(e.t, e.wd, e.cp, e.srv, e.d1, e.queue))


def _list_appended(t, wd, cp, srv, d1, queue):
    if not d1.start(t, "list appended"):
        return
    a = cp.alias("photos/rocket_640x427.jpg", "app1", delay=2)
    b = cp.alias("photos/hopper_128x128.jpg", "app2")
    lst = os.path.join(queue, "a.urls")
    _append(lst, a.url)
    # its download started: the list was read to its end, its entry is out
    t.check(_wait(lambda: srv.log(a.target(), "GET"), 5, d1.proc),
            "list appended: the first line's slow download started")
    _append(lst, b.url)
    done = os.path.join(queue, "done", "a.urls")
    t.check(_wait(lambda: os.path.isfile(done), 10, d1.proc),
            "list appended: the list moves to done/ within 10 s")
    t.check(a.done(wd) and b.done(wd),
            "list appended: both lines are done when the list moves (first %s, second %s; log %r)"
            % (a.done(wd), b.done(wd), [l for l in wd.log_lines() or [] if "watch:" in l][-4:]))
    t.eq(wd.failed(), [], "list appended: nothing failed")
    if d1.alive(t, "list appended: at the end"):
        d1.stop(t, "list appended")


def test_daemon_follow_rewritten(t):
    """A followed file rewritten in place is read again from the start, not
    on from the old offset: overwritten by a longer batch ("cmd > file":
    truncate, then write) or without truncation while followed, and
    rewritten to the same length (same inode, same size) while no daemon
    runs, which only the fingerprint of the bytes before the saved offset
    can tell."""
    _two_daemons(t, lambda e: _follow_rewritten(e.t, e.wd, e.cp, e.d1, e.d2, e.follow))


def _follow_rewritten(t, wd, cp, d1, d2, follow):
    photo = "photos/rocket_640x427.jpg"
    first = cp.alias(photo, "ow0")
    with open(follow, "w") as f:
        f.write(first.url + "\n")
    if not d1.start(t, "follow rewritten"):
        return

    def watch_log():
        return [l for l in wd.log_lines() or [] if "watch:" in l][-4:]

    t.check(_wait(lambda: first.done(wd), 10, d1.proc), "follow rewritten: the first line is done")
    for how, mode, stems in (("overwritten (truncated, then a longer batch in one write)", "w", ("ow1", "ow2", "ow3")),
                             ("rewritten in place, longer, without truncation", "r+", ("ow4", "ow5", "ow6", "ow7"))):
        batch = [cp.alias(photo, s) for s in stems]
        with open(follow, mode) as f:
            f.write("".join(x.url + "\n" for x in batch))
        t.check(_wait(lambda: all(x.done(wd) for x in batch), 10, d1.proc),
                "follow rewritten: every line of a followed file %s is done (%r; log %r)"
                % (how, [x.stem for x in batch if not x.done(wd)], watch_log()))
    t.eq(wd.failed(), [], "follow rewritten: nothing failed (no line read from its middle)")
    if not d1.stop(t, "follow rewritten: first run"):
        return

    # same inode, same size, other URLs: the saved offset is at the end of
    # the old text, a line end of the new one too
    before = os.stat(follow)
    batch = [cp.alias(photo, s) for s in ("rw4", "rw5", "rw6", "rw7")]
    with open(follow, "r+") as f:
        f.write("".join(x.url + "\n" for x in batch))
    now = os.stat(follow)
    t.check((now.st_ino, now.st_size) == (before.st_ino, before.st_size),
            "follow rewritten: rewritten while stopped to the same inode and size")
    if not d2.start(t, "follow rewritten: restart"):
        return
    t.check(_wait(lambda: all(x.done(wd) for x in batch), 10, d2.proc),
            "follow rewritten: after a restart every line of the file rewritten while stopped is done "
            "(%r; log %r)" % ([x.stem for x in batch if not x.done(wd)], watch_log()))
    t.eq(wd.failed(), [], "follow rewritten: nothing failed after the restart")
    if d2.alive(t, "follow rewritten: at the end"):
        d2.stop(t, "follow rewritten: second run")
