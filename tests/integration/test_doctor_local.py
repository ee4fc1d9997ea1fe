"""`tooling doctor --local` on a real 2-rank run on this machine: healthy names nobody; a SIGSTOPped rank is
named, as stopped, within 60 s; a rendezvous name that does not resolve is reported by name."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_trainer_orphans import statuses, wait_until
from tests.integration.trainer_harness import ROOT, run_dir, torchrun_command, trainer_env, write_config

pytestmark = pytest.mark.slow

DETECT_WITHIN_S = 60.0
# `.invalid` is reserved (RFC 2606): it never resolves anywhere.
UNRESOLVABLE = "ddp-store.invalid:29400"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A 2-rank run that keeps training until the module is done with it."""
    tmp = tmp_path_factory.mktemp("doctor")
    config = write_config(
        tmp,
        "doctor",
        {
            "training": {"max_steps": 10_000_000},
            "checkpoint": {"enabled": False},
            # Two ranks on a shared 2-core machine differ by chance: no straggler flag in the healthy case.
            "metrics": {"status_every_steps": 5, "straggler_margin": 10},
        },
    )
    directory = run_dir(tmp, "doctor")
    with (tmp / "torchrun.log").open("wb") as log:
        job = subprocess.Popen(
            torchrun_command(config, 2),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=trainer_env(),
            cwd=tmp,
            start_new_session=True,
        )
    try:
        wait_until(
            lambda: (
                all(s.get("step", 0) > 0 for s in statuses(directory).values())
                and len(statuses(directory)) == 2
            ),
            120,
            "both ranks training",
        )
        yield directory
    finally:
        for s in statuses(directory).values():  # a rank left stopped would never see the SIGTERM
            with contextlib.suppress(ProcessLookupError):
                os.kill(s["pid"], signal.SIGCONT)
        os.killpg(job.pid, signal.SIGTERM)
        try:
            job.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()


def doctor(directory: Path, home: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    env = {**os.environ, "TOOLING_HOME": str(home), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "tooling.cli", "doctor", "--local", "--run", str(directory), "--json", *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=DETECT_WITHIN_S * 2,
        check=False,
    )
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def test_a_healthy_run_is_healthy(running: Path, tmp_path: Path) -> None:
    code, report = doctor(running, tmp_path)
    assert (code, report["healthy"]) == (0, True), report["findings"]
    assert Path(report["bundle"]).is_file()


def test_a_rendezvous_name_that_does_not_resolve_is_reported_by_name(running: Path, tmp_path: Path) -> None:
    code, report = doctor(running, tmp_path, "--rendezvous", UNRESOLVABLE)
    assert code == 1
    (finding,) = report["findings"]
    assert (finding["kind"], finding["rank"], finding["host"]) == ("unreachable", None, "ddp-store.invalid")
    assert "does not resolve" in finding["evidence"]


def test_a_stopped_rank_is_named_within_a_minute(running: Path, tmp_path: Path) -> None:
    pid = statuses(running)[1]["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        code, report = doctor(running, tmp_path)
        took = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGCONT)
    print(f"stopped rank named in {took:.1f} s")
    assert took < DETECT_WITHIN_S
    assert code == 1 and not report["healthy"]
    named = [f for f in report["findings"] if f["rank"] == 1]
    assert named and named[0]["kind"] == "hang" and named[0]["host"] == "localhost"
    assert f"process {pid} is stopped (state T" in named[0]["evidence"]
    others = [f for f in report["findings"] if f["rank"] != 1]
    assert all("waiting for rank 1 (stopped)" in f["evidence"] for f in others), others
    with tarfile.open(report["bundle"]) as bundle:
        names = bundle.getnames()
    assert any(n.endswith("/findings.json") for n in names)
    assert any(n.endswith("/localhost/evidence.json") for n in names)
