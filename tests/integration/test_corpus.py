"""The whole corpus in one run: every good image gives three correct
thumbnails, every broken or unsupported one exactly one failed.tsv line with
the right reason, and nothing is left behind."""

import os

import common as C

# path -> (kind, expected): kind "prefix" (reason starts with one of the
# strings), "contains" or "exact".
EXPECTED_FAIL = {
    "broken/truncated_half.jpg": ("prefix", ["truncated JPEG"]),
    "broken/truncated_in_header.jpg": ("prefix", ["truncated JPEG", "corrupt JPEG"]),
    "broken/truncated_half.png": ("prefix", ["truncated PNG"]),
    "broken/truncated_half.webp": ("prefix", ["truncated WebP"]),
    "broken/html_named_as.jpg": ("prefix", ["not an image"]),
    "broken/zero_bytes.jpg": ("contains", "empty"),
    "broken/random_bytes.jpg": ("prefix", ["not an image"]),
    "broken/bad_crc_idat.png": ("prefix", ["corrupt PNG"]),
    "broken/bomb_50000x50000.png": ("exact", "too large: 50000x50000 > max_pixels"),
    "edge/unsupported_animated.gif": ("exact", "unsupported format: GIF"),
    "edge/unsupported_photo.tiff": ("exact", "unsupported format: TIFF"),
    "edge/jpeg_12bit_149x227.jpg": ("prefix", ["unsupported JPEG"]),
}


def reason_ok(kind, exp, reason):
    if kind == "prefix":
        return any(reason.startswith(p) for p in exp)
    if kind == "contains":
        return exp in reason
    return reason == exp


def test_corpus(t):
    cdir = C.corpus(t)
    if cdir is None:
        return
    rows = C.manifest(cdir)
    t.check(len(rows) >= 70, "MANIFEST.tsv lists the corpus (%d rows)" % len(rows))
    good, bad = [], []
    for r in rows:
        if not t.check(os.path.isfile(os.path.join(cdir, r["path"])), "corpus file %s exists" % r["path"]):
            continue
        if r["path"] in EXPECTED_FAIL:
            bad.append(r)
        elif r["format"] in C.EXT and "x" in r["width_x_height"]:
            good.append(r)
        else:
            t.fail("no expectation for manifest row %s (format %s)" % (r["path"], r["format"]))
    t.eq(len(bad), len(EXPECTED_FAIL), "every expected failure is in the manifest")

    with C.serve(cdir) as srv, C.Workdir() as wd:
        urls = {r["path"]: srv.url(r["path"]) for r in rows}
        rc, out, err = wd.run_urls([urls[r["path"]] for r in rows], timeout=120)
        t.eq(rc, 1, "exit status 1 when some images failed (stderr: %s)" % err[-1500:])
        C.stdout_summary(t, out, "corpus run", urls=len(rows), done=len(good), failed=len(bad),
                         thumbs=3 * len(good))

        failed = wd.failed()
        by_url = {}
        for _, u, reason in failed:
            by_url.setdefault(u, []).append(reason)

        expected_files = []
        for r in good:
            stem = os.path.splitext(os.path.basename(r["path"]))[0]
            W, H = C.displayed_size(r)
            fmt = r["format"]
            expected_files += C.thumb_names(stem, fmt)
            t.eq(by_url.get(urls[r["path"]], []), [], "%s: no failure recorded" % r["path"])
            C.check_thumbs(t, wd, stem, fmt, W, H, what=r["path"])

        for r in bad:
            kind, exp = EXPECTED_FAIL[r["path"]]
            reasons = by_url.get(urls[r["path"]], [])
            if t.eq(len(reasons), 1, "%s: exactly one failed.tsv line" % r["path"]):
                t.check(reason_ok(kind, exp, reasons[0]),
                        "%s: reason %r should %s %r" % (r["path"], reasons[0],
                                                        {"prefix": "start with", "contains": "contain",
                                                         "exact": "be"}[kind], exp))

        unknown = [u for u in by_url if u not in urls.values()]
        t.eq(unknown, [], "failed.tsv names only URLs from the list")
        C.check_failed_format(t, wd, "corpus run")
        fmt_of = {r["path"]: C.EXT.get(r["format"], "x") for r in rows}
        lost = [p for p, u in urls.items() if u not in by_url and not os.path.exists(
            os.path.join(wd.outgoing, "%s_32.%s" % (os.path.splitext(os.path.basename(p))[0], fmt_of[p])))]
        t.eq(lost, [], "every URL accounted for (thumbnails or a failed.tsv line)")
        t.eq(wd.incoming_files(), [], "incoming/ is empty afterwards (no files, no .part)")
        t.eq(wd.stray_outgoing(expected_files), [],
             "outgoing/ holds only the expected thumbnails (and .thumbd* dotfiles)")
        t.eq(wd.base_strays(), [], "nothing written outside incoming/, outgoing/, logs/")
        get_count = len([1 for m, p in srv.requests() if m == "GET"])
        t.check(get_count >= len(rows), "server saw a GET for every URL (%d GETs, %d URLs)" % (get_count, len(rows)))
