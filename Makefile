# thumbd — build, test, demo, install.
#
# Adds to the user's CFLAGS/LDFLAGS, never replaces them.  Every library comes
# from pkg-config.  Sanitizer builds live in their own build directory so they
# never mix objects with the plain build:
#   make test SANITIZE=address,undefined
#   make test SANITIZE=thread

PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
STATEDIR   ?= /var/lib/thumbd
LOGDIR     ?= /var/log/thumbd
UNITDIR    ?= $(if $(filter /usr,$(PREFIX)),/lib/systemd/system,$(PREFIX)/lib/systemd/system)
LOGROTATEDIR ?= $(SYSCONFDIR)/logrotate.d
DESTDIR    ?=

CC         ?= cc
CFLAGS     ?= -O2 -g
PKG_CONFIG ?= pkg-config
PKGS        = libcurl libjpeg libpng libwebp libwebpdemux lcms2 inih libsystemd

# Debian packages: build dependencies, then what the tests and the demo run.
DEB_BUILD = build-essential pkg-config libcurl4-openssl-dev libjpeg62-turbo-dev \
            libpng-dev libwebp-dev liblcms2-dev libinih-dev libsystemd-dev
DEB_TEST  = python3 python3-pil ca-certificates openssl nghttp2-server man-db systemd logrotate strace

VERSION   := 0.1.0
comma     := ,

ifeq ($(SANITIZE),)
B := build
SANFLAGS :=
else
B := build/san-$(subst $(comma),-,$(SANITIZE))
SANFLAGS := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
endif

WARN = -Wall -Wextra -Wshadow -Wpointer-arith -Wstrict-prototypes \
       -Wmissing-prototypes -Wformat=2 -Wvla
PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)

ALL_CFLAGS  = -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE \
              -DTHUMBD_VERSION='"$(VERSION)"' -DSYSCONFDIR='"$(SYSCONFDIR)"' \
              -Iinclude $(WARN) $(PKG_CFLAGS) $(SANFLAGS) -pthread -MMD -MP $(CFLAGS)
ALL_LDFLAGS = $(SANFLAGS) -pthread $(LDFLAGS)
LIBS_ALL    = $(PKG_LIBS) -lm $(LIBS)

