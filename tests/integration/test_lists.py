"""URL lists (blank lines, comments, whitespace, CRLF, bad lines, several
lists, stdin, a missing list) and --files with local images."""

import os
import shutil
import subprocess
import time

import common as C

A = ("photos/hopper_128x128.jpg", "hopper_128x128", "JPEG", 128, 128)
B = ("photos/iguana_100x68.jpg", "iguana_100x68", "JPEG", 100, 68)
P = ("edge/png_palette_trns.png", "png_palette_trns", "PNG", 32, 32)
W = ("edge/webp_lossy.webp", "webp_lossy", "WEBP", 128, 128)


def _check(t, wd, items, what):
    for path, stem, fmt, w, h in items:
        C.check_thumbs(t, wd, stem, fmt, w, h, what="%s %s" % (what, path))


def test_messy_list(t):
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir() as wd:
        lines = [
            "",
            "# a comment line",
            "   ",
            "\t \t",
            "  \t" + srv.url(A[0]) + " \t ",
            "# http://127.0.0.1:1/commented-out.jpg",
            "  # an indented comment",
            srv.url(B[0]),
            "ftp://127.0.0.1/x.jpg",
            "hello",
            "\t" + srv.url(P[0]),
            "",
        ]
        lst = wd.write_list(lines, eol="\r\n")
        rc, out, err = wd.run(lst)
        t.eq(rc, 1, "messy list: exit status 1 (two bad lines)")
        _check(t, wd, [A, B, P], "messy list (CRLF, tabs, spaces)")
        expected = set(C.thumb_names(A[1], "JPEG") + C.thumb_names(B[1], "JPEG") + C.thumb_names(P[1], "PNG"))
        t.eq(sorted(wd.thumbs()), sorted(expected), "messy list: nothing but the three images' thumbnails")
        got = sorted((u, r) for _, u, r in wd.failed())
        t.eq(got, [("ftp://127.0.0.1/x.jpg", "not an http(s) URL"), ("hello", "not an http(s) URL")],
             "messy list: exactly the two bad lines in failed.tsv, trimmed, reason 'not an http(s) URL'")
        C.check_failed_format(t, wd, "messy list")
        paths = sorted(p for m, p in srv.requests() if m == "GET")
        t.eq(paths, sorted("/" + x[0] for x in (A, B, P)), "messy list: the server saw exactly the three URLs")


def test_several_lists_and_stdin(t):
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir() as wd:
        l1 = wd.write_list([srv.url(A[0])], "one.txt")
        l2 = wd.write_list([srv.url(B[0]), srv.url(P[0])], "two.txt")
        rc, out, err = wd.run(l1, l2)
        t.eq(rc, 0, "two LIST files: exit status 0 (stderr %r)" % err[-300:])
        _check(t, wd, [A, B, P], "two LIST files")
    with C.serve(cdir) as srv, C.Workdir() as wd:
        rc, out, err = wd.run("-", stdin="%s\n\n# c\n%s\n" % (srv.url(A[0]), srv.url(W[0])))
        t.eq(rc, 0, "'-' reads the list from stdin: exit status 0 (stderr %r)" % err[-300:])
        _check(t, wd, [A, W], "list on stdin")
    with C.serve(cdir) as srv, C.Workdir() as wd:
        l1 = wd.write_list([srv.url(A[0])], "one.txt")
        rc, out, err = wd.run(l1, "-", stdin=srv.url(B[0]) + "\n")
        t.eq(rc, 0, "a file and '-' together: exit status 0 (stderr %r)" % err[-300:])
        _check(t, wd, [A, B], "file + stdin")


def _run_stdin_fd(wd, fd):
    """thumbd -c CONFIG - with fd as its standard input -> (rc, out, err)."""
    p = subprocess.run([C.thumbd_path(), "-c", wd.config, "-"], stdin=fd, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, cwd=wd.cwd, timeout=60)
    return p.returncode, p.stdout.decode(), p.stderr.decode("utf-8", "replace")


