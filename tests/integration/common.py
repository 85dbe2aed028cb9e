"""
Shared helpers for thumbd's integration tests: the corpus, a throw-away work
directory with its own config file, running the binary, reading what it
left behind, and the loopback test server.

Layout of a Workdir (everything under one fresh temp directory, so a test can
also prove that nothing was written next to it):

    BASE/                      mkdtemp; must contain nothing but w/ afterwards
    BASE/w/etc/thumbd.ini      the config (paths relative to etc/, i.e. ../incoming)
    BASE/w/incoming/ outgoing/ logs/
    BASE/w/cwd/                thumbd's working directory; must stay empty
    BASE/w/lists/              URL lists written by the test

Set THUMBD_KEEP=1 to keep the temp directories for inspection.
"""

import csv
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))                 # tests/ for httpd
import httpd  # noqa: E402
import imginfo  # noqa: E402

EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
DEFAULT_SIZES = (32, 64, 200)
ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?$")
LOG_LINE = re.compile(r"^\[[^,\]]+, \d{4}-\d\d-\d\d \d\d:\d\d:\d\d[.,]\d{3}, "
                      r"(DEBUG|INFO|WARNING|ERROR)\] .+")

BASE_CONFIG = {
    "paths": {"incoming": "../incoming", "outgoing": "../outgoing", "logs": "../logs"},
    "resize": {"workers": "2"},
    # transient failures are retried (default 3 retries); keep the backoff short in tests
    "download": {"retry_delay": "0.05", "max_retry_wait": "2"},
}


# -- the corpus -------------------------------------------------------------

def corpus_dir():
    """Path of the test corpus or None (THUMBD_CORPUS, else ../shared/corpus)."""
    d = os.environ.get("THUMBD_CORPUS") or os.path.join(REPO, "..", "shared", "corpus")
    d = os.path.abspath(d)
    if os.path.isfile(os.path.join(d, "MANIFEST.tsv")):
        return d
    return None


def corpus(t):
    """The corpus directory; counts a failure and returns None when it is missing."""
    d = corpus_dir()
    t.check(d is not None, "test corpus found (THUMBD_CORPUS or ../shared/corpus with MANIFEST.tsv)")
    return d


