"""ddp/cpu_threads.py: a process that imported torch under one OMP_NUM_THREADS (as the warm pool does, with
one thread) computes with what its launcher's environment asks, each in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ddp.cpu_threads import requested_threads

ROOT = Path(__file__).resolve().parents[2]

FORKED_RANK = """
import os, sys
import torch
from ddp.cpu_threads import apply_launcher_threads
assert torch.get_num_threads() == 1, torch.get_num_threads()  # imported as in the pool
launcher = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
if sys.argv[1] != "unset":
    launcher["OMP_NUM_THREADS"] = sys.argv[1]
print(apply_launcher_threads(launcher), torch.get_num_threads())
"""


@pytest.mark.parametrize(
    ("launcher", "expected"),
    [("1", 1), ("2", 2), ("unset", len(os.sched_getaffinity(0))), ("zero", len(os.sched_getaffinity(0)))],
)
def test_a_forked_rank_computes_with_its_launchers_thread_count(launcher: str, expected: int) -> None:
    ran = subprocess.run(
        [sys.executable, "-c", FORKED_RANK, launcher],
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == [str(expected), str(expected)]


@pytest.mark.parametrize(
    ("value", "expected"), [("4", 4), (" 2 ", 2), ("0", None), ("-1", None), ("many", None), ("", None)]
)
def test_only_a_positive_count_is_a_request(value: str, expected: int | None) -> None:
    assert requested_threads({"OMP_NUM_THREADS": value}) == expected
    assert requested_threads({}) is None
