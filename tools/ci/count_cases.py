#!/usr/bin/env python3
"""Counts test cases (not targets) for one `bazel test` run.

Reads the run's log for its per-target result lines and, for each target,
the test.xml Bazel kept for it under the testlogs directory. Prints
"PASSED FAILED SKIPPED" as three numbers.

A target without a test.xml (it did not build, or never ran) counts as one
failed case; a target Bazel reports as failed whose XML shows no failing case
(it crashed or timed out after its last case) adds one failed case, so a red
target can never be counted green.

    count_cases.py LOG TESTLOGS_DIR
"""
import re
import sys
import xml.etree.ElementTree as ET

RESULT = re.compile(
    r"^(//[^ :]*):(\S+)\s+(?:\(cached\) )?"
    r"(PASSED|FAILED TO BUILD|FAILED|TIMEOUT|FLAKY|NO STATUS|INCOMPLETE)")


def count_xml(path):
    """(passed, failed, skipped) from one JUnit/GoogleTest XML file."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    passed = failed = skipped = 0
    for suite in suites:
        for case in suite.iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                failed += 1
            elif (case.get("result") == "skipped" or case.get("status") == "notrun"
                  or case.find("skipped") is not None):
                skipped += 1
            else:
                passed += 1
    return passed, failed, skipped


def main(log_path, testlogs):
    passed = failed = skipped = 0
    seen = set()
    with open(log_path, errors="replace") as log:
        for line in log:
            m = RESULT.match(line)
            if not m or (m.group(1), m.group(2)) in seen:
                continue
            seen.add((m.group(1), m.group(2)))
            package, name, status = m.group(1)[2:], m.group(2), m.group(3)
            path = f"{testlogs}/{package}/{name}/test.xml"
            try:
                p, f, s = count_xml(path)
            except (OSError, ET.ParseError):
                p, f, s = (1, 0, 0) if status == "PASSED" else (0, 1, 0)
            if status not in ("PASSED", "FLAKY") and f == 0:
                f = 1
            passed, failed, skipped = passed + p, failed + f, skipped + s
    print(passed, failed, skipped)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