def test_stdin_image_or_directory(t):
    """Standard input that is an image or a directory (`thumbd - < photo.jpg`)
    is a usage error like a named list of the kind: exit 2, the message on
    stderr naming standard input, nothing started.  A regular file that is a
    list is read whole (looking at it took none of it), and a pipe is read
    as before."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir() as wd:
        cases = [(os.path.join(cdir, A[0]), "standard input: an image (JPEG), not a URL list; "
                  "for local images: thumbd --files"),
                 (wd.lists, "standard input: cannot read URL list: Is a directory")]
        for path, says in cases:
            fd = os.open(path, os.O_RDONLY)
            try:
                rc, out, err = _run_stdin_fd(wd, fd)
            finally:
                os.close(fd)
            what = "stdin from %s" % os.path.basename(path)
            t.eq(rc, 2, "%s: exit status 2 (stdout %r)" % (what, out[-300:]))
            t.check(says in err, "%s: stderr says %r (%r)" % (what, says, err[-300:]))
            t.eq(out, "", "%s: no summary on stdout" % what)
            t.eq(wd.failed_lines(), [], "%s: nothing in failed.tsv" % what)
            t.eq(wd.log_lines(), None, "%s: nothing started (no thumbd.log)" % what)
        t.eq(srv.requests(), [], "stdin image/directory: no request")
        lst = wd.write_list([srv.url(A[0]), srv.url(B[0])])
        with open(lst, "rb") as f:
            rc, out, err = _run_stdin_fd(wd, f)
        t.eq(rc, 0, "stdin from a list file: exit status 0 (stderr %r)" % err[-300:])
        C.stdout_summary(t, out, "stdin from a list file", urls=2, done=2)
        _check(t, wd, [A, B], "stdin from a list file")


def _wait_thumbs(wd, n, deadline):
    while time.monotonic() < deadline and len(wd.thumbs()) < n:
        time.sleep(0.05)
    return len(wd.thumbs())


def _fed_end(t, wd, p, err, what):
    """After a run fed A, then B, through a pipe: killed if it is still
    there; else it exited 0 with both done."""
    if p.poll() is None:
        p.kill()
        p.communicate()
    err = err.decode("utf-8", "replace")
    t.eq(p.returncode, 0, "%s: exit status 0 once the writer closes it (stderr %r)" % (what, err[-300:]))
    t.check("Sanitizer" not in err and "runtime error" not in err, "%s: no sanitizer report" % what)
    _check(t, wd, [A, B], what)


def test_stdin_that_pauses(t):
    """A list on a pipe whose writer pauses (`generate | thumbd -`): the URLs
    already written are downloaded and resized while thumbd waits for more;
    the loop that reads the list drives the transfers too and used to stop
    in the read, so the first URL waited for the writer's next line."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir() as wd:
        p = subprocess.Popen([C.thumbd_path(), "-c", wd.config, "-"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=wd.cwd)
        err = b""
        try:
            p.stdin.write((srv.url(A[0]) + "\n").encode())
            p.stdin.flush()
            _wait_thumbs(wd, 3, time.monotonic() + 15)
            t.eq(sorted(wd.thumbs()), sorted("%s_%d.jpg" % (A[1], w) for w in (32, 64, 200)),
                 "pausing stdin: the first URL's thumbnails come before the writer's next line")
            t.eq(p.poll(), None, "pausing stdin: thumbd still waits for the rest of the list")
            _, err = p.communicate((srv.url(B[0]) + "\n").encode(), timeout=30)
        finally:
            _fed_end(t, wd, p, err, "pausing stdin")


def test_named_pipe_list(t):
    """A list that is a named pipe (mkfifo): thumbd does not open it to check
    it (a writer waiting for a reader would then write into a pipe nobody
    reads: lines lost, or SIGPIPE), opens it without waiting for a writer,
    and reads what comes while transfers go on; the writer's close ends it."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir() as wd:
        fifo = os.path.join(wd.root, "urls.fifo")
        os.mkfifo(fifo)
        p = subprocess.Popen([C.thumbd_path(), "-c", wd.config, fifo], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=wd.cwd)
        fd, err = None, b""
        try:
            deadline = time.monotonic() + 15
            while fd is None and time.monotonic() < deadline:
                try:    # ENXIO until a reader has it open
                    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                except OSError:
                    time.sleep(0.02)
            t.check(fd is not None, "named pipe: thumbd opens it for reading")
            if fd is not None:
                os.set_blocking(fd, True)
                os.write(fd, (srv.url(A[0]) + "\n").encode())
                t.eq(_wait_thumbs(wd, 3, deadline), 3,
                     "named pipe: the first URL is done while the writer holds it open")
                os.write(fd, (srv.url(B[0]) + "\n").encode())
                os.close(fd)
                fd = None
            _, err = p.communicate(timeout=30)
        finally:
            if fd is not None:
                os.close(fd)
            _fed_end(t, wd, p, err, "named pipe")


def test_missing_list(t):
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir() as wd:
        l1 = wd.write_list([srv.url(A[0])], "one.txt")
        missing = os.path.join(wd.lists, "does-not-exist.txt")
        rc, out, err = wd.run(l1, missing)
        t.check(rc in (1, 2), "missing list file: exit status 2 (or 1 with a failure), got %r" % rc)
        failed_text = "\n".join(wd.failed_lines())
        t.check("does-not-exist.txt" in err or (rc == 1 and "does-not-exist.txt" in failed_text),
                "missing list file: the error names it (stderr %r)" % err[:300])
        if rc == 2:
            t.eq(srv.requests(), [], "missing list, exit 2: nothing was started")
        elif rc == 1:
            _check(t, wd, [A], "missing list, exit 1: the other list still processed")


def test_files_mode(t):
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.Workdir() as wd:
        src = os.path.join(wd.root, "src")
        os.makedirs(src)
        items = [A, P, W]
        paths = []
        for x in items:
            dst = os.path.join(src, os.path.basename(x[0]))
            shutil.copyfile(os.path.join(cdir, x[0]), dst)
            paths.append(dst)
        broken = os.path.join(src, "truncated_half.png")
        shutil.copyfile(os.path.join(cdir, "broken/truncated_half.png"), broken)
        before = {p: C.sha256_file(p) for p in paths + [broken]}

        rc, out, err = wd.run("--files", *paths)
        t.eq(rc, 0, "--files with good images: exit status 0 (stderr %r)" % err[-300:])
        _check(t, wd, items, "--files")

        rc, out, err = wd.run("--files", paths[0], broken)
        t.eq(rc, 1, "--files with a broken image: exit status 1")
        got = [(u, r) for _, u, r in wd.failed()]
        t.eq(len(got), 1, "--files: one failed.tsv line for the broken file (%r)" % got)
        if got:
            t.eq(got[0][0], broken, "--files: failed.tsv names the file path as given")
            t.check(got[0][1].startswith("truncated PNG"), "--files: reason %r starts 'truncated PNG'" % got[0][1])
        C.check_failed_format(t, wd, "--files")
        after = {p: (C.sha256_file(p) if os.path.exists(p) else None) for p in before}
        t.eq(after, before, "--files: input files still there and unchanged")
        t.eq(wd.incoming_files(), [], "--files: nothing left in incoming/")
        t.eq(wd.base_strays(), [], "--files: nothing written outside outgoing/ and logs/")

        # not regular files: a FIFO nobody writes to (opening it for reading
        # would wait for a writer forever), a directory, a device
        fifo = os.path.join(src, "pipe.jpg")
        os.mkfifo(fifo)
        odd = [fifo, src, "/dev/zero"]
        rc, out, err = wd.run("--files", *odd, paths[0], timeout=20)     # raises when it hangs
        t.eq(rc, 1, "--files with a FIFO, a directory and a device: done, exit status 1")
        got = sorted((u, r) for _, u, r in wd.failed() if u in odd)
        t.eq(got, sorted((p, "%s: not a regular file" % p) for p in odd),
             "--files: each non-regular file is a failed.tsv line saying so")


def test_files_mode_symlinks(t):
    """--files names outputs after the paths given: two symlinks to one
    image are two images (not duplicates), a path given twice is one."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.Workdir() as wd:
        src = os.path.join(cdir, "photos/hopper_128x128.jpg")
        a, b = os.path.join(wd.cwd, "first.jpg"), os.path.join(wd.cwd, "second.jpg")
        os.symlink(src, a)
        os.symlink(src, b)
        rc, out, err = wd.run("--files", "first.jpg", b, "first.jpg")
        t.eq(rc, 0, "--files symlinks: exit 0 (%s)" % err[-300:])
        C.stdout_summary(t, out, "--files symlinks", urls=3, done=2, failed=0, thumbs=6)
        t.check("MB" not in out, "--files summary reports no download volume: %r" % out)
        for stem in ("first", "second"):
            C.check_thumbs(t, wd, stem, "JPEG", 128, 128, what="--files symlink %s" % stem)
        t.check(os.path.islink(a) and os.path.islink(b), "--files: the links themselves are untouched")


def test_files_mode_spellings(t):
    """One file spelt a.jpg, ./a.jpg, $PWD//./a.jpg is one file, in one run
    and from run to run: the next run's ./a.jpg writes the same outputs,
    not a second set under a name with a hash.  sub/../a.jpg stays its own
    (".." is only right through the links it may cross)."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.Workdir() as wd:
        shutil.copyfile(os.path.join(cdir, "photos/hopper_128x128.jpg"), os.path.join(wd.cwd, "a.jpg"))
        os.makedirs(os.path.join(wd.cwd, "sub"))
        rc, out, err = wd.run("--files", "a.jpg", "./a.jpg", wd.cwd + "//./a.jpg", "sub/../a.jpg")
        t.eq(rc, 0, "--files spellings: exit 0 (%s)" % err[-300:])
        C.stdout_summary(t, out, "--files spellings", urls=4, done=2, failed=0, thumbs=6)
        t.check("3 duplicates" not in out and "2 duplicates skipped" in out,
                "--files spellings: a.jpg, ./a.jpg and $PWD//./a.jpg are one file (%r)" % out)
        first = sorted(wd.outgoing_files())
        rc, out, err = wd.run("--files", "././a.jpg")
        t.eq(rc, 0, "--files ././a.jpg next run: exit 0 (%s)" % err[-300:])
        t.eq(sorted(wd.outgoing_files()), first, "--files ././a.jpg next run: the same outputs, no new name")
        t.check(any(f.startswith("a_") for f in first) and len(first) == 6,
                "--files spellings: a_* and one hashed set for sub/../a.jpg (%r)" % first)


def test_bom_list(t):
    """A list saved by Windows Notepad: a UTF-8 byte order mark before the
    first line, CRLF line ends.  The mark is not part of the first URL."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir() as wd:
        lst = os.path.join(wd.lists, "notepad.txt")
        with open(lst, "wb") as f:
            f.write(b"\xef\xbb\xbf" + (srv.url(A[0]) + "\r\n" + srv.url(B[0]) + "\r\n").encode())
        rc, out, err = wd.run(lst)
        t.eq(rc, 0, "BOM list: exit status 0 (stderr %r)" % err[-300:])
        t.eq(wd.failed_lines(), [], "BOM list: nothing in failed.tsv")
        _check(t, wd, [A, B], "BOM list")
        # on stdin too: it is a list file like the others
    with C.serve(cdir) as srv, C.Workdir() as wd:
        rc, out, err = wd.run("-", stdin="\ufeff" + srv.url(P[0]) + "\n")
        t.eq(rc, 0, "BOM list on stdin: exit status 0 (stderr %r)" % err[-300:])
        _check(t, wd, [P], "BOM list on stdin")


def test_bad_lines_recorded_once(t):
    """Lines that are not http(s) URLs, that libcurl cannot parse, or that are
    too long get one failed.tsv line; later runs count them as failed before
    (and exit 1, like any URL that failed before), until --retry-failed."""
    with C.Workdir() as wd:
        port = C.free_port()
        long_line = "http://127.0.0.1:%d/" % port + "a" * 9000
        lines = ["ftp://127.0.0.1/x.jpg",
                 "http://127.0.0.1:%d/sp ace.jpg" % port,
                 "http://127.0.0.1:99999/x.jpg",
                 long_line]
        lst = wd.write_list(lines)
        rc, out, err = wd.run(lst)
        t.eq(rc, 1, "bad lines, first run: exit status 1")
        C.stdout_summary(t, out, "bad lines, first run", urls=4, done=0, failed=4)
        first = wd.failed()
        reasons = sorted(r.split(":")[0] for _, _, r in first)
        t.eq(reasons, ["invalid URL", "invalid URL", "line too long", "not an http(s) URL"],
             "bad lines, first run: one failed.tsv line each (%r)" % first)
        for i in (2, 3):
            rc, out, err = wd.run(lst)
            t.eq(rc, 1, "bad lines, run %d: exit status 1 (they failed before)" % i)
            C.stdout_summary(t, out, "bad lines, run %d" % i, urls=4, done=0, failed=0)
            t.eq(C.summary_notes(out.strip()).get("failed before"), 4,
                 "bad lines, run %d: all four counted as failed before (%r)" % (i, out))
            t.eq(wd.failed(), first, "bad lines, run %d: failed.tsv unchanged" % i)
        rc, out, err = wd.run("--retry-failed", lst)
        t.eq(rc, 1, "bad lines, --retry-failed: exit status 1")
        # the retried lines replace their old ones: still one line each
        again = wd.failed()
        t.eq(len(again), 4, "bad lines, --retry-failed: recorded again, one line each (%r)" % again)
        t.eq(sorted(u for _, u, _ in again), sorted(u for _, u, _ in first),
             "bad lines, --retry-failed: the same four lines")
        C.check_failed_format(t, wd, "bad lines")


def test_bad_lines_escaped_and_repeated(t):
    """A bad line with control characters is recorded escaped, and found
    there by later runs (it was recorded again on every run); a bad line
    twice in one run gets one failed.tsv line, the second is a duplicate; a
    URL longer than 4 KB that fails is recorded whole and is failed before
    on the next run (it was cut, so never found)."""
    with C.Workdir() as wd:
        port = C.free_port()        # nothing listens: refused at once
        ctl = "ftp://127.0.0.1/a\x01b\x1bc.jpg"
        bad_url = "http://127.0.0.1:%d/x\x7fy.jpg" % port
        long_url = "http://127.0.0.1:%d/" % port + "b" * 5000 + ".jpg"
        lst = wd.write_list([ctl, bad_url, "ftp://127.0.0.1/twice.jpg", long_url,
                             "ftp://127.0.0.1/twice.jpg", ctl])
        rc, out, err = wd.run("--set", "download.retries=0", lst)
        t.eq(rc, 1, "escaped/repeated bad lines, first run: exit status 1")
        C.stdout_summary(t, out, "escaped/repeated bad lines, first run", urls=6, failed=4)
        t.eq(C.summary_notes(out.strip()).get("duplicates skipped"), 2,
             "escaped/repeated bad lines, first run: the repeated lines are duplicates (%r)" % out)
        first = wd.failed()
        urls = sorted(u for _, u, _ in first)
        short = [u[:60] for u in urls]      # messages stay readable
        t.check(urls == sorted(["ftp://127.0.0.1/a\\x01b\\x1bc.jpg",
                                "http://127.0.0.1:%d/x\\x7fy.jpg" % port,
                                "ftp://127.0.0.1/twice.jpg", long_url]),
                "escaped/repeated bad lines: one line each, control characters escaped, "
                "the long URL whole (%r, lengths %r)" % (short, [len(u) for u in urls]))
        for i in (2, 3):
            rc, out, err = wd.run("--set", "download.retries=0", lst)
            t.eq(rc, 1, "escaped/repeated bad lines, run %d: exit status 1" % i)
            notes = C.summary_notes(out.strip())
            t.eq((notes.get("failed before"), notes.get("duplicates skipped")), (4, 2),
                 "escaped/repeated bad lines, run %d: 4 failed before, 2 duplicates (%r)"
                 % (i, out))
            now = wd.failed()
            t.check(now == first, "escaped/repeated bad lines, run %d: failed.tsv unchanged "
                    "(%d lines, %d before)" % (i, len(now), len(first)))
        C.check_failed_format(t, wd, "escaped/repeated bad lines")


def test_long_lines(t):
    """A line over 8192 bytes is not read whole, yet a comment or a blank line
    that long is still ignored, and a long URL is recorded under a key of
    its own: two that share their first 80 bytes are two failures (not a
    duplicate), and a short URL that those 80 bytes spell is fetched, not
    "failed before" (this run and the next)."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir, any_file=os.path.join(cdir, A[0])) as srv, C.Workdir() as wd:
        base = srv.url("any/")
        short = base + "a" * (76 - len(base)) + ".jpg"     # 80 bytes
        longs = [base + "x" * 9000 + "/one.jpg", base + "x" * 9000 + "/two.jpg",
                 short + "?" + "q" * 9000]
        lst = wd.write_list(["#" + "c" * 9000, " " * 9000, "  \t# " + "c" * 9000]
                            + longs + [short])
        rc, out, err = wd.run("--set", "download.retries=0", lst)
        t.eq(rc, 1, "long lines: exit status 1 (stderr %r)" % err[-300:])
        C.stdout_summary(t, out, "long lines", urls=4, done=1, failed=3)
        t.eq(C.summary_notes(out.strip()).get("duplicates skipped"), 0,
             "long lines: no duplicate (%r)" % out)
        first = wd.failed()
        keys = [u for _, u, _ in first]
        t.eq([r for _, _, r in first], ["line too long"] * 3,
             "long lines: the three long URLs are recorded, the comments are not (%r)"
             % [(u[:90], r) for _, u, r in first])
        t.check(len(set(keys)) == 3 and short not in keys
                and all(" " in k and len(k) < 200 for k in keys),
                "long lines: three distinct keys, none a URL (%r)" % [k[:200] for k in keys])
        t.eq(sorted(k[:len(base) + 6] for k in keys),
             sorted(u[:len(base) + 6] for u in longs),
             "long lines: each key starts as its line does")
        stem = short.rsplit("/", 1)[1][:-len(".jpg")]
        C.check_thumbs(t, wd, stem, "JPEG", 128, 128, what="long lines: the short URL")
        rc, out, err = wd.run("--set", "download.retries=0", lst)
        t.eq(rc, 1, "long lines, run 2: exit status 1 (they failed before)")
        notes = C.summary_notes(out.strip())
        t.eq((notes.get("failed before"), notes.get("already done")), (3, 1),
             "long lines, run 2: 3 failed before, 1 already done (%r)" % out)
        t.eq(wd.failed(), first, "long lines, run 2: failed.tsv unchanged")


def test_directory_as_list(t):
    """A directory given as a list is a usage error, like a missing file:
    named on stderr, exit 2, nothing started."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir() as wd:
        l1 = wd.write_list([srv.url(A[0])], "one.txt")
        somedir = os.path.join(wd.lists, "somedir")
        os.makedirs(somedir)
        rc, out, err = wd.run(l1, somedir)
        t.eq(rc, 2, "directory as a list: exit status 2 (stdout %r)" % out[-300:])
        t.check("%s: cannot read URL list: Is a directory" % somedir in err,
                "directory as a list: stderr names it (%r)" % err[-300:])
        t.eq(out, "", "directory as a list: no summary on stdout")
        t.eq(srv.requests(), [], "directory as a list: nothing was started")
        t.eq(wd.failed_lines(), [], "directory as a list: nothing in failed.tsv")
