#!/bin/sh
# Install the benchmark tools that are missing (Debian packages; needs root).
# The anchors of BENCH.md: vipsthumbnail, ImageMagick 6, Pillow, djpeg, curl;
# scikit-image + numpy for SSIM/PSNR; GNU time for peak RSS.
set -e
need=""
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
for p in libvips-tools imagemagick python3-pil python3-skimage python3-numpy \
         libjpeg-turbo-progs curl time python3; do
    have "$p" || need="$need $p"
done
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "bench/tools.sh: missing packages:$need (run as root or install them)" >&2
    exit 1
fi
echo "bench: installing$need" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $need >/dev/null
