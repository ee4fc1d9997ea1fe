"""ddp/rendezvous_poll.py: the `ddp-c10d` rendezvous backend, registered through its entry point, ends a
node's wait for a round at the configured poll, where torch's own c10d waits out its second.

Each backend runs in a process of its own (the poll wraps a torch function for the whole process): two
nodes' handlers on one store, the first joining 0.3 s before the second. The second completes the round
as it joins; the first learns of it at its next read of the state. Both backends are measured in the
same test, so a torch whose wait changes fails here. Measured: from the second node's join to the first
node's rendezvous returning (both nodes then exchange the store's address, which the second waits for).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ddp.rendezvous_poll import BACKEND, MIN_POLL_S, POLL_KEY, poll_interval

ROOT = Path(__file__).resolve().parents[2]
POLL_S = 0.05
SECOND_JOINS_AFTER_S = 0.3

TWO_NODES = """
import json, sys, threading, time
from torch.distributed.elastic.rendezvous import RendezvousParameters, rendezvous_handler_registry

backend, port, conf = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
handlers = [
    rendezvous_handler_registry.create_handler(RendezvousParameters(
        backend=backend, endpoint=f"127.0.0.1:{port}", run_id="poll-test", min_nodes=2, max_nodes=2,
        local_addr="127.0.0.1", is_host=is_host, join_timeout="30", **conf))
    for is_host in (True, False)
]
done = {}
def join(index):
    handlers[index].next_rendezvous()
    done[index] = time.monotonic()
first = threading.Thread(target=join, args=(0,))
first.start()
time.sleep(float(sys.argv[4]))
second = threading.Thread(target=join, args=(1,))
second_joins = time.monotonic()
second.start()
first.join(30)
second.join(30)
print(json.dumps({"first_done_after_s": done[0] - second_joins}))
for handler in handlers:
    handler.shutdown()
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _lag(backend: str, conf: dict[str, str]) -> float:
    argv = [sys.executable, "-c", TWO_NODES, backend, str(_free_port()), json.dumps(conf)]
    done = subprocess.run(
        [*argv, str(SECOND_JOINS_AFTER_S)], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])["first_done_after_s"]


@pytest.mark.slow
def test_a_waiting_node_learns_the_round_is_complete_at_the_poll() -> None:
    torch_own = _lag("c10d", {})
    ours = _lag(BACKEND, {POLL_KEY: str(POLL_S)})
    # torch: the first node's one-second wait began as it joined, 0.3 s before the second joined.
    assert torch_own > 0.5, f"torch's c10d backend no longer waits a second ({torch_own:.3f} s)"
    assert ours < 0.6 * torch_own, f"ddp-c10d {ours:.3f} s against c10d {torch_own:.3f} s"


class _Params:
    def __init__(self, **config: object) -> None:
        self.config = config

    def get(self, key: str, default: object = None) -> object:
        return self.config.get(key, default)


@pytest.mark.parametrize(
    ("given", "expected"), [({}, 1.0), ({POLL_KEY: "0.25"}, 0.25), ({POLL_KEY: str(MIN_POLL_S)}, MIN_POLL_S)]
)
def test_the_poll_comes_from_the_rendezvous_config(given: dict[str, str], expected: float) -> None:
    assert poll_interval(_Params(**given)) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["0", "0.01", "2", "soon", "nan"])
def test_a_bad_poll_is_refused_naming_the_key(bad: str) -> None:
    with pytest.raises(ValueError, match=f"{POLL_KEY}={bad}"):
        poll_interval(_Params(**{POLL_KEY: bad}))  # type: ignore[arg-type]
