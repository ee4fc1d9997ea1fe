"""The running job's training output, per node and per rank: each rank's ECS JSON log
(`<run>/logs/rank<R>.ndjson`, ddp.logs), read from every node over SSH in parallel, the way `tooling status`
reads the status files.

Where a rank runs is not fixed by the launch: the c10d rendezvous hands out node ranks as nodes arrive, and
a restarted worker group may land elsewhere. So a rank is looked for on every node (a file per rank, named by
its global rank), never guessed from the host order; a rank that restarted on another node shows on both.

Following (`-f`) polls: each round reads, per file, only the bytes past what was shown, up to the last whole
line, so one SSH command per node and round, and nothing streams through a channel left open.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tooling.remote import SshTarget, run_each

MARK = "--ddp-log--"
RANK_FILE = re.compile(r"rank(\d+)\.ndjson")


@dataclass
class Cursor:
    """Where each of a node's rank files was read up to (bytes), so a poll reads only what is new."""

    offsets: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RankLines:
    host: str
    rank: int
    lines: list[str]


@dataclass(frozen=True)
class NodeLogs:
    host: str
    ranks: list[RankLines]
    error: str | None = None


def read_command(run_dir: str, rank: int | None, cursor: Cursor | None, lines: int) -> str:
    """The shell command that prints, per rank file, a mark with its size and then its new bytes: the last
    `lines` lines on a first read (no cursor), the bytes past the cursor's offset when following.

    The files are the training account's: when the SSH user is root, the reading runs as the owner of the
    logs directory (setpriv), so that a link the trainer left there cannot make root read anything else."""
    pattern = f"rank{rank}.ndjson" if rank is not None else "rank*.ndjson"
    offsets = " ".join(
        f"{name}) echo {int(offset)} ;;" for name, offset in sorted((cursor or Cursor()).offsets.items())
    )
    if cursor is None:
        body = f'head -c "$size" "$f" | tail -n {int(lines)}'
    else:
        # A file shorter than the cursor was truncated or replaced: read it from its start.
        body = (
            'start=$(off "$f"); [ "$size" -ge "$start" ] || start=0; '
            'tail -c +$((start + 1)) "$f" | head -c $((size - start))'
        )
    script = (
        f'off() {{ case "$1" in {offsets} *) echo 0 ;; esac; }}; '
        f'for f in {pattern}; do [ -f "$f" ] && [ ! -L "$f" ] || continue; '
        f'size=$(wc -c < "$f"); echo; echo "{MARK} $f $size"; {body}; done'
    )
    logs = shlex.quote(f"{run_dir}/logs")
    inner = shlex.quote(f"cd {logs} && {script}")
    return (
        f"[ -d {logs} ] || exit 0; "
        f'if [ "$(id -u)" = 0 ]; then exec setpriv --reuid="$(stat -c %u {logs})" '
        f'--regid="$(stat -c %g {logs})" --clear-groups sh -c {inner}; else exec sh -c {inner}; fi'
    )


def parse(host: str, text: str, cursor: Cursor | None) -> list[RankLines]:
    """The rank files' lines in `text` (read_command's output). With a cursor (following), only whole lines
    count, and the cursor moves past them: a line still being written is read whole next round."""
    found: list[RankLines] = []
    for chunk in text.split(f"\n{MARK} ")[1:]:
        header, _, data = chunk.partition("\n")
        name, _, size_text = header.partition(" ")
        match = RANK_FILE.fullmatch(name)
        if not match or not size_text.isdigit():
            continue
        if cursor is not None:
            size = int(size_text)
            whole = data[: data.rfind("\n") + 1]
            if name in cursor.offsets:
                start = cursor.offsets[name] if size >= cursor.offsets[name] else 0
                cursor.offsets[name] = start + len(whole.encode())
            else:  # a first read ends at the file's size less the unfinished line
                cursor.offsets[name] = size - len(data[len(whole) :].encode())
            data = whole
        found.append(RankLines(host, int(match.group(1)), [line for line in data.splitlines() if line]))
    return sorted(found, key=lambda r: r.rank)


def collect(
    targets: list[SshTarget],
    run_dir: str,
    rank: int | None,
    lines: int,
    cursors: dict[str, Cursor] | None = None,
    timeout_s: float = 10.0,
) -> list[NodeLogs]:
    """Every node's rank lines: the last `lines` of each (no cursors), or what is new since `cursors`, which
    are created on the first read and moved on every read after it."""
    commands = [(t, read_command(run_dir, rank, (cursors or {}).get(t.name), lines)) for t in targets]
    results = run_each(commands, timeout_s)
    found = []
    for target in targets:
        result = results[target.name]
        if result.error is not None or result.rc not in (0, None):
            reason = result.error or f"reading the logs exited {result.rc}: {result.stderr.strip()[:200]}"
            found.append(NodeLogs(target.name, [], reason))
            continue
        cursor = None if cursors is None else cursors.setdefault(target.name, Cursor())
        found.append(NodeLogs(target.name, parse(target.name, "\n" + result.stdout, cursor)))
    return found


def render(line: str) -> str:
    """One ECS JSON line as `time level message` (the raw line when it is not one)."""
    try:
        record: Any = json.loads(line)
    except ValueError:
        return line
    if not isinstance(record, dict):
        return line
    when = str(record.get("@timestamp", ""))
    level = str((record.get("log") or {}).get("level", record.get("log.level", ""))).upper()
    message = str(record.get("message", ""))
    error = record.get("error") or {}
    if isinstance(error, dict) and error.get("message"):
        message += f" ({error.get('type', 'error')}: {error['message']})"
    return f"{when} {level} {message}".strip()


def prefixed(node_logs: Iterable[NodeLogs]) -> list[str]:
    """Every line shown, prefixed with its node and rank."""
    return [
        f"{ranks.host} rank{ranks.rank} | {render(line)}"
        for node in node_logs
        for ranks in node.ranks
        for line in ranks.lines
    ]
