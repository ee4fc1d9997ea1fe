"""A checkpoint's bytes and back: torch's file format, read with `weights_only=True`.

A checkpoint holds tensors and plain data only (ddp/rng.py keeps the RNG states plain), so the
restricted unpickler reads it whole. A full unpickle would run whatever a crafted file asks for, and a
matching sha256 in the manifest proves nothing about who wrote the file.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from ddp.pickle_scan import foreign_globals

# 2: RNG states as plain data (format 1 pickled numpy arrays, which weights_only loading refuses).
FORMAT_VERSION = 2


class UnsafeCheckpointError(Exception):
    """The file asks the unpickler for more than tensors and plain data; it was not unpickled."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


def encode_state(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save({**state, "format": FORMAT_VERSION}, buffer)
    return buffer.getvalue()


def decode_state(data: bytes | Path, source: str) -> dict[str, Any]:
    """The state in `data` (a file or its bytes; named `source` in errors). Raises UnsafeCheckpointError
    for a code payload, ValueError for another format, and what torch raises for bytes that are no
    checkpoint."""
    try:
        readable = io.BytesIO(data) if isinstance(data, bytes) else data
        state = torch.load(readable, map_location="cpu", weights_only=True)
    except Exception:  # bytes that are no checkpoint raise many types; only a code payload is relabelled
        foreign = foreign_globals(data)
        if foreign:
            raise UnsafeCheckpointError(
                source,
                f"unsafe, not loaded: its pickle references {', '.join(foreign)}, which unpickling would "
                f"import and call (a code payload, or a checkpoint older than format {FORMAT_VERSION}); "
                "it was refused without being unpickled",
            ) from None
        raise
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{source}: checkpoint format {found!r}, expected {FORMAT_VERSION}")
    return state
