"""
The fault table: what the real web does to a downloader (../shared/guides/FAULTS.md),
one row per case, run by test_faults.test_fault_table.

A case:

    id        unique, [a-z0-9_]; also the stem of its output (the served file is
              copied to c/<id>.<ext> under a temp web root, so every case has
              its own name and its own request counter)
    batch     cases of one batch share one thumbd run, its server and its config
              (BATCHES below); batches run at the same time, each in its own
              work directory with its own server
    file      corpus file served for {file} (default photos/hopper_128x128.jpg)
    route     request target on the batch's server: "{file}" = c/<id>.<ext>,
              "{name}" = <id>.jpg (for routes that serve no file)
              and "{refused}" as in url
    url       instead of route: a whole URL; "{refused}" = a port nobody
              listens on, "{blackhole}" = host:port of a socket whose accept
              queue is full (connect never completes), "{name}" as above
    thumbs    expected success: (fmt, W, H) of the source as displayed
    reason    expected failed.tsv reason, exactly; or
    reason_re a regular expression it must match (re.fullmatch).  In both,
              "{len}" = size of the file, "{half}" = len // 2, "{port}" =
              the server's port, "{host}" = the URL's host, "{refused}" as in url
    requests  GETs the server must see for exactly this URL (retries counted);
              an int, or (min, max) where libcurl may add requests of its own
              (it retries a request once per reused connection that dies
              before answering, up to 5 times)
    gaps      [(min, max), ...]: seconds between consecutive requests for it
              (backoff, jitter, Retry-After); checked with GAP_SLACK
    span      (min, max): seconds from its first to its last request
    within    seconds from the start of thumbd to the URL's outcome (its
              thumbnails written or its failed.tsv line)
    range2    the second request must carry this Range header ("bytes={half}-")
              and an If-Range equal to the first answer's ETag or
              Last-Modified; None = the second request must carry no Range
    after     (other id, seconds): the first request for this URL comes at
              least that long after the first request of the other case
    before_retry_of  other id: the first request for this URL comes before the
              other case's second request (a waiting retry holds no slot)
    jitter    True: its first backoff gap joins a sample that must not be constant

Every case also gets the batch-wide checks of test_faults: exactly one
outcome per URL, the exit status, the summary counts, nothing partial in
incoming/ or outgoing/, nothing outside them.
"""

H = "photos/hopper_128x128.jpg"         # JPEG 128x128, 6412 bytes
F = "photos/frangipani_480x360.jpg"     # JPEG 480x360, 32764 bytes
P = "edge/png_rgba_photo_500x500.png"   # PNG 500x500, 374287 bytes (CRCs catch a bad splice)
W = "edge/webp_lossy.webp"              # WebP 128x128
I = "photos/iguana_100x68.jpg"          # JPEG 100x68

JH = ("JPEG", 128, 128)
JF = ("JPEG", 480, 360)
PP = ("PNG", 500, 500)
WW = ("WEBP", 128, 128)
JI = ("JPEG", 100, 68)

# Seconds taken from every gap/span lower bound (timer and scheduling
# granularity) and added to every upper bound.  The upper slack is wider:
# the batches run side by side, under ASan and TSan too, on 2 cores, and a
# late retry is only slowness, while an early one would be a bug (0.5 s
# was too little for TSan in the whole suite: 0.80 and 0.83 s late).
GAP_SLACK = 0.12
GAP_SLACK_LATE = 1.0

# retry_delay 0.2: the waits before attempts 2, 3, 4 are 0.2 x (1, 2, 4) x [0.5, 1.5]
D = 0.2
BACKOFF3 = [(D * 0.5, D * 1.5), (2 * D * 0.5, 2 * D * 1.5), (4 * D * 0.5, 4 * D * 1.5)]
AFTER4 = r" \(after 4 attempts\)"

FAST = {
    "download.retries": "3", "download.retry_delay": str(D), "download.max_retry_wait": "5",
    "download.host_max_failures": "0", "download.connect_timeout": "2", "download.timeout": "6",
    "download.low_speed_limit": "1024", "download.low_speed_time": "3",
    "download.max_bytes": "2M", "download.per_host": "16", "download.connections": "32",
    "download.max_redirects": "5",
}

