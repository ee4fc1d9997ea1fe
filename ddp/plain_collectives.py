"""Collectives that carry bytes between ranks in uint8 tensors, so nothing a peer sends is unpickled.

`dist.all_gather_object` and `dist.broadcast_object_list` unpickle whatever arrives: one compromised or
confused peer could run code on every rank. Metadata travels here as JSON; a checkpoint state travels as
torch's own file format and is read back with `weights_only=True` (ddp/checkpoint_format.py).
"""

from __future__ import annotations

import json
from typing import Any

import torch
import torch.distributed as dist


def _as_tensor(data: bytes, device: torch.device, size: int) -> torch.Tensor:
    """`data` zero-padded to `size` bytes."""
    tensor = torch.zeros(size, dtype=torch.uint8, device=device)
    if data:
        tensor[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(device)
    return tensor


def _as_bytes(tensor: torch.Tensor, size: int) -> bytes:
    return bytes(tensor[:size].cpu().numpy().tobytes())


def all_gather_bytes(data: bytes, device: torch.device) -> list[bytes]:
    """Collective. Every rank's `data`, in rank order: lengths first, then the bytes padded to the longest."""
    world = dist.get_world_size()
    length = torch.tensor([len(data)], dtype=torch.int64, device=device)
    lengths = [torch.zeros_like(length) for _ in range(world)]
    dist.all_gather(lengths, length)
    sizes = [int(n.item()) for n in lengths]
    longest = max(1, *sizes)
    gathered = [torch.empty(longest, dtype=torch.uint8, device=device) for _ in range(world)]
    dist.all_gather(gathered, _as_tensor(data, device, longest))
    return [_as_bytes(tensor, size) for tensor, size in zip(gathered, sizes, strict=True)]


def all_gather_json(value: Any, device: torch.device) -> list[Any]:
    """Collective. Every rank's JSON-able `value`, in rank order."""
    encoded = json.dumps(value).encode("utf-8")
    return [json.loads(item) for item in all_gather_bytes(encoded, device)]


def broadcast_bytes(data: bytes | None, src: int, device: torch.device) -> bytes:
    """Collective. The bytes rank `src` passes, on every rank (the others pass None)."""
    is_source = dist.get_rank() == src
    if is_source and data is None:
        raise ValueError("the broadcasting rank must pass its bytes")
    payload = data if is_source and data is not None else b""
    length = torch.tensor([len(payload)], dtype=torch.int64, device=device)
    dist.broadcast(length, src)
    size = int(length.item())
    if size == 0:
        return b""
    buffer = _as_tensor(payload, device, size)
    dist.broadcast(buffer, src)
    return payload if is_source else _as_bytes(buffer, size)
