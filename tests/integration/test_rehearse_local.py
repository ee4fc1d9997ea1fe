"""A real `tooling rehearse --local` on a terminal and off it: the step bar only on a terminal, torchrun's
banner only with --verbose, and Ctrl-C that stops the ranks, says where the partial run is and prints the
command that resumes it (which does resume from the checkpoint)."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tooling.cli import app

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TINY = [
    "workload.input_dim=16",
    "workload.hidden_dim=16",
    "workload.num_layers=1",
    "workload.num_samples=512",
    "schedule.warmup_steps=0",
    "metrics.enabled=false",  # no ports to collide with other runs on this machine
]
# torchrun's start-up banner: the OMP_NUM_THREADS notice and its row of stars.
BANNER = re.compile(r"\*{20,}|Setting OMP_NUM_THREADS")


@pytest.fixture
def two_process_phases(tmp_path: Path) -> Path:
    """Phase 1 with 2 processes instead of 4: this machine has 2 cores."""
    text = (REPO / "tooling" / "phases.yml").read_text()
    site = tmp_path / "phases.yml"
    site.write_text(text.replace("nproc_per_node: 4", "nproc_per_node: 2", 1))
    return site


def _command(phases: Path, runs: Path, *extra: str) -> list[str]:
    sets = [arg for item in TINY for arg in ("--set", item)]
    return [sys.executable, "-m", "tooling.cli", "--phases", str(phases), "rehearse", "--local",
            "--runs-dir", str(runs), *sets, *extra]  # fmt: skip


def _env(tmp_path: Path) -> dict[str, str]:
    # OMP_NUM_THREADS left unset: torchrun then prints its banner (and sets 1 per rank itself).
    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    return {**env, "TOOLING_HOME": str(tmp_path / "home"), "COLUMNS": "120"}


class Terminal:
    """A command on a pseudo-terminal, its output collected as it comes."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        primary, secondary = pty.openpty()
        self.proc = subprocess.Popen(
            command, stdin=secondary, stdout=secondary, stderr=secondary, env=env, cwd=REPO
        )
        os.close(secondary)
        self.fd = primary
        self.output = ""

    def read_until(self, done: object, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not (callable(done) and done()):
            ready, _, _ = select.select([self.fd], [], [], 0.2)
            if ready:
                try:
                    self.output += os.read(self.fd, 65536).decode("utf-8", "replace")
                except OSError:  # the other side closed: the command ended
                    break
        return self.output

    def finish(self, timeout_s: float) -> int:
        self.read_until(lambda: self.proc.poll() is not None, timeout_s)
        self.read_until(None, 0.5)
        os.close(self.fd)
        return self.proc.wait(timeout=10)


def test_bar_on_a_terminal_without_the_banner(tmp_path: Path, two_process_phases: Path) -> None:
    term = Terminal(_command(two_process_phases, tmp_path / "runs", "--steps", "40"), _env(tmp_path))
    assert term.finish(60) == 0, term.output
    assert "run directory:" in term.output
    assert "ETA" in term.output and "samples/s" in term.output and "40/40" in term.output
    assert not BANNER.search(term.output)
    assert "next: tooling gate --phase 1 --run" in term.output
    # Hidden, not lost: the banner is in the run's log.
    (log,) = (tmp_path / "runs").glob("*/torchrun.log")
    assert BANNER.search(log.read_text())


def test_verbose_shows_torchrun_output(tmp_path: Path, two_process_phases: Path) -> None:
    proc = subprocess.run(
        _command(two_process_phases, tmp_path / "runs", "--steps", "10", "--verbose"),
        env=_env(tmp_path), cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert BANNER.search(proc.stdout) and "completed at step 10" in proc.stdout


def test_no_bar_off_a_terminal_and_json(tmp_path: Path, two_process_phases: Path) -> None:
    proc = subprocess.run(
        _command(two_process_phases, tmp_path / "runs", "--steps", "20", "--json"),
        env=_env(tmp_path), cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[" not in proc.stdout and "\x1b[" not in proc.stderr
    document = json.loads(proc.stdout)
    assert document["exit_status"] == 0 and document["summary"]["steps"] == 20
    assert Path(document["run_dir"]).is_dir()
    assert "run directory:" in proc.stderr


def test_ctrl_c_says_where_the_run_is_and_how_to_resume(tmp_path: Path, two_process_phases: Path) -> None:
    runs = tmp_path / "runs"
    command = _command(two_process_phases, runs, "--steps", "400", "--set", "checkpoint.every_steps=10")
    term = Terminal(command, _env(tmp_path))
    # Waits on the checkpoint itself, not a fixed time: Ctrl-C once a partial run has something to resume.
    checkpoints = lambda: any(runs.glob("*/checkpoints/step-*.pt"))  # noqa: E731
    term.read_until(checkpoints, 45)
    assert checkpoints(), term.output
    term.proc.send_signal(signal.SIGINT)
    assert term.finish(60) == 130, term.output
    run_dir = Path(re.search(r"partial run: (\S+)", term.output)[1])  # type: ignore[index]
    assert run_dir.is_dir()
    assert re.search(r"last checkpoint: step \d+", term.output), term.output
    resume = re.search(r"resume with: (.+)", term.output)[1].strip()  # type: ignore[index]
    assert f"--resume {run_dir.name}" in resume

    # The printed command, run as printed (with a shorter run so it fits here), continues the run.
    args = shlex.split(resume)
    args[args.index("--steps") + 1] = "60"
    resumed = subprocess.run(
        [sys.executable, "-m", "tooling.cli", "--phases", str(two_process_phases), *args[1:], "--json"],
        env=_env(tmp_path), cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)["summary"]
    assert summary["checkpoints"]["resumed_from_step"] is not None


def test_steps_zero_names_steps() -> None:
    result = CliRunner().invoke(app, ["rehearse", "--local", "--steps", "0"])
    assert result.exit_code == 2
    assert "--steps" in result.output and "max_steps" not in result.output


def test_a_failed_run_shows_why(tmp_path: Path, two_process_phases: Path) -> None:
    unwritable = "/proc/no-such-checkpoints"
    extra = ("--steps", "10", "--set", f"checkpoint.dir={unwritable}", "--json")
    proc = subprocess.run(
        _command(two_process_phases, tmp_path / "runs", *extra),
        env=_env(tmp_path), cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["exit_status"] == 1
    # The ranks' own explanation, not only torchrun's verdict at the end of its output (beside the JSON).
    assert f"checkpoint.dir: cannot create {unwritable}" in proc.stderr