BATCHES = {
    # most cases: quick retries, no circuit breaker (it is tested on its own)
    "main": FAST,
    # body-speed cut: low_speed_time 2 well under the total timeout
    "stall": dict(FAST, **{"download.retries": "1", "download.low_speed_time": "2",
                           "download.timeout": "20"}),
    # total and connect timeouts: low_speed_time out of the way
    "timeout": dict(FAST, **{"download.retries": "1", "download.timeout": "3",
                             "download.connect_timeout": "2", "download.low_speed_time": "30"}),
    # the whole-transfer timeout under connect_timeout: it is what cuts a connect
    "conntotal": dict(FAST, **{"download.retries": "0", "download.timeout": "2",
                               "download.connect_timeout": "10", "download.low_speed_time": "30"}),
    # Retry-After (seconds, HTTP date, capped by max_retry_wait); backoff alone would be ~0.1 s
    "retryafter": dict(FAST, **{"download.retry_delay": "0.1", "download.max_retry_wait": "3"}),
    # Retry-After holds back the whole host: per_host 1 so only that can delay the second URL
    "rahold": dict(FAST, **{"download.retry_delay": "0.1", "download.max_retry_wait": "5",
                            "download.per_host": "1"}),
    # max_retry_wait caps the exponential backoff (10 s, 20 s, 40 s without it)
    "cap": dict(FAST, **{"download.retry_delay": "10", "download.max_retry_wait": "0.3"}),
    # a waiting retry holds no connection or per-host slot: per_host 1, waits 0.5..1.5 s
    "slotfree": dict(FAST, **{"download.retry_delay": "1", "download.per_host": "1"}),
    # retries = 0: one attempt, even for transient failures
    "noretry": dict(FAST, **{"download.retries": "0"}),
    # one connection: the second URL must go out on the connection the first one left junk on
    "keepalive": dict(FAST, **{"download.connections": "1", "download.per_host": "1",
                               "download.retries": "0"}),
    # statuses that never recover, on a host of their own: among the main
    # batch's cases their retries waited for window slots and went out
    # together (first waits 0.42-0.54 s, backoff 0.1-0.3 s), hiding the jitter
    "backoff": FAST,
}

