"""logs/thumbd.log format and totals; stdout is one summary line when it is not a TTY."""

import re

import common as C

GOOD = [("photos/hopper_128x128.jpg", "hopper_128x128", "JPEG", 128, 128),
        ("edge/png_gray_8bit.png", "png_gray_8bit", "PNG", 32, 32),
        ("edge/webp_lossless.webp", "webp_lossless", "WEBP", 512, 512)]


def test_log_file(t):
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir() as wd:
        urls = [srv.url(g[0]) for g in GOOD] + [srv.url("status/404"), srv.url("broken/zero_bytes.jpg")]
        rc, out, err = wd.run_urls(urls)
        t.eq(rc, 1, "log run: exit status 1 (two failures)")
        C.stdout_summary(t, out, "log run")
        lines = wd.log_lines()
        if not t.check(lines is not None, "logs/thumbd.log exists"):
            return
        t.check(len(lines) > 0, "logs/thumbd.log is not empty")
        bad = [l for l in lines if not C.LOG_LINE.match(l)]
        t.eq(bad[:5], [], "every log line is '[name, YYYY-MM-DD HH:MM:SS.mmm, LEVEL] message'")
        dl = [int(m.group(1)) for l in lines for m in [re.search(r"downloaded (\d+) images? in", l)] if m]
        cr = [int(m.group(1)) for l in lines for m in [re.search(r"created (\d+) thumbnails? in", l)] if m]
        if t.eq(len(dl), 1, "one 'downloaded N images in' line"):
            t.check(len(GOOD) <= dl[0] <= len(GOOD) + 1,
                    "downloaded N: N counts the successful downloads (N=%d, 3 good + 1 empty body)" % dl[0])
        if t.eq(len(cr), 1, "one 'created M thumbnails in' line"):
            t.eq(cr[0], 3 * len(GOOD), "created M thumbnails: M = 3 x successful images")
        t.check(any("ERROR" in l or "WARNING" in l for l in lines if C.LOG_LINE.match(l)),
                "failures are logged at WARNING or ERROR")


def test_progress_on_a_terminal(t):
    """With stderr on a TTY, a live one-line progress display is drawn there
    (rewritten in place with CR); stdout still gets only the summary."""
    import os
    import pty
    import select
    import subprocess
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir() as wd:
        urls = [srv.url("slowhead/0.4/photos/hopper_128x128.jpg?n=%d" % i) for i in range(4)]
        lst = wd.write_list(urls)
        master, slave = pty.openpty()
        p = subprocess.Popen([C.thumbd_path(), "-c", wd.config, lst], stdout=subprocess.PIPE,
                             stderr=slave, stdin=subprocess.DEVNULL, cwd=wd.cwd)
        os.close(slave)
        seen = b""
        while True:
            r, _, _ = select.select([master], [], [], 30)
            if not r:
                break
            try:
                chunk = os.read(master, 4096)
            except OSError:          # EIO once the child has closed the pty
                break
            if not chunk:
                break
            seen += chunk
        out = p.stdout.read().decode()
        rc = p.wait(30)
        os.close(master)
        t.eq(rc, 0, "progress run: exit 0")
        C.stdout_summary(t, out, "progress run", urls=4, done=4, failed=0)
        text = seen.decode("utf-8", "replace")
        t.check("\r" in text and "downloaded" in text and "in flight" in text,
                "a progress line is drawn on the terminal (got %r)" % text[-300:])
        t.check("\n" not in text.strip("\n"), "the progress display stays on one line (%r)" % text[-300:])
