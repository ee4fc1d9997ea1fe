"""Run `tooling` in a pseudo-terminal, for what only happens on a terminal (the confirmation prompt, the
re-drawn `status --watch`): type an answer, or interrupt it like Ctrl-C, and read what it showed."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _read(master: int, until: float, wanted: str | None, seen: bytearray) -> None:
    import select

    while time.monotonic() < until:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                return
            if not chunk:
                return
            seen.extend(chunk)
            if wanted is not None and wanted.encode() in seen:
                return


def run_in_pty(
    args: list[str],
    *,
    answer: str | None = None,
    interrupt_after_s: float | None = None,
    wait_for: str | None = None,
    timeout_s: float = 60.0,
    module: str = "tooling.cli",
) -> tuple[int, str]:
    """`python -m module args` on a pseudo-terminal: type `answer` once `wait_for` shows (or send SIGINT
    `interrupt_after_s` after it shows); the exit code and everything it printed."""
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "200", "TERM": "xterm"}
    env.pop("CI", None)  # rich treats CI as a non-interactive terminal
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args], stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, env=env
    )
    os.close(slave)
    seen = bytearray()
    try:
        deadline = time.monotonic() + timeout_s
        if wait_for is not None:
            _read(master, deadline, wait_for, seen)
        if answer is not None:
            os.write(master, answer.encode() + b"\n")
        if interrupt_after_s is not None:
            _read(master, time.monotonic() + interrupt_after_s, None, seen)
            proc.send_signal(signal.SIGINT)
        while proc.poll() is None and time.monotonic() < deadline:
            _read(master, time.monotonic() + 0.2, None, seen)
        _read(master, time.monotonic() + 0.2, None, seen)
        return proc.wait(timeout=max(1.0, deadline - time.monotonic())), seen.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
