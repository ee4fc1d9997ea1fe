"""Name what a pickle would import, by reading its opcodes: nothing is unpickled, nothing runs.

torch.load(weights_only=True) is what keeps a checkpoint from running code; this only explains a refusal,
so an operator reads "references posix.system" rather than a generic unpickling error.
"""

from __future__ import annotations

import io
import pickletools
import zipfile
from pathlib import Path

# A torch file's pickle is small (tensor data lives beside it); a crafted one must not exhaust memory.
SCAN_LIMIT_BYTES = 64 << 20
# What torch.save itself puts in a checkpoint's pickle: tensor rebuilders, storages, OrderedDict.
TORCH_SAVE_MODULES = ("torch", "collections")
_STRING_OPS = {
    "STRING",
    "BINSTRING",
    "SHORT_BINSTRING",
    "UNICODE",
    "SHORT_BINUNICODE",
    "BINUNICODE",
    "BINUNICODE8",
}
_GET_OPS = {"GET", "BINGET", "LONG_BINGET"}
_PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}


def _head(source: bytes | Path) -> bytes:
    if isinstance(source, bytes):
        return source[:SCAN_LIMIT_BYTES]
    with source.open("rb") as handle:
        return handle.read(SCAN_LIMIT_BYTES)


def _pickles(source: bytes | Path) -> list[bytes]:
    """The pickle streams of a torch zip file (its data.pkl), or the file itself as one stream."""
    opened: io.BytesIO | Path = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        if not zipfile.is_zipfile(opened):
            return [_head(source)]
        with zipfile.ZipFile(opened) as archive:
            streams = []
            for name in archive.namelist():
                if name.endswith("data.pkl"):
                    with archive.open(name) as member:
                        streams.append(member.read(SCAN_LIMIT_BYTES))
            return streams
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return []


def _globals_of(stream: bytes) -> list[str]:
    found: list[str] = []
    strings: list[str] = []  # strings pushed so far, newest last: STACK_GLOBAL takes module and name
    memo: dict[int, str] = {}
    memo_next = 0
    top: str | None = None  # the string on top of the stack after the previous opcode, if it is one
    try:
        for opcode, arg, _ in pickletools.genops(stream):
            name, pushed = opcode.name, None
            slot = arg if isinstance(arg, int) else None  # the memo index of PUT and GET opcodes
            if name in ("GLOBAL", "INST"):
                found.append(str(arg).replace(" ", "."))
            elif name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            elif name in _STRING_OPS:
                pushed = str(arg)
                strings.append(pushed)
            elif name == "MEMOIZE":
                if top is not None:
                    memo[memo_next] = top
                memo_next += 1
                pushed = top  # memoizing leaves the stack as it was
            elif name in _PUT_OPS:
                if top is not None and slot is not None:
                    memo[slot] = top
                pushed = top
            elif name in _GET_OPS and slot in memo:
                pushed = memo[slot]
                strings.append(pushed)
            top = pushed
    except (ValueError, TypeError):
        pass  # not (or no longer) a pickle: what was read up to here is the answer
    return found


def foreign_globals(source: bytes | Path) -> list[str]:
    """Globals the pickle(s) in `source` (a file or its bytes) import beyond what torch.save writes, in
    order, without repeats."""
    names: list[str] = []
    for stream in _pickles(source):
        names.extend(_globals_of(stream))
    foreign = [n for n in names if n.split(".", 1)[0] not in TORCH_SAVE_MODULES]
    return list(dict.fromkeys(foreign))
