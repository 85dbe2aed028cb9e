"""kill -9 at random moments, then run again until thumbd finishes: every URL
ends with exactly one outcome (a complete set of thumbnails, or one
failed.tsv line), nothing partial survives, no URL is fetched again once
it has its outcome, and a last run makes no request at all.

The seed is printed; THUMBD_CRASH_SEED=N repeats a run."""

import os
import random
import re
import shutil
import signal
import time
import urllib.parse

import common as C
import faultkit as K
import httpd

GOOD = ["photos/hopper_128x128.jpg", "photos/iguana_100x68.jpg", "edge/webp_lossy.webp",
        "photos/frangipani_480x360.jpg", "edge/png_palette_8bit.png", "photos/flower2_300x225.webp",
        "photos/rocket_640x427.jpg", "edge/jpeg_exif_orientation_6.jpg", "photos/trail_camera_2048x1536.jpg",
        "photos/hubble_deep_field_1000x872.jpg", "edge/png_rgba_8bit.png", "photos/park_gps_640x480.jpg"]
N_GOOD, N_SLOW, N_404, N_503 = 240, 20, 25, 15
KILLS = 5

CFG = {"download.connections": "16", "download.per_host": "16", "download.retries": "2",
       "download.retry_delay": "0.1", "download.max_retry_wait": "1", "download.timeout": "10",
       "download.connect_timeout": "3", "download.host_max_failures": "0", "resize.workers": "2"}


def _plan(srv, cdir, rng):
    """[(url, kind, expected)]: kind good/404/503; expected = (stem, fmt, W, H) for good."""
    rows = {r["path"]: r for r in C.manifest(cdir)}
    plan = []
    for i in range(N_GOOD + N_SLOW):
        src = GOOD[i % len(GOOD)]
        W, H = C.displayed_size(rows[src])
        stem = "u%03d" % i
        enc = urllib.parse.quote(src, safe="")
        ext = os.path.splitext(src)[1]
        if i < N_GOOD:
            path = "alias/%s/%s%s" % (enc, stem, ext)
        else:
            path = "slowalias/%.1f/%s/%s%s" % (rng.uniform(0.5, 2.5), enc, stem, ext)
        plan.append((srv.url(path), "good", (stem, rows[src]["format"], W, H)))
    for i in range(N_404):
        plan.append((srv.url("alias/missing%%2Fnope.jpg/m%03d.jpg" % i), "404", None))
    for i in range(N_503):
        plan.append((srv.url("status/503?n=%d" % i), "503", None))
    rng.shuffle(plan)
    return plan


def _state(wd, plan):
    """(URLs with complete thumbnails, URLs with a failed.tsv line)."""
    failed = {u for _, u, _ in wd.failed()}
    done = {u for u, kind, exp in plan if kind == "good" and K.complete_thumbs(wd, *exp) is None}
    return done, failed


