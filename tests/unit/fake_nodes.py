"""The nodes of a cluster run, faked at the SSH boundary the status tests fake (tooling.job.status's
run_everywhere, tooling.job.cluster's run_command): node1 runs the command on this machine, so the real
shell command and parser read real status and summary files from a local run directory; every other node
answers as a node without rank 0 does, with its clock and no file.

`python -m tests.unit.fake_nodes ARGS` is `tooling ARGS` with these fakes in place (for a pseudo-terminal,
tests/unit/pty_run.py), and the watch's look every 0.2 s instead of every few seconds."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

from tooling.job import cluster, cluster_watch, status
from tooling.remote import RemoteResult, SshTarget

LOCAL_NODE = "node1"


def local_shell(target: SshTarget, command: str, timeout_s: float = 10.0) -> RemoteResult:
    """`command` run here as if on `target`."""
    done = subprocess.run(
        ["sh", "-c", command], capture_output=True, text=True, timeout=timeout_s, check=False
    )
    return RemoteResult(target.name, done.returncode, done.stdout, done.stderr)


def everywhere(targets: list[SshTarget], command: str, timeout_s: float = 10.0) -> dict[str, RemoteResult]:
    calls.append(command)
    return {
        t.name: local_shell(t, command, timeout_s)
        if t.name == LOCAL_NODE
        else RemoteResult(t.name, 0, f"{time.time()}\n{status.SEPARATOR}\n")
        for t in targets
    }


calls: list[str] = []  # every status command the nodes were sent, in order


def install(set_attribute: Callable[[Any, str, Any], None] = setattr) -> None:
    """Put the fakes in place (`set_attribute`: pytest's monkeypatch.setattr, or the builtin in a process
    of its own)."""
    set_attribute(status, "run_everywhere", everywhere)
    set_attribute(cluster, "run_command", local_shell)


if __name__ == "__main__":
    from tooling.cli import app

    install()
    cluster_watch.POLL_S = 0.2
    app()
