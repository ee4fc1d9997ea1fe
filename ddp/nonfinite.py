"""Finding a NaN or inf among many tensors for the price of reading them once.

One sum per tensor costs less than a norm (3.7 M parameters on the one thread a rank has here: 0.42
against 0.66 ms), and a NaN or inf element makes its sum non-finite. Finite elements can overflow a sum
too: then each element is checked, and only a real NaN or inf counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def nonfinite_norm(tensors: Sequence[torch.Tensor]) -> float | None:
    """None when every element of `tensors` is finite; else their norm, NaN or inf, for the message."""
    if not tensors:
        return None
    if math.isfinite(float(torch.stack([t.sum() for t in tensors]).sum())):
        return None
    if all(bool(torch.isfinite(t).all()) for t in tensors):
        return None
    return float(torch.nn.utils.get_total_norm(tensors))
