"""Output names: collisions between different URLs with the same file name
(first in list order wins, across runs too), and hostile or odd names that
must stay inside outgoing/; the registry of names synced before outputs."""

import os
import re
import shutil
import tempfile
import urllib.parse

import common as C

HOPPER = "photos/hopper_128x128.jpg"      # 128x128 -> 200x200
IGUANA = "photos/iguana_100x68.jpg"       # 100x68  -> 200x136
SAFE = re.compile(r"^[A-Za-z0-9._-]+$")


def _same_root(cdir):
    root = tempfile.mkdtemp(prefix="thumbd-it-www-")
    for sub, src in (("a", HOPPER), ("b", IGUANA)):
        os.makedirs(os.path.join(root, sub))
        shutil.copyfile(os.path.join(cdir, src), os.path.join(root, sub, "same.jpg"))
    return root


def _owner_checks(t, wd, url_b, what):
    h = C.url_hash(url_b)
    C.check_thumbs(t, wd, "same", "JPEG", 128, 128, what="%s: a/same.jpg (first listed) as 'same'" % what)
    C.check_thumbs(t, wd, "same-" + h, "JPEG", 100, 68, what="%s: b/same.jpg as 'same-%s'" % (what, h))
    exp = C.thumb_names("same", "JPEG") + C.thumb_names("same-" + h, "JPEG")
    t.eq(sorted(wd.thumbs()), sorted(exp), "%s: exactly the two sets of thumbnails" % what)


def test_same_name_two_urls(t):
    cdir = C.corpus(t)
    if cdir is None:
        return
    root = _same_root(cdir)
    try:
        with C.serve(root) as srv, C.serve(root) as srv2, C.Workdir() as wd:
            # a is listed first but answers a second late (b comes from another
            # server, so nothing makes it wait for a): "first" is list order, not arrival.
            url_a = srv.url("slowhead/1/a/same.jpg")
            url_b = srv2.url("b/same.jpg")
            rc, out, err = wd.run_urls([url_a, url_b])
            t.eq(rc, 0, "same name: exit status 0 (stderr %r)" % err[-300:])
            _owner_checks(t, wd, url_b, "one run")
            # run again with only b in a fresh list, same outgoing/: b keeps its hashed name
            rc, out, err = wd.run(wd.write_list([url_b], "only-b.txt"))
            t.eq(rc, 0, "second run with only b: exit status 0")
            _owner_checks(t, wd, url_b, "second run with only b")
        with C.serve(root) as srv, C.Workdir() as wd:
            url_a, url_b = srv.url("a/same.jpg"), srv.url("b/same.jpg")
            rc1, _, _ = wd.run(wd.write_list([url_a], "only-a.txt"))
            rc2, _, err = wd.run(wd.write_list([url_b], "only-b.txt"))
            t.eq((rc1, rc2), (0, 0), "a then b in separate runs: exit status 0 both times")
            _owner_checks(t, wd, url_b, "a then b in separate runs")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_odd_names(t):
    cdir = C.corpus(t)
    if cdir is None:
        return
    escape_token = "zzthumbdescape%d" % os.getpid()
    with C.serve(cdir, any_file=os.path.join(cdir, HOPPER)) as srv, C.Workdir() as wd:
        known = {                                   # URL path -> expected stem (None: any safe stem)
            "any/caf%C3%A9.jpg": "caf__",
            "any/q.jpg?v=1": "q",
            "any/with%20space.jpg": "with_space",
            "any/x/..%2F..%2Fevil.jpg": None,
            "any/..%2F..%2F..%2F..%2F..%2F..%2F" + escape_token + ".jpg": None,
            "any/a%2Fb.jpg": None,
            "any/dir/": None,
            "any/" + "a" * 300 + ".jpg": "LONG",
            "any/noextension": "noextension",
        }
        urls = {srv.url(p): stem for p, stem in known.items()}
        rc, out, err = wd.run_urls(list(urls))
        t.eq(rc, 0, "odd names: exit status 0 (stderr %r; failed %r)" % (err[-300:], wd.failed()))
        names = wd.thumbs()
        stems = {}
        for n in names:
            m = re.match(r"^(.*)_(32|64|200)\.jpg$", n)
            if t.check(m is not None, "odd names: %r is <stem>_<width>.jpg" % n):
                stems.setdefault(m.group(1), []).append(int(m.group(2)))
        t.eq(len(names), 3 * len(urls), "odd names: three thumbnails per URL (%r)" % names)
        t.eq([n for n in wd.outgoing_files() if n.startswith(".") and not n.startswith(".thumbd")], [],
             "odd names: no hidden thumbnails (no dot-file stems)")
        unsafe = [n for n in wd.outgoing_files() if not SAFE.match(n)]
        t.eq(unsafe, [], "odd names: every output name is made of [A-Za-z0-9._-] only")
        for url, stem in urls.items():
            if stem == "LONG":
                longs = [s for s in stems if s.startswith("a" * 64)]
                if t.eq(len(longs), 1, "very long name: one stem of a's"):
                    t.check(len(longs[0].encode()) <= 100, "very long name: stem capped at 100 bytes (%d)" % len(longs[0]))
                    t.eq(sorted(stems[longs[0]]), [32, 64, 200], "very long name: three widths")
            elif stem is not None:
                t.eq(sorted(stems.get(stem, [])), [32, 64, 200], "%s -> stem %r" % (url, stem))
        t.check("" not in stems, "URL ending in '/' gets a non-empty stem")
        for s in stems:
            C.check_thumbs(t, wd, s, "JPEG", 128, 128, what="odd names")
        t.eq(wd.base_strays(), [], "odd names: nothing written next to the work directory")
        t.eq(wd.incoming_files(), [], "odd names: incoming/ empty")
        d, found = wd.outgoing, []
        for _ in range(12):
            for f in os.listdir(d) if os.access(d, os.R_OK) else []:
                if escape_token in f and d != wd.outgoing:
                    found.append(os.path.join(d, f))
            d = os.path.dirname(d)
        t.eq(found, [], "..%2F names: nothing written in any parent of outgoing/")


