"""Installing thumbd as a service: `make install DESTDIR=... PREFIX=/usr` puts
the binary, the config, the man pages, the systemd unit and the logrotate file
in place with every @PLACEHOLDER@ replaced; the unit passes `systemd-analyze
verify`, scores at most 2.0 in `systemd-analyze security --offline=yes`, and
agrees with the installed config about where state and logs live; the
logrotate file parses and rotates thumbd.log but never failed.tsv; a second
install keeps the admin's thumbd.ini; uninstall removes everything else;
`make && make install PREFIX=/usr` installs a binary whose default config is
the /etc one it installed.

Needs make, systemd-analyze (package systemd) and logrotate: a missing one is
a failed check.  Nothing runs as a service and nothing is written outside
temp directories (the install's intermediate files go to build/, as always)."""

import atexit
import os
import re
import shutil
import subprocess
import tempfile

import common as C

MAX_EXPOSURE = 2.0
PREFIX_FILES = {            # what `make install PREFIX=/usr` installs, relative to DESTDIR
    "bin": "usr/bin/thumbd",
    "ini": "etc/thumbd/thumbd.ini",
    "example": "etc/thumbd/thumbd.ini.example",
    "unit": "lib/systemd/system/thumbd.service",
    "logrotate": "etc/logrotate.d/thumbd",
    "man1": "usr/share/man/man1/thumbd.1",
    "man5": "usr/share/man/man5/thumbd.ini.5",
}
STATEDIR = "/var/lib/thumbd"
LOGDIR = "/var/log/thumbd"
SBIN_PATH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"

_installed = {}


def _tmpdir(prefix):
    d = tempfile.mkdtemp(prefix=prefix)
    if not os.environ.get("THUMBD_KEEP"):
        atexit.register(shutil.rmtree, d, True)
    return d


def _make(t, target, destdir):
    """make -C <repo> TARGET DESTDIR=destdir PREFIX=/usr, installing the binary under
    test; its output, or None when it failed."""
    make = shutil.which("make")
    if not t.check(make is not None, "make is installed (build-essential)"):
        return None
    # not the variables of an enclosing `make test` (SANITIZE=, jobserver): this
    # make only copies files, the binary is the one under test
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    p = subprocess.run([make, "-s", "-C", C.REPO, target, "DESTDIR=" + destdir, "PREFIX=/usr",
                        "THUMBD_BIN=" + C.thumbd_path()],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120, env=env)
    out = p.stdout.decode("utf-8", "replace")
    ok = t.eq(p.returncode, 0, "make %s DESTDIR=%s PREFIX=/usr exits 0 (%s)" % (target, destdir, out[-1500:]))
    return out if ok else None


def _install(t):
    """One install shared by the tests of this file: DESTDIR or None."""
    if "dest" not in _installed:
        dest = _tmpdir("thumbd-install-")
        _installed["dest"] = dest if _make(t, "install", dest) is not None else None
    return _installed["dest"]


def _path(dest, key):
    return os.path.join(dest, PREFIX_FILES[key])


