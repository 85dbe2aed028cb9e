#!/bin/sh
# Runs every unit test binary and the integration suite, adds up their
# closing "N passed, N failed" lines and prints the total as the last line.
# Exit status is non-zero when anything failed or a suite did not report
# (a crash must not pass for a success).
: "${THUMBD:?THUMBD must point at the binary under test}"
: "${TESTBIN:?TESTBIN must point at the unit test binaries}"
export THUMBD
# sanitizer builds: any report fails loudly, with an exit status no test expects
export ASAN_OPTIONS="${ASAN_OPTIONS:-exitcode=86:detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:exitcode=86:print_stacktrace=1}"
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:exitcode=86:second_deadlock_stack=1}"
cd "$(dirname "$0")/.." || exit 2
pass=0 fail=0 broken=0
tally() {   # $1 = suite name, $2 = its output file, $3 = its exit status
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$2" | tail -n 1)
	if [ -z "$line" ]; then
		echo "$1: no result line (exit $3)"; broken=$((broken + 1)); fail=$((fail + 1)); return
	fi
	p=${line%% passed*}; f=${line#*passed, }; f=${f%% failed}
	pass=$((pass + p)); fail=$((fail + f))
	if [ "$3" != 0 ] && [ "$f" = 0 ]; then echo "$1: exit $3 with no failed check"; fail=$((fail + 1)); fi
	echo "$1: $line"
}
out=$(mktemp); trap 'rm -f "$out"' EXIT
for t in "$TESTBIN"/test_*; do
	[ -x "$t" ] || continue
	name=$(basename "$t")
	"$t" >"$out" 2>&1; rc=$?
	grep -v -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | sed "s/^/  /"
	tally "$name" "$out" "$rc"
done
python3 tests/integration/run.py >"$out" 2>&1; rc=$?
grep -v -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | sed "s/^/  /"
tally integration "$out" "$rc"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