RTT = 0.1


def _registry_events(trace):
    """strace -f -y lines -> (claims, syncs, violations, outputs).  A claim is
    a write of a "stem<TAB>url" line to the registry; a sync counts from when
    its fdatasync returned and covers the claims written before it began; an
    output is a thumbnail temp file opened in outgoing/, which must find its
    stem among the synced claims."""
    claimed, synced, violations = [], set(), []
    pending, syncs, outputs = {}, 0, 0
    for line in trace:
        pid, _, rest = line.partition(" ")
        rest = rest.strip()
        m = re.match(r'<\.\.\. (\w+) resumed>.*= (-?\d+)', rest)
        if m:
            what = pending.pop(pid, None)
            if what and m.group(2) != "-1":
                if what[0] == "claim":
                    claimed.append(what[1])
                else:
                    synced.update(what[1])
            continue
        m = re.match(r'(write|fdatasync|openat)\((.*)', rest)
        if not m:
            continue
        call, args = m.groups()
        done = not rest.endswith("<unfinished ...>")
        if call == "write" and ".thumbd-names>" in args:
            s = re.search(r'"((?:[^"\\]|\\.)*?)\\t', args)
            if s:
                ev = ("claim", s.group(1))
                if done:
                    claimed.append(ev[1])
                else:
                    pending[pid] = ev
        elif call == "fdatasync" and ".thumbd-names>" in args:
            syncs += 1
            if done:
                if not re.search(r"= -1", rest):
                    synced.update(claimed)
            else:
                pending[pid] = ("sync", list(claimed))
        elif call == "openat" and "/outgoing/." in args and "O_CREAT" in args:
            p = re.search(r'"[^"]*/outgoing/\.([^"/]+)\.tmp"', args)
            s = p and re.match(r"(.*)_\d+\.[a-z]+$", p.group(1))
            if s:
                outputs += 1
                if s.group(1) not in synced:
                    violations.append(s.group(1))
    return claimed, syncs, violations, outputs


