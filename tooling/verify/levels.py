"""How much `tooling verify-node` measures: a module of its own so that the command's declaration (its
`--level` option) does not import the judging."""

from __future__ import annotations

from enum import StrEnum


class Level(StrEnum):
    """How much to measure. quick: what every launch can afford (seconds: no nccl-tests, no DCGM diagnostic,
    no iperf3, no ib_write_bw); full: the acceptance run (nccl-tests, iperf3 and ib_write_bw bandwidth,
    `dcgmi diag` where DCGM is installed)."""

    quick = "quick"
    full = "full"
