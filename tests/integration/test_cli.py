"""Command line and configuration: --help, --version, usage errors,
--check-config, config errors with file:line, and exit statuses 0 / 1 / 2."""

import os
import re
import subprocess

import common as C

GOOD = "photos/hopper_128x128.jpg"
GOOD2 = "photos/iguana_100x68.jpg"


def test_help_and_version(t):
    rc, out, err = C.run_thumbd(["--help"], timeout=20)
    t.eq(rc, 0, "--help: exit status 0")
    both = out + err
    t.check("--check-config" in both, "--help mentions --check-config")
    t.check("--files" in both, "--help mentions --files")
    t.check(out.strip() != "", "--help writes its text to stdout")
    rc, out, err = C.run_thumbd(["--version"], timeout=20)
    t.eq(rc, 0, "--version: exit status 0")
    t.check(re.search(r"\d+\.\d+", out + err) is not None, "--version prints a version number (%r)" % (out + err)[:200])
    for lib in ("libcurl/", "libjpeg", "libpng/", "libwebp/", "lcms2/"):
        t.check(re.search(re.escape(lib) + r"\S*\d+\.\d+", out) is not None,
                "--version names %s and its version (%r)" % (lib, out[:400]))


def test_stdout_full(t):
    """Standard output that cannot be written (/dev/full) is an error, said
    on stderr, not silence: exit status 1 where it would have been 0; the
    thumbnails are made all the same."""
    with open("/dev/full", "wb") as full:
        p = subprocess.run([C.thumbd_path(), "--version"], stdout=full, stderr=subprocess.PIPE, timeout=20)
    err = p.stderr.decode("utf-8", "replace")
    t.eq(p.returncode, 1, "--version > /dev/full: exit status 1")
    t.check("standard output" in err and "No space" in err,
            "--version > /dev/full: stderr says why (%r)" % err[:300])
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir() as wd:
        lst = wd.write_list([srv.url(GOOD)])
        with open("/dev/full", "wb") as full:
            p = subprocess.run([C.thumbd_path(), "-c", wd.config, lst], cwd=wd.cwd, stdout=full,
                               stderr=subprocess.PIPE, timeout=60)
        err = p.stderr.decode("utf-8", "replace")
        t.eq(p.returncode, 1, "a run > /dev/full: exit status 1 (stderr %r)" % err[-300:])
        t.check("cannot write to standard output" in err, "a run > /dev/full: stderr says so (%r)" % err[-300:])
        C.check_thumbs(t, wd, "hopper_128x128", "JPEG", 128, 128, what="a run > /dev/full")
        t.eq(wd.failed_lines(), [], "a run > /dev/full: nothing in failed.tsv")


def _nothing_started(t, wd, srv, what):
    t.eq(srv.requests(), [], "%s: nothing downloaded" % what)
    t.eq(wd.outgoing_files(), [], "%s: outgoing/ untouched" % what)
    t.eq(wd.incoming_files(), [], "%s: incoming/ untouched" % what)
    t.eq(wd.failed_lines(), [], "%s: no failed.tsv lines" % what)


