"""Spot-check the newest checkpoints of a directory on this machine: sha256 against the manifest, then a
real torch.load (weights only: nothing in the file runs), using CheckpointStore's own checks so the verdict
means what a resume would find.

    python -m ddp.checkpoint_verify DIR [--newest N] [--json]
    python -m ddp.checkpoint_verify DIR --list      (the manifest's checkpoints as JSON; nothing loaded)

DIR is a checkpoint directory (it holds manifest.json) or a run directory (its checkpoint directory is
taken from summary.json's config, else `checkpoints`). Exit status: 0 the checked checkpoints are good
(or there are none yet), 1 one is corrupt, missing, unloadable or unsafe (a code payload; or the manifest
is broken), 2 usage error.
The JSON verdict is what `tooling check` reads over SSH; it names every file it judged.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ddp.checkpoint import MANIFEST, CheckpointEntry, CheckpointStore
from ddp.checkpoint_format import UnsafeCheckpointError

OK = "ok"
NONE = "none"  # no checkpoint written yet: not a defect by itself
CORRUPT = "corrupt"
UNSAFE = "unsafe"  # a file asks the unpickler to import code: tampered with, or no checkpoint of ours
SUMMARY_FILE = "summary.json"
MISSING = "file is missing"  # CheckpointStore.verify's words for a listed file that is not on disk
RETRIES_WHILE_PRUNED = 3
DEFAULT_SUBDIR = "checkpoints"


@dataclass
class FileVerdict:
    file: str
    step: int
    bytes: int
    saved_at: float
    ok: bool
    problem: str | None = None
    unsafe: bool = False


@dataclass
class Verdict:
    directory: str
    verdict: str
    manifest_entries: int = 0
    checked: list[FileVerdict] = field(default_factory=list)
    problem: str | None = None
    checked_at: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _configured(path: Path, key: str) -> Any:
    """checkpoint.<key> of the run's config as its summary.json records it; None without one."""
    try:
        return json.loads((path / SUMMARY_FILE).read_text())["config"]["checkpoint"][key]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def checkpoint_dir(path: Path) -> Path:
    """The checkpoint directory `path` names, directly or as a run directory."""
    if (path / MANIFEST).exists():
        return path
    configured = _configured(path, "dir")
    if isinstance(configured, str) and configured:
        # The trainer resolves checkpoint.dir against the run directory (absolute paths stay as they are).
        return path / configured
    if (path / DEFAULT_SUBDIR).is_dir() or (path / "status").is_dir():
        return path / DEFAULT_SUBDIR
    return path


def _manifest_problem(store: CheckpointStore) -> str | None:
    """Why an existing manifest yields no entries, or None when it really lists none."""
    try:
        raw = json.loads(store.manifest_path.read_text())
    except (OSError, ValueError) as exc:
        return f"{store.manifest_path}: unreadable ({exc})"
    if isinstance(raw, dict) and raw.get("checkpoints") == []:
        return None
    return f"{store.manifest_path}: not a checkpoint manifest (no valid `checkpoints` list)"


def _check_one(store: CheckpointStore, entry: CheckpointEntry) -> FileVerdict:
    verdict = FileVerdict(entry.file, entry.step, entry.bytes, entry.saved_at, ok=False)
    problem = store.verify(entry)
    if problem is None:
        try:
            store.load(entry)
        except UnsafeCheckpointError as exc:
            problem = exc.reason
            verdict.unsafe = True
        except Exception as exc:  # unpickling garbage raises many types
            problem = f"cannot be loaded by torch ({type(exc).__name__}: {exc})"
    verdict.ok = problem is None
    verdict.problem = problem
    return verdict


def verify_directory(path: Path, newest: int = 1) -> Verdict:
    directory = checkpoint_dir(path)
    store = CheckpointStore(directory, keep_last=max(1, newest))
    result = Verdict(str(directory), OK)
    if not directory.is_dir():
        result.verdict = NONE
        result.problem = f"{directory} does not exist (no checkpoint written yet, or not a writer node)"
        return result
    if not store.manifest_path.exists():
        stray = sorted(p.name for p in directory.glob("step-*.pt"))
        if stray:
            result.verdict = CORRUPT
            result.problem = (
                f"{store.manifest_path} is missing but {len(stray)} checkpoint file(s) exist "
                f"(newest {stray[-1]}): none of them can be trusted or resumed from"
            )
        else:
            result.verdict = NONE
            result.problem = f"{directory} holds no checkpoint yet"
        return result
    for _ in range(RETRIES_WHILE_PRUNED):
        entries = sorted(store.entries(), key=lambda e: e.step, reverse=True)
        result.manifest_entries = len(entries)
        if not entries:
            problem = _manifest_problem(store)
            result.verdict = CORRUPT if problem else NONE
            result.problem = problem or f"{store.manifest_path} lists no checkpoint yet"
            return result
        result.checked = [_check_one(store, entry) for entry in entries[: max(1, newest)]]
        # A running trainer may have saved a newer checkpoint and pruned the one being read meanwhile:
        # a file that is gone and no longer listed was retired, not lost, so look again.
        listed = {e.file for e in store.entries()}
        if not any(c.problem == MISSING and c.file not in listed for c in result.checked):
            break
    bad = [c for c in result.checked if not c.ok]
    if bad:
        result.verdict = UNSAFE if any(c.unsafe for c in bad) else CORRUPT
        result.problem = "; ".join(f"{directory / c.file}: {c.problem}" for c in bad)
    return result


def list_directory(path: Path) -> dict[str, Any]:
    """What the manifest lists (file, step, bytes, saved_at; nothing read or loaded) and the run's
    checkpoint.keep_last when `path` is a run directory: the trend the daily checks predict tomorrow from."""
    directory = checkpoint_dir(path)
    entries = CheckpointStore(directory, keep_last=1).entries()
    keep_last = _configured(path, "keep_last")
    return {
        "directory": str(directory),
        "keep_last": keep_last if isinstance(keep_last, int) else None,
        "entries": [
            {"file": e.file, "step": e.step, "bytes": e.bytes, "saved_at": e.saved_at}
            for e in sorted(entries, key=lambda e: e.saved_at)
        ],
        "listed_at": time.time(),
    }


def render_text(verdict: Verdict) -> str:
    lines = [f"{verdict.directory}: {verdict.verdict}"]
    if verdict.problem:
        lines.append(f"  {verdict.problem}")
    for item in verdict.checked:
        state = "ok" if item.ok else f"BAD: {item.problem}"
        lines.append(f"  {item.file} (step {item.step}, {item.bytes} bytes): {state}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ddp.checkpoint_verify",
        description="Verify the newest checkpoints against their manifest and load them with torch.",
    )
    parser.add_argument("directory", type=Path, help="checkpoint directory or run directory")
    parser.add_argument("--newest", type=int, default=1, help="how many of the newest checkpoints to check")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument(
        "--list", action="store_true", help="only list the manifest's checkpoints (JSON), verify nothing"
    )
    args = parser.parse_args(argv)
    if args.newest < 1:
        parser.error("--newest must be at least 1")
    if args.list:
        print(json.dumps(list_directory(args.directory), sort_keys=True))
        return 0
    verdict = verify_directory(args.directory, args.newest)
    print(json.dumps(verdict.as_dict(), sort_keys=True) if args.json else render_text(verdict))
    return 1 if verdict.verdict in (CORRUPT, UNSAFE) else 0


if __name__ == "__main__":
    sys.exit(main())