def test_registry_synced_before_outputs(t):
    """A URL's name claim reaches the disk (fdatasync of incoming/.thumbd-names)
    before any thumbnail of that name is written, or after a power cut another
    URL could take the name; and the syncs are batched, about one per round
    trip, since each stops the download loop for a disk write."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    n = 300
    # connections=32: the list is read a few URLs at a time as transfers end
    # (4 x connections ahead), so names are claimed all through the run
    with C.serve(cdir) as srv, C.Workdir({"download.connections": 32, "download.per_host_start": 32}) as wd:
        urls = [srv.url("slowalias/%g/photos%%2Fhopper_128x128.jpg/n%03d.jpg" % (RTT, i)) for i in range(n)]
        r = wd.run_traced(t, wd.write_list(urls), "write,fdatasync,openat")
        if r is None:
            return
        rc, err, tr, wall = r
        t.eq(rc, 0, "registry sync: exit status 0 (stderr %r; failed %r)" % (err[-300:], wd.failed()[:3]))
        t.eq(len(wd.thumbs()), 3 * n, "registry sync: three thumbnails per URL")
        with open(tr, encoding="utf-8", errors="replace") as f:
            claimed, syncs, violations, outputs = _registry_events(f)
        t.eq(len(claimed), n, "registry sync: one claim written per URL (seen in the trace)")
        t.eq(outputs, 3 * n, "registry sync: every thumbnail's temp file seen opened in the trace")
        t.eq(violations[:5], [], "registry sync: no thumbnail written before its name's claim was synced")
        bound = int(2 * wall / RTT) + 4
        t.check(1 <= syncs <= bound, "registry sync: %d fdatasyncs for %d URLs in %.1f s at %g s a request: "
                "at least one, at most about two per round trip (%d)" % (syncs, n, wall, RTT, bound))


def test_incoming_names_never_shared(t):
    """Two URLs never share a file in incoming/: .../x.jpg.part (stem x.jpg,
    extension part), .../x.jpg (stem x) and .../x (stem x-<hash>) once had
    one download's temp file be another's finished download, and stems
    spare-N were the names of the recycled spare files; each URL must come
    out with the thumbnails of its own image.  One worker behind a large
    first image keeps the downloads waiting in incoming/ while others
    arrive and finished ones are recycled."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    srcs = [("photos/rocket_640x427.jpg", "JPEG", 640, 427), ("photos/hopper_128x128.jpg", "JPEG", 128, 128),
            ("photos/iguana_100x68.jpg", "JPEG", 100, 68), ("photos/coffee_600x400.png", "PNG", 600, 400),
            ("photos/flower2_300x225.webp", "WEBP", 300, 225), ("photos/frangipani_480x360.jpg", "JPEG", 480, 360),
            ("photos/portrait_800x533.jpg", "JPEG", 800, 533)]
    conf = {"resize.workers": 1, "download.per_host_start": 4, "download.per_host": 4}
    with C.serve(cdir) as srv, C.Workdir(conf) as wd:
        def alias(src, name):
            return srv.url("alias/%s/%s" % (urllib.parse.quote(src, safe=""), name))
        cases = [(alias(srcs[0][0], "x.jpg.part"), "x.jpg", srcs[0]),
                 (alias(srcs[1][0], "x.jpg"), "x", srcs[1])]
        u = alias(srcs[2][0], "x")
        cases.append((u, "x-" + C.url_hash(u), srcs[2]))
        for i in range(24):
            cases.append((alias(srcs[i % len(srcs)][0], "spare-%d" % i), "spare-%d" % i, srcs[i % len(srcs)]))
        urls = [srv.url("photos/milky_way_4000x6000.jpg")] + [c[0] for c in cases]
        rc, out, err = wd.run_urls(urls, timeout=120)
        t.eq((rc, wd.failed()), (0, []), "shared names: exit status 0, nothing failed (stderr %r)" % err[-300:])
        for url, stem, (src, fmt, W, H) in cases:
            C.check_thumbs(t, wd, stem, fmt, W, H, what="shared names: %s (%s)" % (stem, src))
        t.eq(len(wd.thumbs()), 3 * len(urls), "shared names: three thumbnails per URL, no others")
        t.eq(wd.incoming_files(), [], "shared names: incoming/ empty afterwards")