def test_usage_errors(t):
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir() as wd:
        lst = wd.write_list([srv.url(GOOD)])
        rc, out, err = wd.run("--no-such-option", lst, timeout=20)
        t.eq(rc, 2, "unknown option: exit status 2")
        t.check("--no-such-option" in err, "unknown option: stderr names it (%r)" % err[:300])
        _nothing_started(t, wd, srv, "unknown option")
        rc, out, err = wd.run(timeout=20)
        t.eq(rc, 2, "no LIST given: exit status 2")
        t.check("no URL list given" in err and "thumbd --help" in err,
                "no LIST given: says so and points at --help (%r)" % err[:400])
        t.check(len(err.splitlines()) <= 8, "no LIST given: the synopsis, not the whole help (%d lines)"
                % len(err.splitlines()))
        # no config file to be found either: still a usage error about the arguments
        env = dict(os.environ)
        env.pop("THUMBD_CONFIG", None)
        rc, out, err = C.run_thumbd([], timeout=20, cwd=wd.root, env=env)
        t.eq(rc, 2, "bare thumbd: exit status 2")
        t.check(err.startswith("thumbd: no URL list given"),
                "bare thumbd: says no URL list given, whether a config exists or not (%r)" % err[:300])
        rc, out, err = wd.run("--daemon", lst, timeout=20)
        t.eq(rc, 2, "--daemon with a list: exit status 2")
        t.check("--daemon takes its work from [daemon] watch" in err, "--daemon with a list: says why (%r)" % err[:300])
        missing = os.path.join(wd.root, "no-such-config.ini")
        rc, out, err = C.run_thumbd(["-c", missing, lst], timeout=20, cwd=wd.cwd)
        t.eq(rc, 2, "-c nonexistent file: exit status 2")
        t.check(missing in err or "no-such-config.ini" in err, "-c nonexistent: stderr names the file (%r)" % err[:300])
        rc, out, err = wd.run("--set", "download.bogus_key=1", lst, timeout=20)
        t.eq(rc, 2, "--set unknown key: exit status 2")
        t.check("bogus_key" in err, "--set unknown key: stderr names the key (%r)" % err[:300])
        rc, out, err = wd.run("--set", "download.connections=abc", lst, timeout=20)
        t.eq(rc, 2, "--set download.connections=abc: exit status 2")
        t.check("connections" in err, "--set bad value: stderr names the key (%r)" % err[:300])
        rc, out, err = wd.run("--set", "nosuchsection.key=1", lst, timeout=20)
        t.eq(rc, 2, "--set unknown section: exit status 2")
        t.check("nosuchsection" in err, "--set unknown section: stderr names it (%r)" % err[:300])
        _nothing_started(t, wd, srv, "usage errors")


def test_check_config_ok(t):
    with C.Workdir({"download.max_bytes": "100K", "thumbnails.sizes": "16,48,300",
                    "thumbnails.format": "webp", "image.max_pixels": "1000"}) as wd:
        rc, out, err = wd.run("--check-config", timeout=20)
        t.eq(rc, 0, "--check-config on a valid file: exit status 0 (stderr %r)" % err[:300])
        t.check("configuration OK" in out + err, "--check-config prints 'configuration OK' (%r)" % (out + err)[:300])
        t.eq(wd.outgoing_files() + wd.incoming_files(), [], "--check-config starts nothing")
    shipped = os.path.join(C.REPO, "config", "thumbd.ini")
    rc, out, err = C.run_thumbd(["-c", shipped, "--check-config"], timeout=20)
    t.eq(rc, 0, "--check-config accepts the shipped config/thumbd.ini (stderr %r)" % err[:300])
    t.check("configuration OK" in out + err, "shipped config: 'configuration OK'")


HEAD = "[paths]\nincoming = ../incoming\noutgoing = ../outgoing\nlogs = ../logs\n"   # lines 1-4

# (name, text after HEAD, acceptable line numbers, word stderr must contain)
BAD_CONFIGS = [
    ("unknown key", "[download]\nbogus_key = 1\n", (6,), "bogus_key"),
    ("unknown section", "[bogus_section]\ncolour = red\n", (5, 6), "bogus_section"),
    ("connections = abc", "[download]\nconnections = abc\n", (6,), "connections"),
    ("connections = 0", "[download]\nconnections = 0\n", (6,), "connections"),
    ("connections = 1025", "[download]\nper_host = 2\nconnections = 1025\n", (7,), "connections"),
    ("format = gif", "[thumbnails]\nformat = gif\n", (6,), "format"),
    ("jpeg_quality = 101", "[thumbnails]\njpeg_quality = 101\n", (6,), "jpeg_quality"),
    ("sizes = 32,abc", "[thumbnails]\nsizes = 32,abc\n", (6,), "sizes"),
    ("max_bytes = 12X", "[download]\nmax_bytes = 12X\n", (6,), "max_bytes"),
    ("workers = -1", "[resize]\nworkers = -1\n", (6,), "workers"),
    ("a line without =", "[download]\nretries 1\nconnections = 8\n", (6,), "syntax error"),
]