def test_kill9_resume(t):
    cdir = C.corpus(t)
    if cdir is None:
        return
    seed = int(os.environ.get("THUMBD_CRASH_SEED") or 20261123)
    print("   crash test seed %d (THUMBD_CRASH_SEED to repeat)" % seed, flush=True)
    rng = random.Random(seed)
    with C.serve(cdir) as srv, C.Workdir(CFG) as wd:
        plan = _plan(srv, cdir, rng)
        urls = [u for u, _, _ in plan]
        lst = wd.write_list(urls)
        path_of = {u: urllib.parse.urlsplit(u).path + ("?" + urllib.parse.urlsplit(u).query
                                                       if urllib.parse.urlsplit(u).query else "") for u in urls}
        refetched = []
        killed = 0
        t0 = time.monotonic()
        for k in range(KILLS + 1):
            done, failed = _state(wd, plan)
            settled = {path_of[u] for u in done | failed}
            n0 = len(srv.requests())
            p = K.popen(wd, lst)
            if k < KILLS:
                delay = rng.uniform(0.2, 1.5)
                try:
                    p.wait(delay)
                    finished = True
                except Exception:
                    finished = False
                if not finished:
                    p.send_signal(signal.SIGKILL)
                    killed += 1
                _, err = p.communicate()
                t.check(not K.sanitizer_report(err, p.returncode),
                        "crash: run %d: no sanitizer report (%r)" % (k + 1, err[-2000:]))
                print("   run %d: %s after %.2f s; %d done, %d failed before it" % (
                    k + 1, "killed" if not finished else "finished (rc %d)" % p.returncode,
                    delay, len(done), len(failed)), flush=True)
            else:
                try:
                    out, err = p.communicate(timeout=60)
                except Exception:
                    p.kill()
                    p.communicate()
                    t.fail("crash: the final run did not finish within 60 s")
                    return
                out = out.decode(errors="replace")
                t.check(not K.sanitizer_report(err, p.returncode),
                        "crash: final run: no sanitizer report (%r)" % err[-2000:])
                t.check(p.returncode in (0, 1), "crash: the final run exits normally (rc %d, stderr %r)"
                        % (p.returncode, err[-300:]))
                t.eq(p.returncode, 1, "crash: final run exit 1 (there are failed URLs)")
            again = [pth for m, pth in srv.requests()[n0:] if pth in settled]
            refetched += ["run %d: %s" % (k + 1, x) for x in again]
        t.check(killed >= 4, "crash: thumbd was killed at least 4 times (%d)" % killed)
        t.eq(refetched[:5], [], "crash: no URL with thumbnails or a failed.tsv line is fetched again "
             "(%d such requests)" % len(refetched))

        # every URL: exactly one outcome
        fails = {}
        for _, u, r in wd.failed():
            fails.setdefault(u, []).append(r)
        problems = []
        for u, kind, exp in plan:
            rs = fails.get(u, [])
            if kind == "good":
                bad = K.complete_thumbs(wd, *exp)
                if bad is not None or rs:
                    problems.append("%s: %s, failed %r" % (u, bad or "thumbnails ok", rs))
            else:
                if len(rs) != 1:
                    problems.append("%s: %d failed.tsv lines %r" % (u, len(rs), rs))
                elif kind == "404" and rs[0] != "HTTP 404":
                    problems.append("%s: reason %r" % (u, rs[0]))
                elif kind == "503" and not re.fullmatch(r"HTTP 503( \(after \d+ attempts\))?", rs[0]):
                    problems.append("%s: reason %r" % (u, rs[0]))
        t.eq(problems[:5], [], "crash: each of %d URLs has exactly its one outcome (%d wrong)"
             % (len(plan), len(problems)))
        t.eq(sorted(u for u in fails if u not in set(urls)), [], "crash: failed.tsv names only listed URLs")
        C.check_failed_format(t, wd, "crash")
        t.eq(K.leftovers(wd), [], "crash: no .part/.tmp files, incoming/ holds only .thumbd-* files")
        exp_names = {n for _, kind, exp in plan if kind == "good" for n in C.thumb_names(exp[0], exp[1])}
        t.eq(sorted(set(wd.outgoing_files()) - exp_names), [], "crash: outgoing/ holds only thumbnails")
        reg = K.registry(wd)
        t.eq([l for l, u in reg if u is None], [], "crash: every names registry line is stem<TAB>url")
        per_url = {}
        for s, u in reg:
            per_url.setdefault(u, []).append(s)
        t.eq(sorted(u for u, ss in per_url.items() if len(ss) > 1)[:5], [],
             "crash: the names registry has at most one line per URL")
        wrong = [(u, per_url.get(u)) for u, kind, exp in plan if kind == "good" and per_url.get(u) != [exp[0]]]
        t.eq(wrong[:5], [], "crash: every done URL is registered under its own stem")

        # one more run: nothing to do
        n0 = len(srv.requests())
        rc, out, err = wd.run(lst, timeout=60)
        t.eq(srv.requests()[n0:], [], "crash: the run after completion makes no request")
        nt = K.notes(out) or {}
        t.eq((nt.get("already done"), nt.get("failed before")), (N_GOOD + N_SLOW, N_404 + N_503),
             "crash: the last run reports every URL as already done or failed before (%r)" % out.strip())
        print("   crash test: %.1f s" % (time.monotonic() - t0), flush=True)
