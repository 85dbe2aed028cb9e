#!/bin/sh
# make demo: serve tests/demo/images on 127.0.0.1, run thumbd on the sample
# list with the default config (config/thumbd.ini), show where things went.
: "${THUMBD:?THUMBD must point at the binary}"
cd "$(dirname "$0")/../.." || exit 1
tmp=$(mktemp -d) || exit 1
# A fixed port keeps the demo's URLs, and so its output names, the same from
# one run to the next (names belong to URLs); any free port if it is taken.
start_server() {
	rm -f "$tmp/port"
	python3 tests/httpd.py --root tests/demo/images --port "$1" --port-file "$tmp/port" \
		>"$tmp/url" 2>"$tmp/httpd.err" &
	srv=$!
	i=0
	while [ ! -s "$tmp/port" ] && [ $i -lt 100 ] && kill -0 $srv 2>/dev/null; do
		sleep 0.1; i=$((i + 1))
	done
	[ -s "$tmp/port" ]
}
trap 'kill $srv 2>/dev/null; rm -rf "$tmp"' EXIT INT TERM
if ! start_server 18089 && ! start_server 0; then
	echo "demo: the test server did not start:" >&2; cat "$tmp/httpd.err" >&2; exit 1
fi
base="http://127.0.0.1:$(cat "$tmp/port")/"
sed "s|@BASE@|$base|g" tests/demo/urls.txt.in >"$tmp/urls.txt"
echo "demo: serving tests/demo/images at $base"
echo "demo: $THUMBD $tmp/urls.txt  (config: config/thumbd.ini)"
"$THUMBD" "$tmp/urls.txt"
rc=$?
echo
echo "thumbnails:   $(pwd)/outgoing/"
ls outgoing | sed 's/^/  /'
echo "log:          $(pwd)/logs/thumbd.log"
echo "failures:     $(pwd)/logs/failed.tsv (two on purpose: an HTML page and a 404)"
grep -F "$base" logs/failed.tsv | tail -n 2 | sed 's/^/  /'
# exit status 1 is expected: the list holds two URLs that fail on purpose
[ "$rc" -le 1 ]