# (name, whole file, acceptable line numbers, word stderr must contain)
BAD_FILES = [
    ("key before any section", "retries = 0\n" + HEAD, (1,), "retries"),
]


def test_config_errors(t):
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir() as wd:
        lst = wd.write_list([srv.url(GOOD)])
        for name, text, lines, word in [(n, HEAD + b, l, w) for n, b, l, w in BAD_CONFIGS] + BAD_FILES:
            wd.write_config(text=text)
            for mode in ("check", "run"):
                args = ["--check-config"] if mode == "check" else [lst]
                rc, out, err = wd.run(*args, timeout=20)
                what = "config %s (%s)" % (name, "--check-config" if mode == "check" else "run")
                t.eq(rc, 2, "%s: exit status 2" % what)
                locs = ["thumbd.ini:%d" % n for n in lines]
                t.check(any(re.search(re.escape(l) + r"(?!\d)", err) for l in locs),
                        "%s: stderr names %s (%r)" % (what, " or ".join(locs), err[:300]))
                t.check(word in err, "%s: stderr names %r" % (what, word))
        _nothing_started(t, wd, srv, "bad configs")


def test_exit_status(t):
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv:
        with C.Workdir() as wd:
            rc, out, err = wd.run_urls([srv.url(GOOD), srv.url(GOOD2)])
            t.eq(rc, 0, "all URLs succeeded: exit status 0 (stderr %r)" % err[-500:])
            t.eq(wd.failed_lines(), [], "all URLs succeeded: failed.tsv empty or absent")
            C.stdout_summary(t, out, "all succeeded")
        with C.Workdir() as wd:
            bad = srv.url("status/404")
            rc, out, err = wd.run_urls([srv.url(GOOD), bad, srv.url(GOOD2)])
            t.eq(rc, 1, "one URL failed: exit status 1")
            C.check_thumbs(t, wd, "hopper_128x128", "JPEG", 128, 128, what="others still completed")
            C.check_thumbs(t, wd, "iguana_100x68", "JPEG", 100, 68, what="others still completed")
            t.eq([u for _, u, _ in wd.failed()], [bad], "one URL failed: exactly its failed.tsv line")


def _sections():
    """The sections of config.c's key table, in its order."""
    src = open(os.path.join(C.REPO, "src", "config.c")).read()
    out = []
    for sec in re.findall(r'\{ "(\w+)", "\w+", T_', src):
        if sec not in out:
            out.append(sec)
    return out


def test_unknown_section_lists_all(t):
    secs = _sections()
    t.check("daemon" in secs and len(secs) >= 6, "config.c's sections found (%r)" % secs)
    with C.Workdir() as wd:
        wd.write_config(text=HEAD + "[deamon]\nlog = file\n")
        rc, out, err = wd.run("--check-config", timeout=20)
        t.eq(rc, 2, "unknown section: exit status 2")
        m = re.search(r"thumbd\.ini:5: unknown section \[deamon\] \(known: ([^)]*)\)", err)
        t.check(m is not None, "unknown section: file:line and the known ones (%r)" % err[:300])
        t.eq(m.group(1).split(", ") if m else None, secs, "unknown section: lists every section of the table")


