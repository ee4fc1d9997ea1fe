"""The warm start (ddp/warm_supervisor.py, ddp/warm_client.py, ddp/warm_pool.py) with real processes: the
supervisor starts the run's pool and an "agent" (torchrun's part), which starts launcher processes (`python
-m ddp.real_ddp_trainer`); each hands its rank to the pool, which forks it. The rank is a light stand-in
(tests/unit/warm_targets.py), so torch is never imported."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from ddp.warm_protocol import WarmStartError, private_directory, socket_path
from tests.process_waits import gone, wait_until

ROOT = Path(__file__).resolve().parents[2]

AGENT = """
import os, subprocess, sys
from pathlib import Path
out = Path(sys.argv[1])
(out / "agent.pid").write_text(str(os.getpid()))
launcher = subprocess.Popen(sys.argv[2:], stdout=open(out / "stdout", "w"), stderr=open(out / "stderr", "w"))
(out / "launcher.pid").write_text(str(launcher.pid))
(out / "launcher.rc").write_text(str(launcher.wait()))
"""


class Run:
    """One supervisor, its agent and the agent's launcher for one rank; `out` holds what they wrote."""

    def __init__(self, supervisor: subprocess.Popen[bytes], out: Path) -> None:
        self.supervisor = supervisor
        self.out = out

    def _pid(self, name: str) -> int:
        path = self.out / f"{name}.pid"
        # Written by the agent script as it goes: created, then filled.
        wait_until(lambda: path.exists() and path.read_text().strip() != "", 10, f"the {name} started")
        return int(path.read_text())

    def launcher_pid(self) -> int:
        return self._pid("launcher")

    def agent_pid(self) -> int:
        return self._pid("agent")

    def finish(self) -> tuple[int, str, str]:
        """The launcher's exit code and output; stderr has the supervisor's first."""
        self.supervisor.wait(timeout=60)
        rc = int((self.out / "launcher.rc").read_text())
        stderr = (self.out / "supervisor.stderr").read_text() + (self.out / "stderr").read_text()
        return rc, (self.out / "stdout").read_text(), stderr


def warm_env(runtime: Path) -> dict[str, str]:
    """The supervisor's environment, with what torchrun gives its workers and the light rank as target."""
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "XDG_RUNTIME_DIR": str(runtime),
        "TORCHELASTIC_RUN_ID": "warm-test",
        "DDP_WARM_POOL_TARGET": "tests.unit.warm_targets:main",
    }


