"""torchrun's c10d rendezvous, reading the rendezvous state at the plan's poll instead of once a second.

    torchrun --rdzv-backend ddp-c10d --rdzv-conf join_timeout=120,state_poll_interval=0.25 ...

A recovery is a rendezvous round: the failed node's agent joins a new round, the other agents see it
waiting (their monitor loop asks the state every monitor interval) and join too, and the node that joined
first learns that the round is complete. torch's dynamic rendezvous (2.13) paces both with a second that
no setting changes:
- the state it reads from the store is kept for a second (`_BackendRendezvousStateHolder`, cache_duration
  1 s), so an agent's monitor loop sees a waiting node up to a second late whatever its interval;
- a node whose round is not complete sleeps a second before reading it again (the SYNC action's
  `_delay(seconds=1)` in `_DistributedRendezvousOpExecutor.run`).
Across two nodes those waits were about a third of a recovery (README, "Recovery").

This backend is the c10d backend (torch's own store, state and handler) with both set to
`state_poll_interval` seconds (the plan's `rendezvous.monitor_interval_s`, at most 1 s; tooling/plan/
launch.py). A healthy agent then reads the store once a monitor interval, a waiting one once a poll. torch
has no hook for either, so the handler's state holder gets the shorter cache, and the module's `_delay` is
wrapped in the agent's process: the wrapper shortens only the SYNC action's bare one-second sleep and
passes every other delay through. tests/unit/test_rendezvous_poll.py measures both backends side by side,
so a torch that changes either fails there, not silently here.

torchrun finds the backend through the `torchrun.handlers` entry point of this package (pyproject.toml;
the node's trainer wheel carries it, roles/ddp_trainer/files/wheelhouse.py). Importing this module imports
no torch: torch loads every such entry point whenever its rendezvous package is imported.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch.distributed.elastic.rendezvous import RendezvousHandler, RendezvousParameters
    from torch.distributed.elastic.rendezvous.dynamic_rendezvous import RendezvousBackend, Token

BACKEND = "ddp-c10d"
POLL_KEY = "state_poll_interval"  # seconds, in --rdzv-conf
# torch's wait between two reads of a round that is not complete yet (the SYNC action's `_delay(seconds=1)`).
TORCH_SYNC_WAIT_S = 1
MIN_POLL_S = 0.05  # as the plan's monitor_interval_s: below it the store is read for nothing

_lock = threading.Lock()
_poll_s: float = TORCH_SYNC_WAIT_S


def poll_interval(params: RendezvousParameters) -> float:
    """`state_poll_interval` of the rendezvous's config: seconds from MIN_POLL_S to torch's own 1 s."""
    raw = params.get(POLL_KEY, TORCH_SYNC_WAIT_S)
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"--rdzv-conf {POLL_KEY}={raw}: expected seconds, e.g. 0.25") from None
    if not MIN_POLL_S <= seconds <= TORCH_SYNC_WAIT_S:
        raise ValueError(
            f"--rdzv-conf {POLL_KEY}={raw}: expected {MIN_POLL_S} to {TORCH_SYNC_WAIT_S} seconds "
            "(torch itself waits 1 s)"
        )
    return seconds


def _install_poll(seconds: float) -> None:
    """Wrap dynamic_rendezvous' `_delay` once in this process; later handlers only change the poll."""
    global _poll_s
    from torch.distributed.elastic.rendezvous import dynamic_rendezvous

    with _lock:
        _poll_s = seconds
        if getattr(dynamic_rendezvous._delay, "_ddp_poll", False):
            return
        original: Callable[[Any], None] = dynamic_rendezvous._delay

        def delay(seconds: float | tuple[float, float]) -> None:
            # A bare 1 is the SYNC wait (a jittered delay is a tuple); anything else is torch's own.
            is_sync_wait = not isinstance(seconds, tuple) and seconds == TORCH_SYNC_WAIT_S
            original(_poll_s if is_sync_wait else seconds)

        delay._ddp_poll = True  # type: ignore[attr-defined]
        dynamic_rendezvous._delay = delay  # type: ignore[assignment]


def _named(backend: RendezvousBackend) -> RendezvousBackend:
    """`backend` under this backend's name: torchrun checks that the handler says the name it asked for."""
    from torch.distributed.elastic.rendezvous.dynamic_rendezvous import RendezvousBackend

    class Named(RendezvousBackend):
        @property
        def name(self) -> str:
            return BACKEND

        def get_state(self) -> tuple[bytes, Token] | None:
            return backend.get_state()

        def set_state(self, state: bytes, token: Token | None = None) -> tuple[bytes, Token, bool] | None:
            return backend.set_state(state, token)

    return Named()


def create_handler(params: RendezvousParameters) -> RendezvousHandler:
    """The c10d rendezvous handler (torch's store and state), with the waiting poll of `params`."""
    from torch.distributed.elastic.rendezvous.c10d_rendezvous_backend import create_backend
    from torch.distributed.elastic.rendezvous.dynamic_rendezvous import create_handler as dynamic_handler

    seconds = poll_interval(params)
    _install_poll(seconds)
    backend, store = create_backend(params)
    handler = dynamic_handler(store, _named(backend), params)
    holder = getattr(handler, "_state_holder", None)
    if not hasattr(holder, "_cache_duration"):
        raise RuntimeError(
            f"rendezvous backend {BACKEND}: this torch keeps no cached rendezvous state to shorten"
        )
    holder._cache_duration = seconds  # type: ignore[union-attr]
    return handler


def handler_creator() -> Callable[[RendezvousParameters], RendezvousHandler]:
    """The `torchrun.handlers` entry point: torch registers what this returns under the entry's name."""
    return create_handler