CASES = [
    # -- plain and transient statuses that recover --------------------------------
    dict(id="plain", route="{file}", thumbs=JH, requests=1, within=5),
    dict(id="flaky503x2", route="flaky/2/503/{file}", thumbs=JH, requests=3,
         gaps=BACKOFF3[:2], within=6),
    dict(id="flaky408", route="flaky/1/408/{file}", thumbs=JH, requests=2, gaps=BACKOFF3[:1]),
    dict(id="flaky429", route="flaky/1/429/{file}", thumbs=JH, requests=2, gaps=BACKOFF3[:1]),
    dict(id="flaky500", route="flaky/1/500/{file}", thumbs=JH, requests=2, gaps=BACKOFF3[:1]),
    dict(id="flaky502", route="flaky/1/502/{file}", file=W, thumbs=WW, requests=2, gaps=BACKOFF3[:1]),
    dict(id="flaky504", route="flaky/1/504/{file}", file=I, thumbs=JI, requests=2, gaps=BACKOFF3[:1]),
    dict(id="flaky503x3", route="flaky/3/503/{file}", file=P, thumbs=PP, requests=4, gaps=BACKOFF3),

    # -- transient statuses that never recover: 4 attempts, exponential backoff with jitter --
    dict(id="always503", batch="backoff", route="flaky/99/503/{file}", reason="HTTP 503 (after 4 attempts)",
         requests=4, gaps=BACKOFF3, jitter=True, within=8),
    dict(id="always500", batch="backoff", route="flaky/99/500/{file}", reason="HTTP 500 (after 4 attempts)",
         requests=4, gaps=BACKOFF3, jitter=True),
    dict(id="always502", batch="backoff", route="flaky/99/502/{file}", reason="HTTP 502 (after 4 attempts)",
         requests=4, gaps=BACKOFF3, jitter=True),
    dict(id="always504", batch="backoff", route="flaky/99/504/{file}", reason="HTTP 504 (after 4 attempts)",
         requests=4, gaps=BACKOFF3, jitter=True),
    dict(id="always408", batch="backoff", route="flaky/99/408/{file}", reason="HTTP 408 (after 4 attempts)",
         requests=4, gaps=BACKOFF3, jitter=True),
    dict(id="always429", batch="backoff", route="flaky/99/429/{file}", reason="HTTP 429 (after 4 attempts)",
         requests=4, gaps=BACKOFF3, jitter=True),

    # -- permanent statuses: one request, the bare status ---------------------------
    dict(id="perm404", route="flaky/99/404/{file}", reason="HTTP 404", requests=1, within=5),
    dict(id="perm410", route="flaky/99/410/{file}", reason="HTTP 410", requests=1),
    dict(id="perm403", route="flaky/99/403/{file}", reason="HTTP 403", requests=1),
    dict(id="perm401", route="flaky/99/401/{file}", reason="HTTP 401", requests=1),
    dict(id="perm501", route="flaky/99/501/{file}", reason="HTTP 501", requests=1),

    # -- connections cut short ------------------------------------------------------
    dict(id="short", route="short/{file}", file=F,
         reason="truncated body: got {half} of {len} bytes (after 4 attempts)", requests=4, gaps=BACKOFF3),
    dict(id="reset_always", route="reset/99/{file}", file=F, reason_re=r".+" + AFTER4, requests=4,
         gaps=BACKOFF3),
    dict(id="reset_once", route="reset/1/{file}", file=F, thumbs=JF, requests=2, gaps=BACKOFF3[:1]),
    dict(id="drop_always", route="drop/{name}", reason_re=r".+" + AFTER4, requests=(4, 24)),
    # no Content-Length, so nothing to say "of": how much came before the close
    dict(id="chunked_short", route="chunkedshort/{file}", file=F,
         reason="truncated body: connection closed after {half} bytes (after 4 attempts)", requests=4,
         gaps=BACKOFF3),
    # content-encoded: the decoded bytes and the wire's Content-Length are not to be compared
    dict(id="gzip_short", route="gzipshort/{file}", file=P,
         reason_re=r"truncated body: connection closed before the \d+ bytes of its Content-Length "
                   r"\(content-encoded\)" + AFTER4, requests=4, gaps=BACKOFF3),
    dict(id="refused", url="http://127.0.0.1:{refused}/{name}",
         reason_re=r"cannot connect to 127\.0\.0\.1 port \d+: Connection refused" + AFTER4, within=6),
    # A name the resolver refuses on its own (a 64-byte label is over DNS's 63),
    # so no query ever leaves the machine: tests talk to 127.0.0.1 only.
    dict(id="nxdomain", url="http://" + "a" * 64 + ".invalid/{name}",
         reason="cannot resolve host " + "a" * 64 + ".invalid", within=4),
    # the same after a redirect: the reason names the host that failed, not the one that
    # redirected (which was once taken for a proxy: "cannot connect to the proxy")
    dict(id="redirect_refused", route="location/http%3A%2F%2F127.0.0.1%3A{refused}%2F{name}",
         reason_re=r"cannot connect to 127\.0\.0\.1 port {refused}: Connection refused" + AFTER4,
         requests=4, within=6),
    dict(id="redirect_nxdomain", route="location/http%3A%2F%2F" + "a" * 64 + ".invalid%2F{name}",
         reason="cannot resolve host " + "a" * 64 + ".invalid", requests=1, within=4),

    # -- resume: Range + If-Range after a cut, start over when Range is ignored -----
    dict(id="resume_png", route="resumable/{file}", file=P, thumbs=PP, requests=2, range2="bytes={half}-"),
    dict(id="resume_jpeg", route="resumable/{file}", file=F, thumbs=JF, requests=2, range2="bytes={half}-"),
    # 2 requests when the 200 answer to the Range request is taken as the new body, 3 when thumbd
    # drops it and asks again without Range: both "start over"
    dict(id="norange_png", route="norange/{file}", file=P, thumbs=PP, requests=(2, 3), range2="bytes={half}-"),
    dict(id="gzip_noresume", route="gzipresumable/{file}", file=P, thumbs=PP, requests=2, range2=None),
    # nothing to put in If-Range (no validator, or only a weak ETag): a changed file could be
    # stitched onto the old beginning, so the retry starts over
    dict(id="noresume_no_validator", route="rangesonly/none/{file}", file=P, thumbs=PP, requests=2, range2=None),
    dict(id="noresume_weak_etag", route="rangesonly/weak/{file}", file=F, thumbs=JF, requests=2, range2=None),
    dict(id="gzip_noresume_ce_first", route="gzipranges/{file}", file=P, thumbs=PP, requests=2, range2=None),

    # -- content ------------------------------------------------------------------
    dict(id="html_as_jpg", route="html/{name}", reason_re=r"not an image.*", requests=1),
    dict(id="json_as_jpg", route="json/{name}", reason_re=r"not an image.*", requests=1),
    dict(id="html_as_imagejpeg", route="ctype/image%2Fjpeg/{file}", file="broken/html_named_as.jpg",
         reason_re=r"(not an image|unsupported format).*", requests=1),
    dict(id="jpeg_as_textplain", route="ctype/text%2Fplain/{file}", thumbs=JH, requests=1),
    dict(id="webp_no_ctype", route="noctype/{file}", file=W, thumbs=WW, requests=1),
    dict(id="chunked", route="chunked/{file}", file=I, thumbs=JI, requests=1),
    # chunk sizes that are not hex: the server's encoder, not the network; not retried
    dict(id="chunked_bad", route="chunkedbad/{file}", file=F,
         reason_re=r"malformed chunked encoding: .*chunked-encoding", requests=1),
    dict(id="gzip_png", route="gzip/{file}", file=P, thumbs=PP, requests=1),
    dict(id="no_length", route="nolength/{file}", file=F, thumbs=JF, requests=1),
    dict(id="empty_body", route="empty/{name}", reason_re=r".+", requests=1),
    dict(id="random_bytes", route="{file}", file="broken/random_bytes.jpg", reason_re=r".+", requests=1),
    # -- answers that break HTTP: the remote's fault, never retried -------------------
    # no status line at all (HTTP/0.9 style); no redirect happened.  2 requests when it
    # went out on a kept-alive connection first (junk there is tried again on a new one)
    dict(id="not_http", route="junk/{name}", reason="not an HTTP response (no status line)",
         requests=(1, 2)),
    # a 200 KB header line: over curl's 100 KB, which curl reports as "Out of memory"
    dict(id="big_header", route="bigheader/200K/{file}",
         reason="response headers too large (a line over 100 KB)", requests=1),
    # 400 KB of short header lines: over the 300 KB curl allows all of an answer's
    # headers (Debian's 7.88.1, like curl 8.3); not retried, not an overload sign
    dict(id="many_headers", route="manyheaders/400K/{file}",
         reason="response headers too large (over 300 KB in all)", requests=1),
    dict(id="some_headers", route="manyheaders/200K/{file}", thumbs=JH, requests=1),
    # 206 to a request without Range: a part, not the body (resume_* show a 206 to a Range is fine)
    dict(id="unasked_206", route="partial/1000/{file}", file=F,
         reason="HTTP 206 Partial Content to a request without Range (Content-Range: bytes 0-999/{len})",
         requests=1),
    dict(id="truncated_jpeg", route="{file}", file="broken/truncated_half.jpg", reason="truncated JPEG",
         requests=1),
    dict(id="gif", route="{file}", file="edge/unsupported_animated.gif", reason="unsupported format: GIF",
         requests=1),
    dict(id="tiff", route="{file}", file="edge/unsupported_photo.tiff", reason="unsupported format: TIFF",
         requests=1),
    dict(id="bad_crc_png", route="{file}", file="broken/bad_crc_idat.png", reason_re=r"corrupt PNG.*",
         requests=1),
    dict(id="pixel_bomb", route="{file}", file="broken/bomb_50000x50000.png",
         reason="too large: 50000x50000 > max_pixels", requests=1),

    # -- size limits: never retried, cut early ----------------------------------------
    dict(id="huge_length", route="huge/1G/{name}", reason_re=r"too large.*", requests=1, within=6),
    dict(id="huge_chunked", route="hugechunked/1G/{name}", reason_re=r"too large.*", requests=1, within=6),
    dict(id="huge_close", route="hugeclose/1G/{name}", reason_re=r"too large.*", requests=1, within=6),
    dict(id="gzip_bomb", route="gzipbomb/64M/{name}", reason_re=r"too large.*", requests=1, within=6),

    # -- redirects -----------------------------------------------------------------
    dict(id="redirect2", route="redirect/2/{file}", thumbs=JH, requests=1),
    dict(id="redirect_relative", route="relative/{file}", file=W, thumbs=WW, requests=1),
    dict(id="redirect_file", route="location/file%3A%2F%2F%2Fetc%2Fpasswd", reason_re=r".+", requests=1),
    dict(id="redirect_ftp", route="location/ftp%3A%2F%2F127.0.0.1%2Fx.jpg", reason_re=r".+", requests=1),
    dict(id="redirect_gopher", route="location/gopher%3A%2F%2F127.0.0.1%2Fx.jpg", reason_re=r".+",
         requests=1),
    dict(id="redirect_self_loop", route="location/{name}",
         reason="too many redirects (max_redirects 5)", requests=6),
    dict(id="redirect_pingpong", route="pingpong/A/{name}",
         reason="too many redirects (max_redirects 5)", requests=3),

    # -- stalls (batch "stall": low_speed_time 2, retries 1) ---------------------------
    dict(id="slow_loris", batch="stall", route="loris/{file}",
         reason="stalled: under 1024 bytes/s for 2 s (after 2 attempts)", requests=2, within=12),
    dict(id="stall_after_headers", batch="stall", route="headersonly/60/{file}",
         reason="stalled: under 1024 bytes/s for 2 s (after 2 attempts)", requests=2, within=12),
    dict(id="stall_mid_body", batch="stall", route="stallbody/60/{file}", file=P,
         reason="stalled: under 1024 bytes/s for 2 s (after 2 attempts)", requests=2, within=12),
    dict(id="stall_batch_ok", batch="stall", route="{file}", thumbs=JH, requests=1, within=5),
    # low_speed_* is for the body: 4 s to the first byte is the timeout's business (20 s)
    dict(id="slow_first_byte", batch="stall", route="slowhead/4/{file}", thumbs=JH, requests=1, within=8),
    # ... also after a redirect: the window starts at the final answer's first byte, not the 302's
    dict(id="slow_first_byte_after_redirect", batch="stall", route="redirect/1/slowhead/4/{file}", thumbs=JH,
         requests=1, within=8),

    # -- timeouts (batch "timeout": timeout 3, connect_timeout 2, retries 1) ----------
    dict(id="no_answer", batch="timeout", route="slowhead/60/{file}",
         reason="no response in 3 s (after 2 attempts)", requests=2, within=12),
    # a body too slow for the whole of timeout, yet over low_speed_limit (1024 B/s)
    dict(id="body_too_slow", batch="timeout", route="trickle/2048/{file}", file=F,
         reason="timeout after 3 s (after 2 attempts)", requests=2, within=12),
    dict(id="connect_never", batch="timeout", url="http://{blackhole}/{name}",
         reason="connect timeout after 2 s (after 2 attempts)", within=12),
    dict(id="slow_but_in_time", batch="timeout", route="slowhead/1/{file}", thumbs=JH, requests=1),
    dict(id="connect_never_total", batch="conntotal", url="http://{blackhole}/{name}",
         reason="connect timeout after 2 s", within=6),

    # -- Retry-After (batch "retryafter": retry_delay 0.1, max_retry_wait 3) ------------
    dict(id="ra_seconds", batch="retryafter", route="retryafter/1/503/2/{file}", thumbs=JH,
         requests=2, gaps=[(1.9, 3.5)]),
    dict(id="ra_date", batch="retryafter", route="retryafter/1/429/date3/{file}", thumbs=JH,
         requests=2, gaps=[(1.5, 3.5)]),
    dict(id="ra_capped", batch="retryafter", route="retryafter/1/503/3600/{file}", thumbs=JH,
         requests=2, gaps=[(2.5, 3.5)]),

    # -- Retry-After holds back every request to the host (batch "rahold": per_host 1) ----
    dict(id="rahold_first", batch="rahold", route="retryafter/1/503/2/{file}", thumbs=JH,
         requests=2, gaps=[(1.9, 3.5)]),
    dict(id="rahold_second", batch="rahold", route="{file}", file=I, thumbs=JI, requests=1,
         after=("rahold_first", 1.9)),

    # -- max_retry_wait caps the backoff (batch "cap": retry_delay 10, max_retry_wait 0.3) --
    dict(id="cap_always503", batch="cap", route="flaky/99/503/{file}", reason="HTTP 503 (after 4 attempts)",
         requests=4, gaps=[(0.0, 0.3)] * 3, within=6),
    dict(id="cap_flaky", batch="cap", route="flaky/1/500/{file}", thumbs=JH, requests=2, gaps=[(0.0, 0.3)]),

    # -- a waiting retry frees its slot (batch "slotfree": per_host 1, retry_delay 1) ------
    dict(id="slotfree_first", batch="slotfree", route="flaky/1/503/{file}", thumbs=JH, requests=2,
         gaps=[(0.5, 1.5)]),
    dict(id="slotfree_second", batch="slotfree", route="{file}", file=I, thumbs=JI, requests=1,
         before_retry_of="slotfree_first"),

    # -- retries = 0 (batch "noretry") ----------------------------------------------
    dict(id="noretry_503", batch="noretry", route="flaky/99/503/{file}",
         reason_re=r"HTTP 503( \(after 1 attempts?\))?", requests=1),
    dict(id="noretry_ok", batch="noretry", route="{file}", thumbs=JH, requests=1),

    # -- junk left on a kept-alive connection (batch "keepalive": 1 connection, no retries) --
    # the first answer is whole, then junk follows on its connection; the next URL,
    # sent on that connection, must not get the junk as its answer: it is asked again
    # on a new connection, uncounted (retries = 0 here)
    dict(id="leaves_junk", batch="keepalive", route="trailjunk/{file}", thumbs=JH, requests=1),
    dict(id="after_junk", batch="keepalive", route="{file}", file=I, thumbs=JI, requests=(1, 2)),
]
