"""Cold and warm provisioning of a 4-node sandbox to phase-2c-ready.

    python bench/provisioning.py [--nodes 4] [--keep]

Starts a sandbox of its own (prefix ddp-bench, its own subnet, state and inventory), times
`site.yml -l phase2c` from the bare node image (cold), then again (warm, must change nothing), prints both
times and the warm/cold ratio, and removes the sandbox. Targets on a 2-core machine: cold <= 15 min,
warm <= 60 s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def slowest_tasks(artifact_dir: Path, count: int) -> list[tuple[str, float]]:
    """Tasks by wall time (the slowest host's, since hosts run a task in parallel), from runner's events."""
    longest: dict[str, float] = {}
    for path in (artifact_dir / "job_events").glob("*.json"):
        event = json.loads(path.read_text())
        data = event.get("event_data", {})
        if event.get("event", "").startswith("runner_on_") and "duration" in data:
            name = f"{data.get('role') or '-'} : {data.get('task', '?')}"
            longest[name] = max(longest.get(name, 0.0), float(data["duration"]))
    return sorted(longest.items(), key=lambda item: item[1], reverse=True)[:count]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--keep", action="store_true", help="leave the sandbox running afterwards")
    parser.add_argument("--subnet", default="10.213.44.0/24", help="private subnet of the bench's sandbox")
    parser.add_argument("--slowest", type=int, default=8, help="print this many slowest tasks of each run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ddp-bench-prov-") as tmp:
        os.environ.update(
            {
                "DDP_SANDBOX_PREFIX": "ddp-bench",
                "DDP_SANDBOX_SUBNET": args.subnet,
                "DDP_SANDBOX_STATE_DIR": f"{tmp}/state",
                "DDP_SANDBOX_INVENTORY": f"{tmp}/inventory",
            }
        )
        from tooling.runner import run_playbook
        from tooling.sandbox import cluster
        from tooling.sandbox.settings import SandboxSettings

        settings = SandboxSettings(nodes=args.nodes)
        started = time.perf_counter()
        cluster.up(settings)
        boot = time.perf_counter() - started
        try:
            timings = []
            for label in ("cold", "warm"):
                t0 = time.perf_counter()
                result = run_playbook(
                    "site.yml",
                    inventory=settings.inventory_dir,
                    runs_dir=f"{tmp}/runs",
                    limit="phase2c",
                    label=f"bench-{label}",
                    progress=False,
                    timeout=3600,
                )
                seconds = time.perf_counter() - t0
                changed = sum(s.changed for s in result.stats.values())
                if not result.ok:
                    print(f"{label} run failed: {result.explanation}")
                    return 1
                timings.append(seconds)
                print(
                    f"{label:4s} site.yml -l phase2c, {args.nodes} nodes: {seconds:7.1f} s, changed={changed}"
                )
                for task, took in slowest_tasks(result.artifact_dir, args.slowest):
                    print(f"    {took:6.1f} s  {task}")
            cold, warm = timings
            print(f"sandbox up: {boot:.1f} s")
            print(f"warm/cold = {warm / cold:.3f}  (targets: cold <= 900 s, warm <= 60 s)")
        finally:
            if not args.keep:
                cluster.down(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
