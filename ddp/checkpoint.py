"""Checkpoints that survive crashes: atomic files, a sha256 manifest, last-K retention, and resume from the
newest checkpoint that verifies.

A checkpoint counts only once the manifest lists it (the manifest is written after the file), so a crash
mid-save leaves an orphan temp file, never a half checkpoint that looks complete. On load the sha256 is
checked before torch.load; a bad newest file is logged and the previous one is tried.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ddp.atomic import atomic_write_bytes, atomic_write_json

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
log = logging.getLogger("ddp.checkpoint")


@dataclass(frozen=True)
class CheckpointEntry:
    file: str
    step: int
    sha256: str
    bytes: int
    saved_at: float


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class CheckpointStore:
    """One directory of checkpoints on this machine's disk."""

    def __init__(self, directory: Path, keep_last: int) -> None:
        self.directory = directory
        self.keep_last = keep_last

    @property
    def manifest_path(self) -> Path:
        return self.directory / MANIFEST

    def entries(self) -> list[CheckpointEntry]:
        try:
            raw = json.loads(self.manifest_path.read_text())
            return [CheckpointEntry(**item) for item in raw["checkpoints"]]
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
        buffer = io.BytesIO()
        torch.save({"format": FORMAT_VERSION, **state}, buffer)
        data = buffer.getvalue()
        name = f"step-{step:09d}.pt"
        atomic_write_bytes(self.directory / name, data)
        entry = CheckpointEntry(name, step, hashlib.sha256(data).hexdigest(), len(data), time.time())
        kept = [e for e in self.entries() if e.step != step] + [entry]
        kept.sort(key=lambda e: e.step)
        retained, dropped = kept[-self.keep_last :], kept[: -self.keep_last]
        try:
            atomic_write_json(
                self.manifest_path, {"format": FORMAT_VERSION, "checkpoints": [vars(e) for e in retained]}
            )
        except OSError:
            # Unlisted, the new file would only take the space a full disk needs back.
            with contextlib.suppress(OSError):
                (self.directory / name).unlink()
            raise
        for old in dropped:
            with contextlib.suppress(FileNotFoundError):
                (self.directory / old.file).unlink()
        return entry

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
        # weights_only=False: the state holds RNG states; the sha256 check above vouches for the bytes.
        state: dict[str, Any] = torch.load(
            self.directory / entry.file, map_location="cpu", weights_only=False
        )
        if state.get("format") != FORMAT_VERSION:
            raise ValueError(
                f"{entry.file}: checkpoint format {state.get('format')!r}, expected {FORMAT_VERSION}"
            )
        return state

    def load_newest(self) -> tuple[CheckpointEntry, dict[str, Any]] | None:
        """Newest checkpoint that verifies and loads; corrupt ones are logged and skipped."""
        for entry in sorted(self.entries(), key=lambda e: e.step, reverse=True):
            problem = self.verify(entry)
            if problem is None:
                try:
                    return entry, self.load(entry)
                except Exception as exc:  # unpickling garbage raises many types
                    problem = f"cannot be loaded ({type(exc).__name__}: {exc})"
            log.warning("skipping checkpoint %s: %s", self.directory / entry.file, problem)
        return None
