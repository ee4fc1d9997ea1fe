"""Where a test run's minutes went, from its JUnit report (scripts/run-tests.sh writes one):

    python scripts/test_durations.py REPORT.xml [--top 25]

Per xdist worker the sum of its tests' times (the run takes as long as its longest worker: the shared
cluster's tests run on one worker in order, everything else on the other), per test module the sum and
count, and the slowest tests. The worker comes from each test's `worker` property (tests/conftest.py).
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path


def durations(report: Path) -> list[tuple[str, str, str, float]]:
    """(worker, module, test name, seconds) of every test case in `report`."""
    try:
        root = ET.parse(report).getroot()
    except (OSError, ET.ParseError) as exc:
        raise SystemExit(f"{report}: not a readable JUnit report ({exc})") from None
    cases = []
    for case in root.iter("testcase"):
        worker = next((p.get("value", "?") for p in case.iter("property") if p.get("name") == "worker"), "?")
        module = (case.get("classname") or "?").rsplit(".", 1)[-1]
        cases.append((worker, module, case.get("name") or "?", float(case.get("time") or 0.0)))
    return cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("report", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    cases = durations(args.report)
    if not cases:
        print(f"{args.report}: no test cases", file=sys.stderr)
        return 1
    workers: Counter[str] = Counter()
    modules: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for worker, module, _, seconds in cases:
        workers[worker] += seconds
        modules[module] += seconds
        counts[module] += 1
    for worker, seconds in sorted(workers.items()):
        print(f"worker {worker}: {seconds / 60:.1f} min of tests")
    print(f"modules, slowest first (top {args.top}):")
    for module, seconds in modules.most_common(args.top):
        print(f"  {seconds:7.1f} s {counts[module]:4d} tests  {module}")
    print(f"tests, slowest first (top {args.top}):")
    for worker, module, name, seconds in sorted(cases, key=lambda c: -c[3])[: args.top]:
        print(f"  {seconds:7.1f} s  [{worker}] {module}::{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