def manifest(cdir):
    with open(os.path.join(cdir, "MANIFEST.tsv"), newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def displayed_size(row):
    """(W, H) as displayed: the note's "display(ed) WxH" if any, else stored
    dimensions swapped for EXIF orientation 5..8."""
    w, h = (int(x) for x in row["width_x_height"].split("x"))
    note = row.get("note", "")
    m = re.search(r"display(?:ed)?\s+(\d+)x(\d+)", note)
    if m:
        return int(m.group(1)), int(m.group(2))
    m = re.search(r"[Oo]rientation\s*=\s*(\d)", note)
    if m and int(m.group(1)) in (5, 6, 7, 8):
        return h, w
    return w, h


def expected_height(W, H, w):
    """round-half-up(H * w / W), at least 1, in exact integer arithmetic."""
    return max(1, (2 * H * w + W) // (2 * W))


def url_hash(url):
    return hashlib.sha256(url.encode()).hexdigest()[:8]


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# -- the binary -------------------------------------------------------------

def thumbd_path():
    p = os.environ.get("THUMBD")
    if not p:
        raise RuntimeError("THUMBD is not set (path of the binary under test)")
    p = os.path.abspath(p)
    if not (os.path.isfile(p) and os.access(p, os.X_OK)):
        raise RuntimeError("THUMBD=%s is not an executable file" % p)
    return p


def run_thumbd(args, stdin=None, timeout=60, cwd=None, prefix=(), env=None):
    """Run the binary, under prefix (e.g. strace and its options) if given;
    -> (rc, stdout, stderr).  Raises on timeout (the child is killed)."""
    cmd = list(prefix) + [thumbd_path()] + list(args)
    if isinstance(stdin, str):
        stdin = stdin.encode()
    try:
        p = subprocess.run(cmd, input=stdin if stdin is not None else b"",
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout, cwd=cwd, env=env)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError("thumbd did not finish within %d s: %s\nstderr: %s"
                           % (timeout, " ".join(cmd), (e.stderr or b"")[-2000:].decode("utf-8", "replace")))
    err = p.stderr.decode("utf-8", "replace")
    # a sanitizer build reports and may still exit 1 like a partial run:
    # any report fails the test that ran it
    if "Sanitizer" in err or "runtime error:" in err or p.returncode == 86:
        raise RuntimeError("sanitizer report from %s:\n%s" % (" ".join(cmd), err[-4000:]))
    return (p.returncode, p.stdout.decode("utf-8", "replace"), err)


# -- work directories --------------------------------------------------------

def render_config(sections):
    out = ["; written by tests/integration/common.py"]
    for sec, kv in sections.items():
        out.append("[%s]" % sec)
        for k, v in kv.items():
            out.append("%s = %s" % (k, v))
        out.append("")
    return "\n".join(out)


class Workdir:
    def __init__(self, overrides=None):
        self.base = tempfile.mkdtemp(prefix="thumbd-it-")
        self.root = os.path.join(self.base, "w")
        self.etc = os.path.join(self.root, "etc")
        self.config = os.path.join(self.etc, "thumbd.ini")
        self.incoming = os.path.join(self.root, "incoming")
        self.outgoing = os.path.join(self.root, "outgoing")
        self.logs = os.path.join(self.root, "logs")
        self.cwd = os.path.join(self.root, "cwd")
        self.lists = os.path.join(self.root, "lists")
        for d in (self.etc, self.incoming, self.outgoing, self.logs, self.cwd, self.lists):
            os.makedirs(d)
        self.write_config(overrides)

    def write_config(self, overrides=None, text=None):
        """overrides: {"section.key": value}, merged over BASE_CONFIG.  text: raw file."""
        if text is None:
            secs = {s: dict(kv) for s, kv in BASE_CONFIG.items()}
            for dotted, v in (overrides or {}).items():
                s, k = dotted.split(".", 1)
                secs.setdefault(s, {})[k] = v
            text = render_config(secs)
        with open(self.config, "w") as f:
            f.write(text)
        return self.config

    def run(self, *args, stdin=None, timeout=60, config=True, prefix=(), env=None):
        a = (["-c", self.config] if config else []) + list(args)
        self.last = run_thumbd(a, stdin=stdin, timeout=timeout, cwd=self.cwd, prefix=prefix, env=env)
        return self.last

    def run_traced(self, t, lst, calls, timeout=120):
        """Run on list file lst under strace -f -y (the system calls named in
        calls, with file names); -> (rc, stderr, trace path, wall seconds), or
        None (a failed check) when strace is missing."""
        strace = shutil.which("strace")
        if not t.check(strace is not None, "strace is installed (Debian package strace, part of make deps)"):
            return None
        tr = os.path.join(self.base, "strace.txt")
        # LeakSanitizer cannot run under ptrace; every other test checks for leaks
        env = dict(os.environ)
        env["ASAN_OPTIONS"] = ":".join(x for x in (env.get("ASAN_OPTIONS"), "detect_leaks=0") if x)
        t0 = time.monotonic()
        rc, _, err = self.run(lst, timeout=timeout, env=env,
                              prefix=[strace, "-f", "-y", "-qq", "-s", "300", "-e", "trace=" + calls, "-o", tr])
        return rc, err, tr, time.monotonic() - t0

    def write_list(self, lines, name="list.txt", eol="\n"):
        p = os.path.join(self.lists, name)
        with open(p, "w", newline="") as f:
            f.write("".join(l + eol for l in lines))
        return p

    def run_urls(self, urls, *args, timeout=60):
        return self.run(*args, self.write_list(urls), timeout=timeout)

    # what it left behind

    def failed_lines(self):
        p = os.path.join(self.logs, "failed.tsv")
        if not os.path.exists(p):
            return []
        with open(p, encoding="utf-8", errors="replace") as f:
            return [l.rstrip("\n") for l in f if l.strip()]

    def failed(self):
        """[(time, url, reason)] from logs/failed.tsv ("" for missing fields)."""
        out = []
        for l in self.failed_lines():
            parts = l.split("\t", 2)
            parts += [""] * (3 - len(parts))
            out.append(tuple(parts))
        return out

    def failures_for(self, url):
        return [r for (_, u, r) in self.failed() if u == url]

    def outgoing_files(self):
        return sorted(os.listdir(self.outgoing))

    def thumbs(self):
        """Outgoing names that are not hidden."""
        return [f for f in self.outgoing_files() if not f.startswith(".")]

    def stray_outgoing(self, expected):
        """Outgoing entries that are neither expected nor a .thumbd* dotfile."""
        exp = set(expected)
        return [f for f in self.outgoing_files() if f not in exp and not f.startswith(".thumbd")]

    def incoming_files(self):
        """Everything in incoming/ but thumbd's own state (the .thumbd-names registry,
        the lock); download temp files and spares (.thumbd-part.*, .thumbd-spare-*) count."""
        return [f for f in tree(self.incoming)
                if not f.startswith(".thumbd-") or f.startswith((".thumbd-part.", ".thumbd-spare-"))]

    def log_lines(self):
        p = os.path.join(self.logs, "thumbd.log")
        if not os.path.exists(p):
            return None
        with open(p, encoding="utf-8", errors="replace") as f:
            return [l.rstrip("\n") for l in f]

    def base_strays(self):
        """Anything in BASE besides w/, and anything in w/cwd (stray writes)."""
        s = [os.path.join(self.base, x) for x in os.listdir(self.base) if x != "w"]
        s += [os.path.join(self.cwd, x) for x in os.listdir(self.cwd)]
        s += [os.path.join(self.root, x) for x in os.listdir(self.root)
              if x not in ("etc", "incoming", "outgoing", "logs", "cwd", "lists", "src")]
        return s

    def cleanup(self):
        if not os.environ.get("THUMBD_KEEP"):
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()


def tree(d):
    """All files and directories under d, as sorted relative paths."""
    out = []
    for dirpath, dirnames, filenames in os.walk(d):
        for n in dirnames + filenames:
            out.append(os.path.relpath(os.path.join(dirpath, n), d))
    return sorted(out)


# -- checks shared by several tests -----------------------------------------

def check_thumbs(t, wd, stem, fmt, W, H, sizes=DEFAULT_SIZES, what=None):
    """outgoing/<stem>_<w>.<ext> for each w: exists, real format fmt, w x round(H*w/W), whole."""
    what = what or stem
    ok = True
    for w in sizes:
        name = "%s_%d.%s" % (stem, w, EXT[fmt])
        p = os.path.join(wd.outgoing, name)
        if not t.check(os.path.isfile(p), "%s: %s exists" % (what, name)):
            ok = False
            continue
        with open(p, "rb") as f:
            data = f.read()
        try:
            got = imginfo.info(data)
        except ValueError as e:
            got = ("unreadable: %s" % e, 0, 0)
        exp = (fmt, w, expected_height(W, H, w))
        ok &= t.eq(got, exp, "%s: %s format and size (source %dx%d displayed)" % (what, name, W, H))
        ok &= t.eq(imginfo.complete(data), None, "%s: %s is a whole file" % (what, name))
    return ok


def thumb_names(stem, fmt, sizes=DEFAULT_SIZES):
    return ["%s_%d.%s" % (stem, w, EXT[fmt]) for w in sizes]


SUMMARY = re.compile(r"^thumbd: (\d+) (?:URLs?|files?)(?: \(([^)]*)\))?: "
                     r"(\d+) done, (\d+) failed; (\d+) thumbnails?[, ]")


def summary_notes(line):
    """The parenthesised part of a summary line as {"already done": A, "failed before": B,
    "duplicates skipped": C}; missing items are 0."""
    m = SUMMARY.match(line)
    notes = {"already done": 0, "failed before": 0, "duplicates skipped": 0}
    if m and m.group(2):
        for item in m.group(2).split(", "):
            n, _, what = item.partition(" ")
            what = "duplicates skipped" if what.startswith("duplicate") else what
            notes[what] = int(n)
    return notes


def stdout_summary(t, out, what, urls=None, done=None, failed=None, thumbs=None):
    """stdout is one summary line; when given, its counts must match."""
    lines = out.splitlines()
    t.check(len(lines) == 1 and lines[0].strip() != "",
            "%s: stdout (not a TTY) is exactly one summary line, got %r" % (what, out[-500:]))
    if urls is None and done is None and failed is None and thumbs is None:
        return
    m = SUMMARY.match(lines[0] if lines else "")
    if not t.check(m is not None, "%s: summary line format: %r" % (what, out[-300:])):
        return
    got = {"urls": int(m.group(1)), "done": int(m.group(3)), "failed": int(m.group(4)),
           "thumbs": int(m.group(5))}
    for k, v in (("urls", urls), ("done", done), ("failed", failed), ("thumbs", thumbs)):
        if v is not None:
            t.eq(got[k], v, "%s: summary %s count" % (what, k))


def check_failed_format(t, wd, what):
    bad = [l for l in wd.failed_lines()
           if len(l.split("\t")) != 3 or not ISO_TIME.match(l.split("\t")[0])
           or not l.split("\t")[1] or not l.split("\t")[2]]
    t.eq(bad, [], "%s: every failed.tsv line is <ISO 8601 time>\\t<url>\\t<reason>" % what)


# -- servers -----------------------------------------------------------------

def serve(root, any_file=None):
    """Context manager: loopback test server on a free port."""
    return httpd.start(root, 0, any_file)


def free_port():
    """A 127.0.0.1 port nobody listens on (bound then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
