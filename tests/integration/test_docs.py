"""The docs describe the program as it is: every config key of the
program's own table is in config/thumbd.ini, the README and thumbd.ini(5);
every option of --help is in thumbd(1); both man pages render."""

import os
import re
import shutil
import subprocess

import common as C


def _keys():
    src = open(os.path.join(C.REPO, "src", "config.c")).read()
    return re.findall(r'\{ "(\w+)", "(\w+)", T_', src)


def test_config_keys_documented(t):
    keys = _keys()
    t.check(len(keys) >= 20, "config.c's key table found (%d keys)" % len(keys))
    ini = open(os.path.join(C.REPO, "config", "thumbd.ini")).read()
    readme = open(os.path.join(C.REPO, "README.md")).read()
    man5 = open(os.path.join(C.REPO, "docs", "thumbd.ini.5")).read()
    for sec, key in keys:
        t.check(re.search(r"^%s\s*=" % key, ini, re.M) and "[%s]" % sec in ini,
                "config/thumbd.ini has [%s] %s" % (sec, key))
        t.check("`%s.%s`" % (sec, key) in readme, "README's config table has %s.%s" % (sec, key))
        t.check(re.search(r"^\.(?:B|BR) .*\b%s\b" % key, man5, re.M) and "[%s]" % sec in man5,
                "thumbd.ini(5) has [%s] %s" % (sec, key))


def test_options_documented(t):
    rc, out, err = C.run_thumbd(["--help"])
    t.eq(rc, 0, "--help exits 0")
    opts = sorted(set(re.findall(r"(--[a-z][a-z-]+)", out)))
    t.check(len(opts) >= 6, "--help lists the options (%r)" % opts)
    man1 = open(os.path.join(C.REPO, "docs", "thumbd.1")).read().replace("\\-", "-")
    readme = open(os.path.join(C.REPO, "README.md")).read()
    for o in opts:
        t.check(o in man1, "thumbd(1) documents %s" % o)
        t.check(o in readme, "README documents %s" % o)


def test_man_pages_render(t):
    man = shutil.which("man")
    if not t.check(man is not None, "man is installed (man-db, from make deps)"):
        return
    for page, want in (("thumbd.1", "--retry-failed"), ("thumbd.ini.5", "host_max_failures")):
        p = subprocess.run([man, "-l", os.path.join(C.REPO, "docs", page)], capture_output=True,
                           env=dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="0", PAGER="cat"),
                           timeout=30)
        text = re.sub(r".\x08", "", p.stdout.decode("utf-8", "replace"))
        t.eq(p.returncode, 0, "man -l %s exits 0 (%s)" % (page, p.stderr.decode()[-200:]))
        t.check("NAME" in text and want in text.replace("\u2010", "-"),
                "man -l %s renders its sections (%r...)" % (page, text[:80]))
        t.eq(p.stderr.decode().strip(), "", "man -l %s: no warnings" % page)
