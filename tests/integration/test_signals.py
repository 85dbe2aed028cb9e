"""SIGINT/SIGTERM during a run: stop starting work, abandon what was in
flight without recording it (it has no outcome yet), leave no partial
files, exit 1 within seconds with a summary; the next run finishes."""

import os
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
        p = subprocess.Popen([C.thumbd_path(), "-c", wd.config, lst], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=wd.cwd)
        time.sleep(1.0)
        t0 = time.monotonic()
        p.send_signal(sig)
        try:
            out, err = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            t.fail("%s: thumbd did not exit within 10 s" % what)
            return
        took = time.monotonic() - t0
        out = out.decode()
        t.eq(p.returncode, 1, "%s: exit status 1 (stderr %r)" % (what, err[-300:]))
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
