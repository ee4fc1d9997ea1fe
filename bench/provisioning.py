"""Cold and warm provisioning of a 4-node sandbox to phase-2c-ready.

    python bench/provisioning.py [--nodes 4] [--keep]

Starts a sandbox of its own (prefix ddp-bench, its own subnet, state and inventory), times
`site.yml -l phase2c` from the bare node image (cold), then again (warm, must change nothing), prints both
times and the warm/cold ratio, and removes the sandbox. Targets on a 2-core machine: cold <= 15 min,
warm <= 60 s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--keep", action="store_true", help="leave the sandbox running afterwards")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ddp-bench-prov-") as tmp:
        os.environ.update(
            {
                "DDP_SANDBOX_PREFIX": "ddp-bench",
                "DDP_SANDBOX_SUBNET": "10.213.40.0/24",
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
            cold, warm = timings
            print(f"sandbox up: {boot:.1f} s")
            print(f"warm/cold = {warm / cold:.3f}  (targets: cold <= 900 s, warm <= 60 s)")
        finally:
            if not args.keep:
                cluster.down(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