SRCS  := $(wildcard src/*.c)
OBJS  := $(patsubst src/%.c,$(B)/%.o,$(SRCS))
LOBJS := $(filter-out $(B)/main.o,$(OBJS))
TSRCS := $(wildcard tests/unit/test_*.c)
TBINS := $(patsubst tests/unit/%.c,$(B)/tests/%,$(TSRCS))

.PHONY: all test check demo deps ensure-deps clean install uninstall
all: $(B)/thumbd

$(B)/thumbd: $(OBJS)
	$(CC) $(ALL_LDFLAGS) -o $@ $(OBJS) $(LIBS_ALL)

$(B)/%.o: src/%.c | $(B)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# the loopback server of make bench's end-to-end sections (bench/latency_httpd.c)
$(B)/latency_httpd: bench/latency_httpd.c | $(B)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $<

$(B)/tests/%: tests/unit/%.c $(LOBJS) | $(B)/tests
	$(CC) $(ALL_CFLAGS) -Itests/unit $(ALL_LDFLAGS) -o $@ $< $(LOBJS) $(LIBS_ALL)

$(B) $(B)/tests:
	mkdir -p $@

# SYSCONFDIR is compiled in (the default config path, --help), so the objects
# that use it depend on a file holding its value, rewritten only when it
# changes: `make && sudo make install PREFIX=/usr` then rebuilds them for /etc
# instead of installing a binary that looks in /usr/local/etc (as git's
# GIT-CFLAGS does).
$(B)/sysconfdir: FORCE | $(B)
	@echo '$(SYSCONFDIR)' | cmp -s - $@ || echo '$(SYSCONFDIR)' >$@
$(B)/config.o $(B)/main.o: $(B)/sysconfdir
.PHONY: FORCE
FORCE:

# `make test` and `make demo` install what is missing first, then re-enter
# make so pkg-config is asked again once the packages are there.
ensure-deps:
	@if ! $(PKG_CONFIG) --exists $(PKGS) 2>/dev/null || ! command -v python3 >/dev/null \
	    || ! command -v $(CC) >/dev/null || ! command -v openssl >/dev/null \
	    || ! command -v nghttpd >/dev/null || ! command -v man >/dev/null \
	    || ! command -v systemd-analyze >/dev/null || ! command -v strace >/dev/null \
	    || ! { /usr/bin/python3 -c 'import PIL.ImageCms' || python3 -c 'import PIL.ImageCms'; } 2>/dev/null \
	    || ! PATH="$$PATH:/usr/sbin:/sbin" command -v logrotate >/dev/null; then $(MAKE) --no-print-directory deps; fi

deps:
	@if [ "$$(id -u)" != 0 ]; then echo "make deps: run as root (apt-get install $(DEB_BUILD) $(DEB_TEST))" >&2; exit 1; fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEB_BUILD) $(DEB_TEST)

test: ensure-deps
	@$(MAKE) --no-print-directory check

check: $(B)/thumbd $(TBINS)
	@THUMBD=$(CURDIR)/$(B)/thumbd TESTBIN=$(CURDIR)/$(B)/tests sh tests/run.sh

demo: ensure-deps
	@$(MAKE) --no-print-directory $(B)/thumbd
	@THUMBD=$(CURDIR)/$(B)/thumbd sh tests/demo/run.sh

# THUMBD_BIN: the binary to install; the tests install the one under test
# (THUMBD_BIN=$$THUMBD) instead of building.
THUMBD_BIN ?= $(B)/thumbd
SUBST = sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
            -e 's|@LOGDIR@|$(LOGDIR)|g' -e 's|@STATEDIR@|$(STATEDIR)|g'

install: $(THUMBD_BIN) | $(B)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SYSCONFDIR)/thumbd
	install -m 755 $(THUMBD_BIN) $(DESTDIR)$(BINDIR)/thumbd
	# the tree's config points at ../incoming etc.; an installed one at the FHS places
	sed -e 's|^incoming = \.\./incoming |incoming = $(STATEDIR)/incoming|' \
	    -e 's|^outgoing = \.\./outgoing |outgoing = $(STATEDIR)/outgoing|' \
	    -e 's|^logs     = \.\./logs     |logs     = $(LOGDIR)|' \
	    -e 's#^\(watch[[:space:]]*=[[:space:]]*\)\.\./lists\([[:space:];]\|$$\)#\1$(STATEDIR)/lists\2#' \
	    config/thumbd.ini >$(B)/thumbd.ini
	@! grep -n '= *\.\./' $(B)/thumbd.ini || { echo "install: relative path left in thumbd.ini" >&2; exit 1; }
	@! grep -nE '^watch[[:space:]]*=[[:space:]]*[^/[:space:];]' $(B)/thumbd.ini || { echo "install: relative [daemon] watch left in thumbd.ini" >&2; exit 1; }
	install -m 644 $(B)/thumbd.ini $(DESTDIR)$(SYSCONFDIR)/thumbd/thumbd.ini.example
	[ -e $(DESTDIR)$(SYSCONFDIR)/thumbd/thumbd.ini ] || \
	    install -m 644 $(B)/thumbd.ini $(DESTDIR)$(SYSCONFDIR)/thumbd/thumbd.ini
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5
	install -m 644 docs/thumbd.1 $(DESTDIR)$(MANDIR)/man1/thumbd.1
	install -m 644 docs/thumbd.ini.5 $(DESTDIR)$(MANDIR)/man5/thumbd.ini.5
	# systemd unit and logrotate file: package files, replaced on every install
	# (change the unit with a drop-in: systemctl edit thumbd)
	$(SUBST) config/thumbd.service >$(B)/thumbd.service
	$(SUBST) config/thumbd.logrotate >$(B)/thumbd.logrotate
	@! grep -n '@[A-Z_]*@' $(B)/thumbd.service $(B)/thumbd.logrotate || { echo "install: placeholder left" >&2; exit 1; }
	install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(LOGROTATEDIR)
	install -m 644 $(B)/thumbd.service $(DESTDIR)$(UNITDIR)/thumbd.service
	install -m 644 $(B)/thumbd.logrotate $(DESTDIR)$(LOGROTATEDIR)/thumbd

# The admin's $(SYSCONFDIR)/thumbd/thumbd.ini stays, like the state and logs.
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/thumbd $(DESTDIR)$(MANDIR)/man1/thumbd.1 \
	      $(DESTDIR)$(MANDIR)/man5/thumbd.ini.5 \
	      $(DESTDIR)$(SYSCONFDIR)/thumbd/thumbd.ini.example \
	      $(DESTDIR)$(UNITDIR)/thumbd.service $(DESTDIR)$(LOGROTATEDIR)/thumbd

clean:
	rm -rf build

# ---- fuzzing: libFuzzer targets for the decoders (clang; see fuzz/README.md) ----
# Separate from everything above: its own compiler, flags and build/fuzz dir.
#   make fuzz                                    build build/fuzz/fuzz_{jpeg,png,webp,exif}
#   make fuzz-run FUZZ_TARGET=fuzz_png [FUZZ_SECONDS=600]
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 600
FUZZ_TARGET  ?= fuzz_jpeg
FUZZ_MAXLEN  ?= 65536
FUZZ_TARGETS := fuzz_jpeg fuzz_png fuzz_webp fuzz_exif
FUZZ_SRCS    := src/bigmem.c src/img.c src/icc.c src/jpegio.c src/pngio.c src/webpio.c src/exif.c src/resample.c
FUZZ_CFLAGS  := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Iinclude $(WARN) \
                $(PKG_CFLAGS) -g -O1 -fno-omit-frame-pointer \
                -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined

.PHONY: fuzz fuzz-corpus fuzz-run
fuzz: $(patsubst %,build/fuzz/%,$(FUZZ_TARGETS))

build/fuzz/%: fuzz/%.c fuzz/fuzz_common.h $(FUZZ_SRCS) $(wildcard include/*.h)
	@mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_SRCS) $(PKG_LIBS) -lm

# Seeds: small files of the target's format from the shared corpus, the demo
# images and tests/fuzz-regress (fuzz/seed-corpus.py); campaign finds go to
# build/fuzz-corpus/<target>/ as well, so a rerun resumes where it stopped.
fuzz-corpus:
	@FUZZ_MAXLEN=$(FUZZ_MAXLEN) python3 fuzz/seed-corpus.py $(FUZZ_TARGETS)

fuzz-run: build/fuzz/$(FUZZ_TARGET) fuzz-corpus
	@mkdir -p build/fuzz-crash/$(FUZZ_TARGET)
	build/fuzz/$(FUZZ_TARGET) -max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_MAXLEN) \
	    -timeout=25 -rss_limit_mb=2048 -malloc_limit_mb=512 -print_final_stats=1 \
	    -artifact_prefix=build/fuzz-crash/$(FUZZ_TARGET)/ \
	    build/fuzz-corpus/$(FUZZ_TARGET)

-include $(OBJS:.o=.d) $(TBINS:=.d)

# ---- benchmarks: BENCH.md side by side (bench/), not part of `make test` ----
#   make bench            plain -O2 build, missing tools apt-get installed, corpus
#                         cached in $(BENCH_CACHE), one table, bench/RESULTS.md
#   BENCH_RUNS=5 make bench;  BENCH_SECTIONS=resize,quality make bench
BENCH_CACHE ?= $(if $(THUMBD_BENCH_CACHE),$(THUMBD_BENCH_CACHE),/var/tmp/thumbd-bench)

.PHONY: bench
bench: ensure-deps
	@$(MAKE) --no-print-directory SANITIZE= build/thumbd build/latency_httpd
	@sh bench/tools.sh
	@THUMBD_BENCH_CACHE=$(BENCH_CACHE) sh bench/corpus.sh >/dev/null
	@THUMBD_BENCH_CACHE=$(BENCH_CACHE) /usr/bin/python3 bench/run.py --thumbd build/thumbd \
	    --server build/latency_httpd --corpus $(BENCH_CACHE)/corpus --results bench/RESULTS.md
