"""Running the check commands on the nodes: over SSH (tooling.remote), in parallel, one command per host.

A host that never answered in this check run is not dialled again by the later checks: they report the
same reason at once instead of each waiting out its own connect timeout.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tooling.check.cluster import Node
from tooling.remote import RemoteResult, run_command


class NodeShell:
    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = {n.name: n for n in nodes}
        self.down: dict[str, str] = {}
        self._reached: set[str] = set()

    def run(self, commands: dict[str, str], timeout_s: float) -> dict[str, RemoteResult]:
        """host -> result for each host's command; hosts known to be down get their earlier error."""
        results = {h: RemoteResult(h, None, error=self.down[h]) for h in commands if h in self.down}
        live = {h: c for h, c in commands.items() if h not in self.down}
        if live:
            with ThreadPoolExecutor(max_workers=min(16, len(live))) as pool:
                futures = {
                    h: pool.submit(run_command, self.nodes[h].ssh, command, timeout_s)
                    for h, command in live.items()
                }
                for host, future in futures.items():
                    result = future.result()
                    results[host] = result
                    if result.error is None:
                        self._reached.add(host)
                    elif host not in self._reached:
                        # A node that answered before and now times out on a long command is slow, not gone.
                        self.down[host] = result.error
        return {h: results[h] for h in commands}