def supervised(env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    """`command` (an agent) run to its end under the warm supervisor."""
    return subprocess.run(
        [sys.executable, "-m", "ddp.warm_supervisor", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def runtime() -> Iterator[Path]:
    """A short XDG_RUNTIME_DIR: a Unix socket's path must fit in 107 bytes, and pytest's are long."""
    path = Path(tempfile.mkdtemp(prefix="warm-"))  # mode 0700
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def warm(tmp_path: Path, runtime: Path) -> Iterator[Callable[..., Run]]:
    env = {**warm_env(runtime), "WARM_TEST_MARKER": "from the launcher"}
    supervisors: list[subprocess.Popen[bytes]] = []
    count = 0

    def start(*argv: str) -> Run:
        nonlocal count
        count += 1
        out = tmp_path / f"run{count}"
        out.mkdir()
        launcher = [sys.executable, "-m", "ddp.real_ddp_trainer", *argv]
        agent = [sys.executable, "-c", AGENT, str(out), *launcher]
        with open(out / "supervisor.stderr", "wb") as stderr:
            supervisors.append(
                subprocess.Popen(
                    [sys.executable, "-m", "ddp.warm_supervisor", *agent], env=env, cwd=out, stderr=stderr
                )
            )
        return Run(supervisors[-1], out)

    yield start
    for supervisor in supervisors:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
    # The pool leaves with its supervisor; whatever of this test is left is ended here.
    for process in psutil.process_iter(["cmdline"]):
        if any(str(runtime) in part for part in process.info["cmdline"] or []):
            process.kill()


def test_a_rank_gets_its_launchers_arguments_environment_and_streams(warm: Callable[..., Run]) -> None:
    run = warm("echo", "two words")
    rc, stdout, stderr = run.finish()
    assert rc == 0, stderr
    seen = json.loads(stdout)
    assert seen["argv"] == ["echo", "two words"]
    assert seen["marker"] == "from the launcher"
    assert seen["cwd"] == str(run.out)
    assert seen["pid"] != run.launcher_pid()
    assert seen["sid"] == seen["pid"]  # a session of its own, as torchrun gives its workers
    assert "warm start" not in stderr  # no fallback to a cold start


@pytest.mark.parametrize(
    ("argv", "expected"),
    [(("exit", "3"), 3), (("exit", "0"), 0), (("die-by", "9"), -9), (("die-by", "15"), -15)],
    ids=["exit 3", "exit 0", "SIGKILL", "SIGTERM"],
)
def test_the_launcher_ends_as_its_rank_ended(
    warm: Callable[..., Run], argv: tuple[str, str], expected: int
) -> None:
    rc, _, stderr = warm(*argv).finish()
    assert rc == expected, stderr


def test_without_pidfds_the_pool_still_sees_its_ranks_end(tmp_path: Path, runtime: Path) -> None:
    """A kernel before 5.3 has no pidfds: nothing wakes the pool when a rank exits, so it polls. Every
    process of the run here starts without os.pidfd_open (a sitecustomize on the path removes it)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import os\ndel os.pidfd_open\n")
    out = tmp_path / "run"
    out.mkdir()
    env = {**warm_env(runtime), "PYTHONPATH": f"{site}{os.pathsep}{ROOT}"}
    launcher = [sys.executable, "-m", "ddp.real_ddp_trainer", "exit", "3"]
    with open(out / "supervisor.stderr", "wb") as stderr:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "ddp.warm_supervisor", sys.executable, "-c", AGENT, str(out), *launcher],
            env=env,
            cwd=out,
            stderr=stderr,
        )
    try:
        rc, _, stderr_text = Run(supervisor, out).finish()
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
    assert rc == 3, stderr_text
    assert "warm start" not in stderr_text  # the rank was forked by the pool, not started cold


def test_a_signal_to_the_launcher_reaches_the_rank(warm: Callable[..., Run], tmp_path: Path) -> None:
    run = warm("wait", str(tmp_path))
    wait_until((tmp_path / "pid").exists, 30, "the rank started")
    os.kill(run.launcher_pid(), signal.SIGTERM)  # what torchrun sends to stop its workers
    rc, _, stderr = run.finish()
    assert rc == 15, stderr  # the rank's SIGTERM handler exits with 15


def test_a_killed_launcher_takes_its_rank_with_it(warm: Callable[..., Run], tmp_path: Path) -> None:
    run = warm("wait", str(tmp_path))
    wait_until((tmp_path / "pid").exists, 30, "the rank started")
    rank = int((tmp_path / "pid").read_text())
    launcher = run.launcher_pid()
    os.kill(launcher, signal.SIGKILL)
    wait_until(lambda: gone(rank), 10, f"the rank (pid {rank}) stopped with its launcher")
    last_words = (tmp_path / "last_words").read_text()
    assert last_words.startswith(f"the process torchrun started for this rank (pid {launcher}) is gone")


def test_an_agent_killed_takes_its_launchers_ranks_and_pool(
    warm: Callable[..., Run], tmp_path: Path, runtime: Path
) -> None:
    """torchrun's agent SIGKILLed (the OOM killer): its launcher processes notice (their orphan guard),
    their ranks' lifelines close, and the supervisor ends the pool and exits as the agent did."""
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    runs = [warm("wait", str(first)), warm("wait", str(second))]
    wait_until(lambda: (first / "pid").exists() and (second / "pid").exists(), 30, "both ranks started")
    ranks = [int((d / "pid").read_text()) for d in (first, second)]
    pools = {psutil.Process(rank).ppid() for rank in ranks}
    launchers = {run.launcher_pid() for run in runs}
    assert not pools & launchers  # each rank's parent is a pool, never its launcher
    sockets = runtime / "ddp-warm"
    assert len(list(sockets.glob("*.sock"))) == 2  # one pool per agent
    for run in runs:
        os.kill(run.agent_pid(), signal.SIGKILL)
    for run in runs:
        assert run.supervisor.wait(timeout=15) == -signal.SIGKILL
    wait_until(lambda: all(gone(pid) for pid in [*launchers, *ranks, *pools]), 15, "all of them gone")
    wait_until(lambda: not list(sockets.glob("*.sock")), 5, "the pools' sockets removed")


def test_ranks_launched_by_one_agent_share_its_pool(runtime: Path) -> None:
    """Several launchers of one agent (a node's local ranks) come to the same pool, started once."""
    script = """
import json, os, subprocess, sys
children = [subprocess.Popen([sys.executable, "-m", "ddp.real_ddp_trainer", "echo"], stdout=subprocess.PIPE)
            for _ in range(3)]
print(json.dumps([json.loads(c.communicate()[0]) for c in children]))
"""
    done = supervised(warm_env(runtime), sys.executable, "-c", script)
    ranks = json.loads(done.stdout)
    assert len({rank["pid"] for rank in ranks}) == 3
    assert len({rank["ppid"] for rank in ranks}) == 1  # one pool, started once for the three
    logs = list((runtime / "ddp-warm").glob("*.log"))
    assert not logs or all(not log.read_text() for log in logs), [log.read_text() for log in logs]
    assert not list((runtime / "ddp-warm").glob("*.sock"))  # the pool was gone before its supervisor


def test_a_directory_others_could_enter_is_refused(tmp_path: Path) -> None:
    loose = tmp_path / "ddp-warm"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    with pytest.raises(WarmStartError, match="mode 0700"):
        private_directory({"XDG_RUNTIME_DIR": str(tmp_path)})
    loose.rmdir()
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    loose.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(WarmStartError, match="not a directory"):
        private_directory({"XDG_RUNTIME_DIR": str(tmp_path)})


def test_without_a_private_directory_the_rank_starts_cold(
    warm: Callable[..., Run], tmp_path: Path, runtime: Path
) -> None:
    (runtime / "ddp-warm").mkdir(mode=0o777)
    (runtime / "ddp-warm").chmod(0o777)
    rc, _, stderr = warm("--config", str(tmp_path / "missing.yaml"), "--check").finish()
    assert "warm start unavailable" in stderr and "mode 0700" in stderr, stderr
    assert "every rank starts cold" in stderr  # said once, by the supervisor
    # The trainer itself ran here: it names the missing config.
    assert rc == 2 and "missing.yaml" in stderr, stderr


def test_a_socket_path_too_long_is_named() -> None:
    with pytest.raises(WarmStartError, match="XDG_RUNTIME_DIR at a shorter directory"):
        socket_path(Path("/run/" + "x" * 100), "run-1", 1234)
    assert len(bytes(socket_path(Path("/run/user/1000/ddp-warm"), "r" * 500, 1234))) <= 107 - 12


def test_nothing_of_the_run_outlives_the_supervisor(runtime: Path) -> None:
    """Under systemd the supervisor is the unit's main process: once it has exited, no pool or rank of the
    run may be left in the unit (a leftover pool held a sandbox unit `deactivating` for its whole stop
    timeout, then failed it). The agent exits by itself here, as torchrun does after a completed run."""
    agent = """
import subprocess, sys
launcher = subprocess.Popen([sys.executable, "-m", "ddp.real_ddp_trainer", "echo"], stdout=subprocess.PIPE)
print(launcher.communicate()[0].decode().strip())
"""
    done = supervised(warm_env(runtime), sys.executable, "-c", agent)
    assert done.returncode == 0, done.stderr
    rank = json.loads(done.stdout)
    assert not psutil.pid_exists(rank["ppid"]), "the pool outlived its supervisor"
    assert not psutil.pid_exists(rank["pid"])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_supervisor_passes_signals_to_torchrun_and_exits_as_it_did(
    warm: Callable[..., Run], tmp_path: Path, signum: int
) -> None:
    """systemd's SIGTERM (KillMode=mixed) reaches the main process only: the supervisor passes it on to the
    agent (the stand-in has no handler, so its launcher is not told) and leaves as the agent did."""
    run = warm("wait", str(tmp_path))
    wait_until((tmp_path / "pid").exists, 30, "the rank started")
    rank = int((tmp_path / "pid").read_text())
    run.supervisor.send_signal(signum)
    assert run.supervisor.wait(timeout=15) == -signum
    wait_until(lambda: gone(rank), 15, "the rank stopped once its launcher's agent was gone")


def test_a_pool_that_cannot_start_leaves_every_rank_cold(
    warm_cold_env: dict[str, str], tmp_path: Path
) -> None:
    """The pool's target fails to import: the launcher names why (the pool's log) and starts the rank here."""
    missing = str(tmp_path / "missing.yaml")
    done = supervised(
        warm_cold_env, sys.executable, "-m", "ddp.real_ddp_trainer", "--config", missing, "--check"
    )
    assert "warm start failed" in done.stderr or "warm start unavailable" in done.stderr, done.stderr
    assert "no_such_module" in done.stderr, done.stderr
    assert done.returncode == 2 and "missing.yaml" in done.stderr, done.stderr


@pytest.fixture
def warm_cold_env(runtime: Path) -> dict[str, str]:
    return {**warm_env(runtime), "DDP_WARM_POOL_TARGET": "no_such_module:main"}
