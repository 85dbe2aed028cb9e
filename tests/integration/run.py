#!/usr/bin/env python3
"""
Integration test runner for thumbd.  Standard library only.

    THUMBD=build/thumbd python3 tests/integration/run.py [-v] [FILTER...]

Discovers tests/integration/test_*.py, runs every function named test_* (in
source order) with one shared `t`:

    t.check(cond, message)   counts one check; prints message when cond is false
    t.eq(a, b, message)      counts one check; a == b, prints both when not

A test function that raises counts as one failure (traceback printed) and the
run continues; one that makes no check at all counts as a failure too (a test
that cannot fail is a defect).  FILTER words select tests whose
"module.function" contains one of them.  The last line is always
"N passed, N failed"; the exit status is 1 when anything failed.
"""

import importlib
import inspect
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))


class T:
    def __init__(self, verbose=False):
        self.passed = 0
        self.failed = 0
        self.current = "?"
        self.verbose = verbose
        self.failures = []

    def check(self, cond, message):
        if cond:
            self.passed += 1
            if self.verbose:
                print("  ok    %s: %s" % (self.current, message), flush=True)
            return True
        self.failed += 1
        line = "FAIL  %s: %s" % (self.current, message)
        self.failures.append(line)
        print(line, flush=True)
        return False

    def eq(self, a, b, message):
        if a == b:
            return self.check(True, message)
        return self.check(False, "%s: got %r, expected %r" % (message, a, b))

    def fail(self, message):
        return self.check(False, message)


def discover(filters):
    sys.path.insert(0, HERE)
    sys.path.insert(0, os.path.dirname(HERE))          # tests/ (httpd.py)
    tests = []
    for fn in sorted(os.listdir(HERE)):
        if not (fn.startswith("test_") and fn.endswith(".py")):
            continue
        modname = fn[:-3]
        try:
            mod = importlib.import_module(modname)
        except Exception:
            tests.append((modname + ".<import>", None, traceback.format_exc()))
            continue
        funcs = [(f.__code__.co_firstlineno, name, f)
                 for name, f in vars(mod).items()
                 if name.startswith("test_") and inspect.isfunction(f)
                 and f.__module__ == mod.__name__]
        for _, name, f in sorted(funcs):
            tests.append(("%s.%s" % (modname, name), f, None))
    if filters:
        tests = [x for x in tests if any(w in x[0] for w in filters)]
    return tests


def main(argv):
    verbose = "-v" in argv
    filters = [a for a in argv if a != "-v"]
    t = T(verbose)
    tests = discover(filters)
    if not tests:
        t.fail("no tests found in %s" % HERE)
    t0 = time.monotonic()
    for name, fn, import_error in tests:
        t.current = name
        if fn is None:
            t.fail("module failed to import:\n" + import_error)
            continue
        before = t.passed + t.failed
        start = time.monotonic()
        print("-- %s" % name, flush=True)
        try:
            fn(t)
        except Exception:
            t.fail("raised:\n" + traceback.format_exc().rstrip())
        if t.passed + t.failed == before:
            t.fail("made no check")
        print("   %s: %.1f s" % (name, time.monotonic() - start), flush=True)
    print("integration: %d tests in %.1f s" % (len(tests), time.monotonic() - t0))
    if t.failures:
        print("failed checks:")
        for line in t.failures:
            print("  " + line.split("\n", 1)[0])
    print("%d passed, %d failed" % (t.passed, t.failed), flush=True)
    return 1 if t.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
