"""
Helpers for the fault, crash and TLS tests: a socket whose accept queue is
full (connects never complete), a test CA and server certificate made with
the openssl CLI, running thumbd under a file-size limit, reading the
summary line's notes, and the outcome of one URL.
"""

import calendar
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

import common as C

NAMES_FILE = ".thumbd-names"


class Blackhole:
    """A listening socket with backlog 0 whose queue is filled by our own
    connections: a further connect gets no SYN-ACK and never completes."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.fillers = []
        for _ in range(3):
            c = socket.socket()
            c.setblocking(False)
            try:
                c.connect(("127.0.0.1", self.port))
            except (BlockingIOError, OSError):
                pass
            self.fillers.append(c)
        time.sleep(0.1)

    @property
    def hostport(self):
        return "127.0.0.1:%d" % self.port

    def works(self, secs=1.0):
        """True when a fresh connect indeed does not complete within secs."""
        c = socket.socket()
        c.settimeout(secs)
        try:
            c.connect(("127.0.0.1", self.port))
            return False
        except socket.timeout:
            return True
        except OSError:
            return False
        finally:
            c.close()

    def close(self):
        for c in self.fillers:
            c.close()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# -- TLS -----------------------------------------------------------------------

def make_certs(d, ip="127.0.0.1"):
    """A CA and a server certificate for IP (subjectAltName IP:ip) signed by it,
    made with the openssl CLI in d.  -> {"ca", "cert", "key"} or raises
    RuntimeError saying what failed."""
    if shutil.which("openssl") is None:
        raise RuntimeError("the openssl command is not installed (Debian package openssl)")
    p = lambda n: os.path.join(d, n)  # noqa: E731
    with open(p("server.ext"), "w") as f:
        f.write("subjectAltName=IP:%s\nbasicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n" % ip)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    steps = [
        ["openssl", "req", "-x509"] + ec + ["-keyout", p("ca.key"), "-out", p("ca.pem"), "-days", "2",
         "-subj", "/CN=thumbd test CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["openssl", "req"] + ec + ["-keyout", p("server.key"), "-out", p("server.csr"),
                                   "-subj", "/CN=%s" % ip],
        ["openssl", "x509", "-req", "-in", p("server.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"),
         "-CAcreateserial", "-out", p("server.pem"), "-days", "2", "-extfile", p("server.ext")],
    ]
    for cmd in steps:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=d)
        if r.returncode != 0:
            raise RuntimeError("%s failed: %s" % (" ".join(cmd[:3]), r.stderr.decode(errors="replace")[-500:]))
    return {"ca": p("ca.pem"), "cert": p("server.pem"), "key": p("server.key")}


def server_context(certs):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs["cert"], certs["key"])
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


# -- running thumbd --------------------------------------------------------------

def popen(wd, *args):
    return subprocess.Popen([C.thumbd_path(), "-c", wd.config] + list(args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=wd.cwd)


def run_limited(wd, args, fsize, timeout=60):
    """thumbd under RLIMIT_FSIZE = fsize bytes (thumbd ignores SIGXFSZ, so a
    write past it fails with EFBIG: the disk-full stand-in).  -> (rc, out, err)"""
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)     # thumbd must ignore it itself
    p = subprocess.Popen([C.thumbd_path(), "-c", wd.config] + list(args), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=wd.cwd, preexec_fn=limit)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise RuntimeError("thumbd under RLIMIT_FSIZE did not finish within %d s" % timeout)
    err = err.decode("utf-8", "replace")
    if sanitizer_report(err, p.returncode):
        raise RuntimeError("sanitizer report from thumbd under RLIMIT_FSIZE:\n%s" % err[-4000:])
    return p.returncode, out.decode("utf-8", "replace"), err


def sanitizer_report(err, rc=None):
    """True when stderr (or the exit status 86 of run.sh's sanitizer options) shows a sanitizer report."""
    if isinstance(err, bytes):
        err = err.decode("utf-8", "replace")
    return "Sanitizer" in err or "runtime error:" in err or rc == 86


# -- reading results -------------------------------------------------------------

def notes(out):
    """{"already done": A, "failed before": B, "duplicates skipped": C} of the
    summary line (see README "Summary"); None when there is no summary line."""
    lines = [l for l in out.splitlines() if l.startswith("thumbd: ")]
    if not lines or not C.SUMMARY.match(lines[-1]):
        return None
    return C.summary_notes(lines[-1])


def summary_counts(out):
    lines = [l for l in out.splitlines() if l.startswith("thumbd: ")]
    m = C.SUMMARY.match(lines[-1]) if lines else None
    if not m:
        return None
    return {"urls": int(m.group(1)), "done": int(m.group(3)), "failed": int(m.group(4)),
            "thumbs": int(m.group(5)), "interrupted": "(interrupted)" in lines[-1]}


def iso_to_epoch(s):
    """failed.tsv time -> epoch seconds (fraction kept when present), or None."""
    m = re.match(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)([.,]\d+)?Z$", s)
    if not m:
        return None
    tup = tuple(int(x) for x in m.groups()[:6])
    frac = float(m.group(7).replace(",", ".")) if m.group(7) else 0.0
    return calendar.timegm(tup + (0, 0, 0)) + frac


def thumb_paths(wd, stem, fmt, sizes=C.DEFAULT_SIZES):
    return [os.path.join(wd.outgoing, n) for n in C.thumb_names(stem, fmt, sizes)]


def complete_thumbs(wd, stem, fmt, W, H, sizes=C.DEFAULT_SIZES):
    """None when every thumbnail of stem exists, is whole and has the right
    format and size; else a string saying what is wrong."""
    import imginfo
    for w, p in zip(sizes, thumb_paths(wd, stem, fmt, sizes)):
        if not os.path.isfile(p):
            return "%s missing" % os.path.basename(p)
        with open(p, "rb") as f:
            data = f.read()
        try:
            got = imginfo.info(data)
        except ValueError as e:
            return "%s unreadable: %s" % (os.path.basename(p), e)
        exp = (fmt, w, C.expected_height(W, H, w))
        if got != exp:
            return "%s is %r, expected %r" % (os.path.basename(p), got, exp)
        bad = imginfo.complete(data)
        if bad is not None:
            return "%s incomplete: %s" % (os.path.basename(p), bad)
    return None


def any_thumbs(wd, stem):
    return [f for f in wd.outgoing_files() if re.match(re.escape(stem) + r"_\d+\.(jpg|png|webp)$", f)]


def registry(wd):
    """[(stem, url)] from incoming/.thumbd-names; lines without a tab as (line, None)."""
    p = os.path.join(wd.incoming, NAMES_FILE)
    if not os.path.exists(p):
        return []
    out = []
    with open(p, encoding="utf-8", errors="replace") as f:
        for l in f:
            l = l.rstrip("\n")
            if "\t" in l:
                s, u = l.split("\t", 1)
                out.append((s, u))
            else:
                out.append((l, None))
    return out


def leftovers(wd):
    """Files that must not exist after a run: anything in incoming/ but the
    .thumbd-* state files, anything in outgoing/ that is hidden, any *.part or
    *.tmp anywhere in the work directory."""
    bad = ["incoming/" + f for f in wd.incoming_files()]
    bad += ["outgoing/" + f for f in wd.outgoing_files() if f.startswith(".")]
    for d, _, files in os.walk(wd.root):
        for f in files:
            if f.endswith(".part") or f.endswith(".tmp"):
                bad.append(os.path.relpath(os.path.join(d, f), wd.root))
    return sorted(set(bad))


def web_root():
    return tempfile.mkdtemp(prefix="thumbd-it-www-")
