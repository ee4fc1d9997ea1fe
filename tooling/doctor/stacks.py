"""Which collective a rank is in, read from its stack (a py-spy dump, innermost frame first, or a
faulthandler dump, innermost last): the first frame that names one, from the innermost outwards."""

from __future__ import annotations

import re

# (frame pattern, what to call it); the first match from the innermost frame wins.
_COLLECTIVES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\b(all_reduce|allreduce\w*)\b"), "allreduce"),
    (re.compile(r"\b(barrier|monitored_barrier|_store_based_barrier)\b"), "barrier"),
    (re.compile(r"\b(broadcast\w*)\b"), "broadcast"),
    (re.compile(r"\b(all_gather\w*|_all_gather_base)\b"), "all_gather"),
    (re.compile(r"\b(reduce_scatter\w*)\b"), "reduce_scatter"),
    (re.compile(r"\b(next_rendezvous|rendezvous|_rendezvous\w*)\b"), "store wait/get (rendezvous)"),
    (re.compile(r"\b(wait|get|compare_set|add)\b.*(store|Store)"), "store wait/get (rendezvous)"),
    # DDP communicates gradient buckets from inside backward (C++): its Python frame is backward's.
    (
        re.compile(r"\b(_engine_run_backward|run_backward|backward)\b"),
        "allreduce (DDP gradients, in backward)",
    ),
]
_PY_SPY_FRAME = re.compile(r"^\s+\S.*\(.*:\d+\)\s*$")
_FAULTHANDLER_FRAME = re.compile(r'^\s*File ".*", line \d+ in ')


def main_thread(stack: str) -> list[str]:
    """The main thread's lines (a py-spy dump lists every thread; the training loop is the main one)."""
    lines = stack.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Thread ")]
    main = next((i for i in starts if "MainThread" in lines[i]), None)
    if main is None:
        return lines
    end = next((i for i in starts if i > main), len(lines))
    return lines[main + 1 : end]


def frames(stack: str) -> list[str]:
    """The frame lines, innermost first, of the main thread in a dump."""
    lines = main_thread(stack)
    py_spy = [line.strip() for line in lines if _PY_SPY_FRAME.match(line)]
    if py_spy:
        return py_spy
    return [line.strip() for line in reversed(lines) if _FAULTHANDLER_FRAME.match(line)]


def collective(stack: str | None) -> str | None:
    """The collective the stack is in, or None (no stack, or none of them)."""
    if not stack:
        return None
    for frame in frames(stack):
        for pattern, name in _COLLECTIVES:
            if pattern.search(frame):
                return name
    return None
