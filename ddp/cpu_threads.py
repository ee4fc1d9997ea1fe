"""The CPU threads a rank computes with, as its launcher's environment asks.

torch sizes its intra-op thread pool once, from OMP_NUM_THREADS as the process had it when torch was
imported; torchrun sets OMP_NUM_THREADS=1 for its workers when a node runs several (so that four ranks on a
node do not each spread over every CPU). A rank forked from the node's warm pool (ddp/warm_pool.py) imported
torch in the pool, whose environment is not its launcher's: without this it would keep the pool's count.
Measured on the sandbox (4 ranks a node, a node of 0.4 CPU): forked ranks kept 2 threads each and a step took
0.64 s against 0.052 s once they had their launcher's one thread (their threads spent the node's CPU quota
waiting on each other).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

THREADS_ENV = "OMP_NUM_THREADS"


def requested_threads(environ: Mapping[str, str]) -> int | None:
    """OMP_NUM_THREADS as a positive count; None when it is not set or is no such count (torch ignores those
    too, with a warning, and keeps its default)."""
    value = environ.get(THREADS_ENV, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def apply_launcher_threads(environ: Mapping[str, str] | None = None) -> int:
    """Size torch's intra-op pool as the environment asks, or where it does not say, as torch does by
    default (a thread for each CPU this process may run on: the pool itself ran with one); the count in use
    afterwards."""
    import torch  # here: the warm supervisor reads THREADS_ENV from this module and must stay light

    threads = requested_threads(os.environ if environ is None else environ) or len(os.sched_getaffinity(0))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()