def test_config_not_a_file(t):
    """-c DIR: an error naming DIR (exit 2), never a run on the defaults
    that writes into the current directory."""
    with C.Workdir() as wd:
        for args in (["--check-config"], ["--files", os.path.join(wd.root, "none.jpg")]):
            rc, out, err = C.run_thumbd(["-c", wd.etc] + args, timeout=20, cwd=wd.cwd)
            what = "-c DIR %s" % args[0]
            t.eq(rc, 2, "%s: exit status 2 (stderr %r)" % (what, err[:300]))
            t.check("configuration OK" not in out, "%s: not 'configuration OK'" % what)
            t.check(wd.etc + ": cannot read config file: Is a directory" in err,
                    "%s: stderr names the directory and why (%r)" % (what, err[:300]))
            t.eq(os.listdir(wd.cwd), [], "%s: nothing written in the current directory" % what)
            t.eq(wd.outgoing_files() + wd.incoming_files() + os.listdir(wd.logs), [],
                 "%s: nothing written beside the directory" % what)


def test_path_not_a_directory(t):
    """paths.* naming a regular file: exit 2 with one error naming it, before
    anything starts; not a lock warning first and a failure later."""
    with C.Workdir() as wd:
        plain = os.path.join(wd.cwd, "plain")
        with open(plain, "w") as f:
            f.write("not a directory\n")
        for key in ("incoming", "outgoing", "logs"):
            rc, out, err = wd.run("--set", "paths.%s=%s" % (key, plain), "--files",
                                  os.path.join(wd.root, "none.jpg"), timeout=20)
            t.eq(rc, 2, "paths.%s a file: exit status 2 (stderr %r)" % (key, err[:300]))
            t.eq(err.strip(), "thumbd: cannot use %s as a directory: Not a directory" % plain,
                 "paths.%s a file: one line naming it" % key)
        with open(plain) as f:
            t.eq(f.read(), "not a directory\n", "the file is left as it was")


def test_default_paths(t):
    """Without [paths], incoming/, outgoing/ and logs/ are ../incoming etc.
    from the config file's directory (as the README and thumbd.ini(5) say),
    whatever the current directory."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.Workdir() as wd:
        wd.write_config(text="[resize]\nworkers = 2\n")
        rc, out, err = wd.run("--files", os.path.join(cdir, GOOD), timeout=30)
        t.eq(rc, 0, "config without [paths]: exit status 0 (stderr %r)" % err[-300:])
        C.check_thumbs(t, wd, "hopper_128x128", "JPEG", 128, 128, what="config without [paths]")
        t.check(os.path.exists(os.path.join(wd.logs, "thumbd.log")), "config without [paths]: logs/thumbd.log beside etc/")
        t.eq(wd.base_strays(), [], "config without [paths]: nothing written elsewhere (cwd %s)" % wd.cwd)


def test_closed_std_fds(t):
    """Started with stdin, stdout and stderr closed (`<&- >&- 2>&-`, as some
    cron and init setups do): the files thumbd opens must not take numbers
    0-2, or the summary and stderr's messages land in them (failed.tsv,
    the log, the lock file)."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir() as wd:
        bad = srv.url("status/404/x.jpg")
        lst = wd.write_list([srv.url(GOOD), bad])
        p = subprocess.run(["sh", "-c", 'exec "$0" "$@" <&- >&- 2>&-', C.thumbd_path(), "-c", wd.config, lst],
                           cwd=wd.cwd, timeout=60)
        t.eq(p.returncode, 1, "std fds closed: exit status 1 (one URL failed)")
        C.check_thumbs(t, wd, "hopper_128x128", "JPEG", 128, 128, what="std fds closed")
        t.eq(wd.failed_lines()[1:], [], "std fds closed: failed.tsv holds the one record, no stray text")
        t.eq([u for _, u, _ in wd.failed()], [bad], "std fds closed: the failed URL's record")
        C.check_failed_format(t, wd, "std fds closed")
        lines = wd.log_lines() or []
        t.eq([l for l in lines if not C.LOG_LINE.match(l)][:3], [],
             "std fds closed: thumbd.log has only log lines")
        with open(os.path.join(wd.incoming, ".thumbd-lock")) as f:
            lock = f.read()
        t.check(re.fullmatch(r"\d+\n", lock) is not None, "std fds closed: .thumbd-lock holds a pid (%r)" % lock[:200])
