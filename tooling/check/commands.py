"""Every command `tooling check` runs on a node, in one place. All are read-only and print plain text or
JSON that tooling/check/parsers.py reads; each ends in `true` or prints its own failure, so a missing
tool is a finding in the output rather than a lost connection."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from tooling.job import status

NVIDIA_MARK = "--nvidia-smi--"
LISTEN_MARK = "--listening--"
# index, temperature and the active clock-event bitmask (thermal slowdowns among them) of every GPU;
# drivers renamed the bitmask field (clocks_event_reasons), older ones know only the first name.
NVIDIA_QUERIES = (
    "index,name,temperature.gpu,clocks_throttle_reasons.active",
    "index,name,temperature.gpu,clocks_event_reasons.active",
)


@dataclass(frozen=True)
class ProbeTarget:
    """One TCP endpoint a node connects to: `label` says which service (ssh, rendezvous)."""

    host: str
    address: str
    port: int
    label: str


def rank_status(run_dir: str) -> str:
    return status.status_command(run_dir)


def disk_free(path: str) -> str:
    """df of the checkpoint directory, or of its nearest existing parent (before the first checkpoint)."""
    quoted = shlex.quote(path)
    return (
        f'd={quoted}; while [ ! -e "$d" ] && [ "$d" != / ]; do d=$(dirname "$d"); done; '
        'echo "path $d"; df -P -B1 "$d"'
    )


def _checkpoint_tool(python: str, run_dir: str, args: str) -> str:
    exe = shlex.quote(python)
    return (
        f"if [ ! -x {exe} ]; then echo 'no trainer interpreter at '{exe} >&2; exit 127; fi; "
        f"{exe} -m ddp.checkpoint_verify {shlex.quote(run_dir)} {args}"
    )


def checkpoint_verify(python: str, run_dir: str, newest: int) -> str:
    return _checkpoint_tool(python, run_dir, f"--newest {int(newest)} --json")


def checkpoint_list(python: str, run_dir: str) -> str:
    """The run's checkpoints as its manifest lists them (nothing loaded): the trend of tomorrow's outlook."""
    return _checkpoint_tool(python, run_dir, "--list")


# Three connects per endpoint, the median kept: one slow SYN is not a slow link.
_CONNECT_SCRIPT = """
import json, socket, statistics, sys, time
timeout = float(sys.argv[2])
for t in json.loads(sys.argv[1]):
    times = []
    try:
        for _ in range(3):
            start = time.perf_counter()
            with socket.create_connection((t["address"], t["port"]), timeout=timeout):
                times.append((time.perf_counter() - start) * 1000.0)
        print(json.dumps({**t, "ok": True, "ms": round(statistics.median(times), 3)}))
    except OSError as exc:
        print(json.dumps({**t, "ok": False, "error": exc.strerror or str(exc) or type(exc).__name__}))
    sys.stdout.flush()
"""


def connectivity(
    targets: Sequence[ProbeTarget], timeout_s: float, python: str, listen_port: int | None = None
) -> str:
    """TCP connect from this node to each target; with `listen_port`, also list this node's listeners."""
    payload = json.dumps([asdict(t) for t in targets])
    interpreter = f"$(command -v python3 || echo {shlex.quote(python)})"
    command = f"{interpreter} -c {shlex.quote(_CONNECT_SCRIPT)} {shlex.quote(payload)} {timeout_s:g}"
    if listen_port is not None:
        command += (
            f"; echo {LISTEN_MARK}; ss -Hltn 2>/dev/null || cat /proc/net/tcp /proc/net/tcp6 2>/dev/null"
        )
    return command + "; true"


def thermal() -> str:
    first, second = (f"nvidia-smi --query-gpu={q} --format=csv,noheader,nounits" for q in NVIDIA_QUERIES)
    return (
        "for z in /sys/class/thermal/thermal_zone*; do "
        '[ -r "$z/temp" ] || continue; t=$(cat "$z/temp" 2>/dev/null) || continue; '
        'printf "zone\\t%s\\t%s\\t%s\\n" "${z##*/}" "$(cat "$z/type" 2>/dev/null || echo unknown)" "$t"; '
        "done; "
        f"if command -v nvidia-smi >/dev/null 2>&1; then echo {NVIDIA_MARK}; "
        f'{first} 2>/dev/null || {second} 2>&1 || echo "nvidia-smi failed (exit $?)"; fi; true'
    )
