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


def _readme_defaults():
    """{"section.key": default cell} from the README's config table."""
    readme = open(os.path.join(C.REPO, "README.md")).read()
    return dict(re.findall(r"^\| `(\w+\.\w+)` \| ([^|]*?) \|", readme, re.M))


def _man5_entry(key):
    """The text of key's entry in thumbd.ini(5), up to the next one."""
    man5 = open(os.path.join(C.REPO, "docs", "thumbd.ini.5")).read()
    m = re.search(r"^\.(?:B|BR) %s\n(.*?)(?=^\.(?:TP|SH|PP))" % key, man5, re.M | re.S)
    return m.group(1).replace("\\-", "-") if m else ""


def _ini_value(key):
    ini = open(os.path.join(C.REPO, "config", "thumbd.ini")).read()
    m = re.search(r"^%s\s*=\s*([^;\s]*)" % key, ini, re.M)
    return m.group(1) if m else None


def test_defaults_agree(t):
    """The defaults the README, thumbd.ini(5) and config/thumbd.ini give are
    the program's: the paths (tested in test_cli.test_default_paths), the
    User-Agent actually sent, and no default daemon.watch."""
    rd = _readme_defaults()
    for key in ("incoming", "outgoing", "logs"):
        want = "../" + key
        t.eq(rd.get("paths." + key), "`%s`" % want, "README: paths.%s default" % key)
        t.check("(default %s)" % want in _man5_entry(key), "thumbd.ini(5): %s default %s" % (key, want))
        t.eq(_ini_value(key), want, "config/thumbd.ini: %s" % key)
    t.eq(rd.get("daemon.watch"), "(none)", "README: daemon.watch has no default")
    t.check("Default: none" in _man5_entry("watch"), "thumbd.ini(5): watch has no default")

    rc, out, err = C.run_thumbd(["--version"])
    m = re.match(r"thumbd (\S+)", out)
    if not t.check(m is not None, "--version: thumbd VERSION (%r)" % out[:100]):
        return
    ua = "thumbd/" + m.group(1)
    t.eq(rd.get("download.user_agent"), "`%s`" % ua, "README: download.user_agent default")
    t.check("(%s)" % ua in _man5_entry("user_agent"), "thumbd.ini(5): user_agent default %s (%r)"
            % (ua, _man5_entry("user_agent")))
    t.eq(_ini_value("user_agent"), ua, "config/thumbd.ini: user_agent")
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir() as wd:
        rc, out, err = wd.run_urls([srv.url("photos/hopper_128x128.jpg")])
        t.eq(rc, 0, "one URL with the default user_agent: exit status 0 (stderr %r)" % err[-300:])
        sent = [e["headers"].get("user-agent") for e in srv.log()]
        t.eq(sent, [ua], "User-Agent sent by default")


def test_incoming_names_documented(t):
    """thumbd's own files in incoming/ are .thumbd* dot-files (name.h's
    NAME_OWN_PREFIX); every incoming/.NAME the docs mention is one."""
    for doc in ("README.md", os.path.join("docs", "thumbd.1")):
        text = open(os.path.join(C.REPO, doc)).read().replace("\\-", "-").replace("\\fI", "").replace("\\fR", "")
        names = re.findall(r"incoming/(\.[^\s`),]*)", text)
        t.check(len(names) >= 3, "%s mentions thumbd's files in incoming/ (%r)" % (doc, names))
        for n in names:
            t.check(n.startswith(".thumbd"), "%s: incoming/%s is a .thumbd dot-file" % (doc, n))
