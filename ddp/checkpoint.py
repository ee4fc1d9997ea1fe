"""Checkpoints that survive crashes: atomic files, a sha256 manifest, last-K retention, and resume from the
newest checkpoint that verifies.

A checkpoint counts only once the manifest lists it (the manifest is written after the file), so a crash
mid-save leaves an orphan file, never a half checkpoint that looks complete; the next save removes such
orphans. On load the sha256 is checked before the file is read with torch's weights-only loader
(ddp/checkpoint_format.py); a bad or unsafe newest file is logged and the previous one is tried.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ddp.atomic import atomic_write_bytes, atomic_write_json, fsync_dir
from ddp.checkpoint_format import FORMAT_VERSION, UnsafeCheckpointError, decode_state, encode_state

MANIFEST = "manifest.json"
# The names this store creates: step files, and the temp files of writes a crash cut short.
STEP_FILE = re.compile(r"step-\d{9,}\.pt")
LEFTOVER_TEMP = re.compile(r"\.(step-\d{9,}\.pt|manifest\.json)\.\w+\.tmp")
log = logging.getLogger("ddp.checkpoint")


@dataclass(frozen=True)
class CheckpointEntry:
    file: str
    step: int
    sha256: str
    bytes: int
    saved_at: float


@dataclass(frozen=True)
class SetAside:
    """Checkpoints a fresh start moved out of the way (ddp/distributed_checkpoint.py says why)."""

    directory: Path
    run: str | None  # the run the manifest names, when it names one
    steps: list[int]


def step_file(step: int) -> str:
    return f"step-{step:09d}.pt"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class CheckpointStore:
    """One directory of checkpoints on this machine's disk."""

    def __init__(self, directory: Path, keep_last: int, run: str | None = None) -> None:
        self.directory = directory
        self.keep_last = keep_last
        self.run = run

    @property
    def manifest_path(self) -> Path:
        return self.directory / MANIFEST

    def _manifest(self) -> dict[str, Any]:
        raw = json.loads(self.manifest_path.read_text())
        if not isinstance(raw, dict):
            raise TypeError(f"a JSON {type(raw).__name__}, not an object")
        return raw

    def entries(self) -> list[CheckpointEntry]:
        try:
            return [CheckpointEntry(**item) for item in self._manifest()["checkpoints"]]
        except FileNotFoundError:
            return []
        except (ValueError, KeyError, TypeError) as exc:
            log.error(
                "checkpoint manifest %s is unreadable (%s); treating the directory as empty",
                self.manifest_path,
                exc,
            )
            return []

    def save(self, state: dict[str, Any], step: int) -> CheckpointEntry:
        """Write `state` as step-N.pt, then the manifest, then prune; raises OSError if the disk refuses."""
        self.directory.mkdir(parents=True, exist_ok=True)
        data = encode_state(state)
        name = step_file(step)
        atomic_write_bytes(self.directory / name, data)
        entry = CheckpointEntry(name, step, hashlib.sha256(data).hexdigest(), len(data), time.time())
        previous = self.entries()
        retained = self._retained(previous, entry)
        try:
            atomic_write_json(
                self.manifest_path,
                {"format": FORMAT_VERSION, "run": self.run, "checkpoints": [vars(e) for e in retained]},
            )
        except OSError:
            # Unlisted, the new file would only take the space a full disk needs back.
            with contextlib.suppress(OSError):
                (self.directory / name).unlink()
            raise
        self._prune({e.file for e in retained}, {e.file for e in previous})
        return entry

    def _retained(self, previous: list[CheckpointEntry], entry: CheckpointEntry) -> list[CheckpointEntry]:
        """The manifest after saving `entry`: it and the newest earlier steps, keep_last in all.

        Listed steps past the new one belong to a timeline this run has left: a newer checkpoint it
        resumed past (corrupt or unsafe) or another run's. Kept, they would outrank the file just
        written: retention would drop it and the next resume would load them.
        """
        abandoned = sorted(e.step for e in previous if e.step > entry.step)
        if abandoned:
            log.warning(
                "checkpoint step %d in %s supersedes the listed later steps %s: they are not this "
                "run's history any more",
                entry.step,
                self.directory,
                abandoned,
            )
        earlier = sorted((e for e in previous if e.step < entry.step), key=lambda e: e.step)
        return [*earlier, entry][-self.keep_last :]

    def _own_files(self) -> list[str]:
        """Regular files here named like this store's own; never a symlink, never followed."""
        with os.scandir(self.directory) as items:
            return sorted(
                item.name
                for item in items
                if (STEP_FILE.fullmatch(item.name) or LEFTOVER_TEMP.fullmatch(item.name))
                and item.is_file(follow_symlinks=False)
            )

    def _prune(self, listed: set[str], previously_listed: set[str]) -> None:
        """Remove what the manifest no longer lists: retired checkpoints, and orphans a crash left
        between writing a file and listing it (or mid-write, as a temp file)."""
        stale = [name for name in self._own_files() if name not in listed]
        orphans = [name for name in stale if name not in previously_listed]
        if orphans:
            log.warning("removing checkpoint files no manifest listed in %s: %s", self.directory, orphans)
        for name in stale:
            try:
                (self.directory / name).unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:  # the checkpoint itself is saved; a leftover only costs space
                log.warning("cannot remove %s: %s", self.directory / name, exc)

    def set_aside(self) -> SetAside | None:
        """Move the manifest and every checkpoint file into a new `previous-*` subdirectory, so the
        directory starts empty; None when there was nothing to move."""
        if not self.directory.is_dir():
            return None
        files = [n for n in self._own_files() if STEP_FILE.fullmatch(n)]
        has_manifest = self.manifest_path.is_file()
        if not files and not has_manifest:
            return None
        try:
            named_run = self._manifest().get("run") if has_manifest else None
        except (OSError, ValueError, TypeError):
            named_run = None
        steps = sorted(e.step for e in self.entries())
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = Path(tempfile.mkdtemp(prefix=f"previous-{stamp}-", dir=self.directory))
        # The manifest goes first: from then on nothing here is listed, so a crash halfway through
        # leaves no checkpoint a resume could take for this run's.
        for name in ([MANIFEST] if has_manifest else []) + files:
            os.replace(self.directory / name, target / name)
        fsync_dir(self.directory)
        return SetAside(target, named_run if isinstance(named_run, str) else None, steps)

    def verify(self, entry: CheckpointEntry) -> str | None:
        """None when the file matches its manifest entry, else why not."""
        path = self.directory / entry.file
        if not path.exists():
            return "file is missing"
        size = path.stat().st_size
        if size != entry.bytes:
            return f"size {size} bytes, manifest says {entry.bytes} (truncated?)"
        if _sha256(path) != entry.sha256:
            return "sha256 does not match the manifest (corrupt)"
        return None

    def load(self, entry: CheckpointEntry) -> dict[str, Any]:
        """The state in `entry`'s file; UnsafeCheckpointError when it carries more than tensors and data."""
        path = self.directory / entry.file
        return decode_state(path, str(path))

    def load_newest(self) -> tuple[CheckpointEntry, dict[str, Any]] | None:
        """Newest checkpoint that verifies and loads; corrupt and unsafe ones are logged and skipped."""
        for entry in sorted(self.entries(), key=lambda e: e.step, reverse=True):
            problem = self.verify(entry)
            if problem is None:
                try:
                    return entry, self.load(entry)
                except UnsafeCheckpointError as exc:
                    log.error("skipping checkpoint %s: %s", exc.source, exc.reason)
                    continue
                except Exception as exc:  # bytes that are no checkpoint raise many types
                    problem = f"cannot be loaded ({type(exc).__name__}: {exc})"
            log.warning("skipping checkpoint %s: %s", self.directory / entry.file, problem)
        return None
