#!/bin/sh
# Build the benchmark corpus (BENCH.md): the JPEG wallpapers of two Debian
# packages, kept outside the repository in $THUMBD_BENCH_CACHE.
#   $CACHE/debs/*.deb     the downloaded packages
#   $CACHE/x/             dpkg -x of both
#   $CACHE/corpus/*.jpg   every *.jpg > 100 KB except screenshot.jpg, flat,
#                         named <package-dir path with / -> _> so names are unique
# Prints the corpus directory.  Idempotent: does nothing when corpus/ is complete.
set -e
CACHE=${THUMBD_BENCH_CACHE:-/var/tmp/thumbd-bench}
C=$CACHE/corpus
if [ -f "$C/.complete" ]; then echo "$C"; exit 0; fi
mkdir -p "$CACHE/debs" "$CACHE/x"
cd "$CACHE/debs"
if ! ls mate-backgrounds_*.deb >/dev/null 2>&1 || ! ls plasma-workspace-wallpapers_*.deb >/dev/null 2>&1; then
    echo "bench: apt-get download mate-backgrounds plasma-workspace-wallpapers" >&2
    apt-get download mate-backgrounds plasma-workspace-wallpapers >&2 || {
        apt-get update -qq >&2 && apt-get download mate-backgrounds plasma-workspace-wallpapers >&2; }
fi
rm -rf "$CACHE/x" "$C.tmp"
mkdir -p "$CACHE/x" "$C.tmp"
for d in *.deb; do dpkg -x "$d" "$CACHE/x"; done
cd "$CACHE/x"
find . -type f -name '*.jpg' ! -name screenshot.jpg -size +100k | sort | while read -r f; do
    n=$(printf %s "${f#./usr/share/}" | tr '/ ' '__')
    cp "$f" "$C.tmp/$n"
done
rm -rf "$C"
mv "$C.tmp" "$C"
touch "$C/.complete"
echo "$C"
