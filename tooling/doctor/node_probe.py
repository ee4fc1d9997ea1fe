"""What `tooling doctor` gathers on one machine, as one JSON document on stdout: the ranks' status files, each
rank's and its torchrun agent's process state and py-spy stack, the run's stack files and the relevant log
or journal lines, and whether the rendezvous endpoint resolves and accepts a connection.

Standard library only: the same file runs locally and, sent over SSH, with a node's Python. It runs as the
connecting user and opens run-directory files without following links: whoever owns the run directory
cannot point the collector at another file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PY_SPY_TIMEOUT_S = 15.0
TAIL_BYTES = 64 * 1024
JOURNAL_LINES = 200


def read_no_follow(path: Path, limit: int = TAIL_BYTES) -> str | None:
    """The last `limit` bytes of a regular file, never through a symbolic link; None when unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None
        handle.seek(max(0, info.st_size - limit))
        return handle.read().decode("utf-8", "replace")


def plain_dir_entries(directory: Path, prefix: str, suffix: str) -> list[Path]:
    """Regular files `prefix*suffix` in a real directory (a link in its place is not followed)."""
    try:
        if not stat.S_ISDIR(os.lstat(directory).st_mode):
            return []
        with os.scandir(directory) as entries:
            names = [e.name for e in entries if e.is_file(follow_symlinks=False)]
    except OSError:
        return []
    return [directory / n for n in sorted(names) if n.startswith(prefix) and n.endswith(suffix)]


def owner(path: str | Path) -> int | None:
    try:
        return os.lstat(path).st_uid
    except OSError:
        return None


def process_state(pid: int) -> tuple[str | None, int | None]:
    """(state letter from /proc/PID/stat, parent pid), or (None, None) when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None, None
    fields = text.rpartition(")")[2].split()  # the command name may hold spaces and parentheses
    return fields[0], int(fields[1])


def py_spy_binary() -> str | None:
    return shutil.which("py-spy") or next(
        (str(p) for p in [Path(sys.executable).parent / "py-spy"] if p.exists()), None
    )


def stack_of(pid: int, py_spy: str | None) -> dict[str, Any]:
    """py-spy's dump of `pid` (--nonblocking: the training process is never paused), or why there is none."""
    if py_spy is None:
        return {"stack": None, "stack_error": "py-spy is not installed here"}
    try:
        done = subprocess.run(
            [py_spy, "dump", "--nonblocking", "--pid", str(pid)],
            capture_output=True,
            text=True,
            timeout=PY_SPY_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"stack": None, "stack_error": f"py-spy did not answer within {PY_SPY_TIMEOUT_S:g} s"}
    except OSError as exc:
        return {"stack": None, "stack_error": f"py-spy could not run: {exc}"}
    if done.returncode != 0:
        reason = (done.stderr.strip() or done.stdout.strip())[-400:]
        return {"stack": None, "stack_error": f"py-spy could not attach (exit {done.returncode}): {reason}"}
    return {"stack": done.stdout, "stack_error": None}


def endpoint_check(endpoint: str, timeout_s: float = 3.0) -> dict[str, Any]:
    """Does host:port resolve here, and does it accept a TCP connection?"""
    host, _, port_text = endpoint.rpartition(":")
    # "failed": which step failed (parse, resolve, connect): a connect that fails from one node only is that
    # node's link, not the endpoint.
    result: dict[str, Any] = {"endpoint": endpoint, "host": host, "error": None, "failed": None}
    try:
        port = int(port_text)
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except ValueError:
        result.update(error=f"{endpoint!r} is not host:port", failed="parse")
        return result
    except socket.gaierror as exc:
        result.update(error=f"name {host!r} does not resolve: {exc.strerror}", failed="resolve")
        return result
    family, kind, proto, _, address = addresses[0]
    try:
        with socket.socket(family, kind, proto) as sock:
            sock.settimeout(timeout_s)
            sock.connect(address)
    except OSError as exc:
        result.update(
            error=f"{host}:{port} resolves to {address[0]} but does not connect: {exc}", failed="connect"
        )
    return result


def journal(unit: str, since: str) -> str:
    try:
        done = subprocess.run(
            [
                "journalctl",
                "-u",
                unit,
                "--since",
                since,
                "-n",
                str(JOURNAL_LINES),
                "--no-pager",
                "-o",
                "short-iso",
            ],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"(journalctl failed: {exc})"
    return (
        done.stdout if done.returncode == 0 else f"(journalctl exit {done.returncode}: {done.stderr.strip()})"
    )


def collect(run_dir: Path, unit: str | None, since: str, rendezvous: str | None) -> dict[str, Any]:
    py_spy = py_spy_binary()
    ranks = []
    agents: dict[int, dict[str, Any]] = {}
    for path in plain_dir_entries(run_dir / "status", "rank", ".json"):
        text = read_no_follow(path)
        try:
            status = json.loads(text or "")
        except ValueError:
            continue  # mid-rename: skipped, like tooling status does
        pid = status.get("pid")
        state, parent = process_state(pid) if isinstance(pid, int) and pid > 0 else (None, None)
        process: dict[str, Any] = {"state": state}
        if state is not None and owner(f"/proc/{pid}") != owner(path):
            # The pid comes from a file the run's account writes: only its own processes are dumped.
            process.update(stack=None, stack_error=f"process {pid} is not the run's user's: not dumped")
        elif state is not None:
            process.update(stack_of(pid, py_spy))
            # The agent is the parent of the process torchrun started: the rank itself, or with the warm
            # start its launcher (the rank's own parent is then the node's warm pool).
            launcher = status.get("launcher_pid")
            if isinstance(launcher, int) and launcher > 0 and launcher != pid:
                parent = process_state(launcher)[1] if owner(f"/proc/{launcher}") == owner(path) else None
            if parent is not None and parent not in agents and owner(f"/proc/{parent}") == owner(path):
                agent_state, _ = process_state(parent)
                agents[parent] = {"pid": parent, "state": agent_state, **stack_of(parent, py_spy)}
        ranks.append({**status, "process": process})
    logs = run_dir / "logs"
    files = {p.name: read_no_follow(p) or "" for p in plain_dir_entries(logs, "rank", ".stacks.txt")}
    if unit:
        files["journal.txt"] = journal(unit, since)
    else:  # a local run has no unit: its ranks' own logs are the journal
        files.update(
            {p.name: read_no_follow(p, 16 * 1024) or "" for p in plain_dir_entries(logs, "", ".ndjson")}
        )
    return {
        "node_time": time.time(),
        "ranks": ranks,
        "agents": list(agents.values()),
        "files": files,
        "rendezvous": endpoint_check(rendezvous) if rendezvous else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--unit", default=None, help="systemd unit whose journal to read (nodes)")
    parser.add_argument("--since", default="-15min", help="journalctl --since")
    parser.add_argument("--rendezvous", default=None, help="host:port to resolve and connect to")
    args = parser.parse_args(argv)
    json.dump(collect(args.run_dir, args.unit, args.since, args.rendezvous), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