def _read(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def _tool(t, name, package, path=None):
    p = shutil.which(name, path=path)
    t.check(p is not None, "%s is installed (package %s, from make deps)" % (name, package))
    return p


def _files(dest):
    return sorted(os.path.relpath(os.path.join(d, f), dest)
                  for d, _, fs in os.walk(dest) for f in fs)


def _unit_values(text):
    """{key: [values]} of the unit's assignments, comments dropped."""
    vals = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;[" or "=" not in line:
            continue
        k, v = line.split("=", 1)
        vals.setdefault(k.strip(), []).append(v.strip())
    return vals


def _ini_values(text):
    """{"section.key": value} of an ini file, inline ; comments dropped."""
    vals, sec = {}, ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in ";#":
            continue
        if line.startswith("["):
            sec = line.strip("[]")
            continue
        if "=" in line:
            k, v = line.split("=", 1)
            vals["%s.%s" % (sec, k.strip())] = re.split(r"\s;", v, 1)[0].strip()
    return vals


def test_install_layout(t):
    dest = _install(t)
    if dest is None:
        return
    for key, rel in sorted(PREFIX_FILES.items()):
        t.check(os.path.isfile(os.path.join(dest, rel)), "installed %s" % rel)
    t.check(os.access(_path(dest, "bin"), os.X_OK), "usr/bin/thumbd is executable")
    t.eq(C.sha256_file(_path(dest, "bin")), C.sha256_file(C.thumbd_path()),
         "usr/bin/thumbd is the binary under test (THUMBD_BIN)")
    for key, src in (("man1", "docs/thumbd.1"), ("man5", "docs/thumbd.ini.5")):
        if os.path.isfile(_path(dest, key)):
            t.eq(C.sha256_file(_path(dest, key)), C.sha256_file(os.path.join(C.REPO, src)),
                 "%s is a copy of %s" % (PREFIX_FILES[key], src))
    for key in ("unit", "logrotate", "ini"):
        if os.path.isfile(_path(dest, key)):
            left = re.findall(r"@[A-Z_]+@", _read(_path(dest, key)))
            t.eq(left, [], "%s: no @PLACEHOLDER@ left" % PREFIX_FILES[key])
    ini = _path(dest, "ini")
    if not os.path.isfile(ini):
        return
    vals = _ini_values(_read(ini))
    t.eq((vals.get("paths.incoming"), vals.get("paths.outgoing"), vals.get("paths.logs")),
         (STATEDIR + "/incoming", STATEDIR + "/outgoing", LOGDIR),
         "installed thumbd.ini: [paths] at the FHS places")
    if "daemon.watch" in vals:
        t.eq(vals["daemon.watch"], STATEDIR + "/lists", "installed thumbd.ini: [daemon] watch")
    rc, out, err = C.run_thumbd(["--check-config", "-c", ini], timeout=20)
    t.eq((rc, out.strip()), (0, "configuration OK"),
         "thumbd --check-config -c <installed thumbd.ini> (the unit's ExecStartPre) (%s)" % err[-300:])


def test_unit_matches_config(t):
    dest = _install(t)
    if dest is None or not t.check(os.path.isfile(_path(dest, "unit")), "unit installed"):
        return
    u = _unit_values(_read(_path(dest, "unit")))
    ini = "/etc/thumbd/thumbd.ini"
    t.eq(u.get("Type"), ["notify"], "Type=notify")
    t.eq(u.get("NotifyAccess"), ["main"], "NotifyAccess=main")
    t.eq(u.get("ExecStartPre"), ["/usr/bin/thumbd --check-config -c " + ini],
         "ExecStartPre checks the installed config with the installed binary")
    t.eq(u.get("ExecStart"), ["/usr/bin/thumbd --daemon -c " + ini], "ExecStart runs --daemon")
    t.eq(u.get("ExecReload"), ["/usr/bin/thumbd --check-config -c " + ini, "/bin/kill -HUP $MAINPID"],
         "ExecReload checks the config, then sends SIGHUP")
    t.check(u.get("WatchdogSec") and u.get("Restart") == ["on-failure"],
            "WatchdogSec= and Restart=on-failure (%r, %r)" % (u.get("WatchdogSec"), u.get("Restart")))
    # the directories systemd creates and makes writable are the ones the config names
    state = " ".join(u.get("StateDirectory", [])).split()
    logs = " ".join(u.get("LogsDirectory", [])).split()
    t.check("thumbd" in state, "StateDirectory= has thumbd (%r)" % state)
    t.eq(logs, ["thumbd"], "LogsDirectory=thumbd")
    vals = _ini_values(_read(_path(dest, "ini")))
    for key in ("paths.incoming", "paths.outgoing", "daemon.watch"):
        if key in vals:
            rel = os.path.relpath(vals[key], "/var/lib")
            t.check(rel in state, "%s = %s is a StateDirectory= (%r): created and writable"
                    % (key, vals[key], state))
    t.eq(vals.get("paths.logs"), "/var/log/" + (logs or ["?"])[0], "paths.logs is the LogsDirectory=")


def test_unit_verifies(t):
    dest = _install(t)
    sa = _tool(t, "systemd-analyze", "systemd")
    if dest is None or sa is None or not t.check(os.path.isfile(_path(dest, "unit")), "unit installed"):
        return
    # verify checks that every Exec*= binary exists in the real root, where
    # /usr/bin/thumbd is not: check a copy that runs the installed one instead.
    # MANPATH makes Documentation=man:... find the installed man pages.
    tmp = _tmpdir("thumbd-unit-")
    text = _read(_path(dest, "unit"))
    t.check("/usr/bin/thumbd " in text, "unit runs /usr/bin/thumbd")
    copy = os.path.join(tmp, "thumbd.service")
    with open(copy, "w") as f:
        f.write(text.replace("/usr/bin/thumbd ", _path(dest, "bin") + " "))
    env = dict(os.environ, MANPATH=os.path.join(dest, "usr/share/man"), SYSTEMD_PAGER="cat")
    p = subprocess.run([sa, "verify", copy], capture_output=True, env=env, timeout=60)
    out = (p.stdout + p.stderr).decode("utf-8", "replace").strip()
    t.eq(p.returncode, 0, "systemd-analyze verify exits 0 (%s)" % out[-1500:])
    # unknown keys and unparsable values are only warnings: there must be none
    t.eq(out, "", "systemd-analyze verify: no warnings")


def test_unit_security(t):
    dest = _install(t)
    sa = _tool(t, "systemd-analyze", "systemd")
    if dest is None or sa is None or not t.check(os.path.isfile(_path(dest, "unit")), "unit installed"):
        return
    p = subprocess.run([sa, "security", "--no-pager", "--offline=yes", _path(dest, "unit")],
                       capture_output=True, timeout=60,
                       env=dict(os.environ, SYSTEMD_PAGER="cat", SYSTEMD_COLORS="0"))
    out = p.stdout.decode("utf-8", "replace")
    m = re.search(r"Overall exposure level for thumbd\.service: (\d+(?:\.\d+)?)", out)
    if not t.check(m is not None, "systemd-analyze security --offline=yes prints the exposure "
                   "(exit %d: %s)" % (p.returncode, (out + p.stderr.decode())[-1500:])):
        return
    score = float(m.group(1))
    bad = [l.rstrip() for l in out.splitlines() if re.search(r"\s\d+\.\d+\s*$", l)]
    t.check(score <= MAX_EXPOSURE, "overall exposure %.1f <= %.1f; not passed:\n%s"
            % (score, MAX_EXPOSURE, "\n".join(bad)))
    print("   exposure %.1f" % score)


def test_logrotate(t):
    dest = _install(t)
    lr = _tool(t, "logrotate", "logrotate", path=SBIN_PATH)
    if dest is None or lr is None or not t.check(os.path.isfile(_path(dest, "logrotate")),
                                                 "logrotate file installed"):
        return
    tmp = _tmpdir("thumbd-logrotate-")
    state = os.path.join(tmp, "status")
    p = subprocess.run([lr, "-d", "-s", state, _path(dest, "logrotate")], capture_output=True, timeout=60)
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    t.eq(p.returncode, 0, "logrotate -d <installed file> exits 0 (%s)" % out[-1000:])
    errors = [l for l in out.splitlines() if l.startswith("error")]
    t.eq(errors, [], "logrotate -d: no errors")
    text = _read(_path(dest, "logrotate"))
    t.check(re.search(r"^%s/\*\.log \{" % re.escape(LOGDIR), text, re.M) is not None,
            "rotates %s/*.log" % LOGDIR)
    t.check("copytruncate" not in re.sub(r"#.*", "", text), "no copytruncate: thumbd reopens on SIGUSR1")
    t.check(re.search(r"systemctl .*kill .*USR1 thumbd\.service", text) is not None,
            "postrotate sends SIGUSR1 to thumbd.service")

    # rotate for real, on a copy pointing at a temp logs dir and at a unit that
    # does not exist (a running thumbd on this machine is left alone)
    logs = os.path.join(tmp, "logs")
    os.makedirs(logs)
    files = {"thumbd.log": "a line\n" * 10, "failed.tsv": "2026-11-23T16:40:07Z\thttp://x/y.jpg\tHTTP 404\n",
             "thumbd.prom": "thumbd_up 1\n"}
    for name, data in files.items():
        with open(os.path.join(logs, name), "w") as f:
            f.write(data)
    conf = os.path.join(tmp, "thumbd.conf")
    with open(conf, "w") as f:
        f.write(text.replace(LOGDIR + "/", logs + "/")
                .replace("thumbd.service", "thumbd-test-%d-absent.service" % os.getpid()))
    os.chmod(conf, 0o644)
    p = subprocess.run([lr, "-f", "-s", state, conf], capture_output=True, timeout=60)
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    t.eq(p.returncode, 0, "logrotate -f on a temp copy exits 0 (%s)" % out[-1000:])
    t.eq(sorted(os.listdir(logs)), ["failed.tsv", "thumbd.log.1", "thumbd.prom"],
         "thumbd.log renamed to thumbd.log.1 (delaycompress), not recreated (thumbd does it); "
         "failed.tsv and thumbd.prom untouched")
    for name, data in files.items():
        got = os.path.join(logs, name if name != "thumbd.log" else "thumbd.log.1")
        if os.path.isfile(got):
            t.eq(_read(got), data, "%s keeps its content" % os.path.basename(got))


def test_reinstall_and_uninstall(t):
    dest = _tmpdir("thumbd-uninstall-")
    if _make(t, "install", dest) is None:
        return
    installed = _files(dest)
    t.eq(installed, sorted(PREFIX_FILES.values()), "install adds exactly these files")
    ini = _path(dest, "ini")
    if not os.path.isfile(ini):
        return
    with open(ini, "a") as f:
        f.write("; edited by the admin\n")
    edited = _read(ini)
    _make(t, "install", dest)
    t.eq(_read(ini), edited, "a second install keeps the existing thumbd.ini")
    t.check(_read(_path(dest, "example")) != edited, "... and refreshes thumbd.ini.example")
    _make(t, "uninstall", dest)
    t.eq(_files(dest), [PREFIX_FILES["ini"]],
         "uninstall removes everything install added but the admin's thumbd.ini")


def test_install_after_plain_make(t):
    """The README's recipe, `make && sudo make install PREFIX=/usr`: the
    installed binary's default config is /etc/thumbd/thumbd.ini, where the
    install put it, not the /usr/local/etc of the plain build before it
    (SYSCONFDIR is compiled in)."""
    make = shutil.which("make")
    if not t.check(make is not None, "make is installed (build-essential)"):
        return
    tmp = _tmpdir("thumbd-prefix-")
    b, dest = os.path.join(tmp, "build"), os.path.join(tmp, "dest")
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "SANITIZE")}
    for args in (["-j%d" % (os.cpu_count() or 1)], ["install", "PREFIX=/usr", "DESTDIR=" + dest]):
        p = subprocess.run([make, "-s", "-C", C.REPO, "B=" + b] + args, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=600, env=env)
        if not t.eq(p.returncode, 0, "make %s exits 0 (%s)" % (" ".join(args), p.stdout.decode()[-1500:])):
            return
    p = subprocess.run([_path(dest, "bin"), "--help"], capture_output=True, timeout=20)
    out = p.stdout.decode("utf-8", "replace")
    t.check("/etc/thumbd/thumbd.ini" in out and "/usr/local/etc" not in out,
            "installed usr/bin/thumbd --help names /etc/thumbd/thumbd.ini as the default config (%r)"
            % out[out.find("--config"):][:200])
    p = subprocess.run([_path(dest, "bin"), "--check-config"], capture_output=True, timeout=20, cwd=tmp,
                       env={k: v for k, v in os.environ.items() if k != "THUMBD_CONFIG"})
    err = p.stderr.decode("utf-8", "replace")
    t.check("/usr/local/etc" not in err
            and (p.returncode == 0 or re.search(r"(?<!local)/etc/thumbd/thumbd\.ini", err) is not None),
            "installed usr/bin/thumbd without -c looks for /etc/thumbd/thumbd.ini (%r)" % err[-300:])
