"""scripts/test_durations.py on a JUnit report written by a real pytest run of two tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_report_is_summed_per_worker_module_and_test(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    (tmp_path / "test_pair.py").write_text(
        "import time\n\ndef test_slow():\n    time.sleep(0.3)\n\ndef test_quick():\n    pass\n"
    )
    report = tmp_path / "junit.xml"
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", "."],
        cwd=tmp_path, capture_output=True, text=True, check=False,
        # Not an xdist worker, even where this test runs in one: the tests ran in the "main" process.
        env={k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")},
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    shown = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "test_durations.py"), str(report), "--top", "1"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    worker = next(line for line in lines if line.startswith("worker main: "))
    assert worker.endswith("min of tests")
    assert "2 tests  test_pair" in shown.stdout
    slowest = lines[lines.index("tests, slowest first (top 1):") + 1]
    assert (
        slowest.endswith("[main] test_pair::test_slow")
        and "test_quick" not in shown.stdout.split("tests, ")[-1]
    )


def test_a_file_that_is_not_a_report_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "junit.xml"
    bad.write_text("not xml")
    shown = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "test_durations.py"), str(bad)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert shown.returncode == 1 and f"{bad}: not a readable JUnit report" in shown.stderr
