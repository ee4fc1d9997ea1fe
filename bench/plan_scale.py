"""Planning at scale: a generated site of 64 / 256 / 1,024 nodes x 8 ranks, each planning step timed.

    python bench/plan_scale.py [--sizes 64,256,1024] [--repeats 1] [--plan-max-nodes N] [--budget-s 2]

For each size, an inventory is written the way another site would write it: host names that are not
node1..N (gpu-r03-u17), IPv6 addresses from the documentation range 2001:db8::/32 (RFC 3849), a non-root
SSH user with become (svc-train), SSH port 2222, and the site's own phases file whose four phases (1 node,
a quarter, a half, all) run 8 processes a node over the site's groups. Then, side by side in one process,
each step an operator's `tooling deploy --phase P --plan --offline` goes through is timed (the median of
--repeats): loading the inventory (`ansible-inventory --list` and tooling's own checks), the phase's hosts,
the launch every node's torchrun line is rendered from, the Prometheus targets, and the whole
`deploy --plan --offline --json` command (in-process, so the interpreter's start-up is not counted).

Prints each step's time per size, its per-node slope (least squares), whether it grows linearly (the
largest size's time per node at most LINEAR_TOLERANCE times the smallest's) and PASS/FAIL: linear and the
whole plan under --budget-s at the largest size (a step under NEGLIGIBLE_SHARE of the budget there is
shown as negligible, not judged: its per-node times are timer noise). A plan above --plan-max-nodes is not
run (it is shown as "skipped" and the verdict says the plan was not measured there).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tooling.plan.phase_file import DEFAULT_PHASES_FILE, PHASES_FILE_ENV  # noqa: E402

RANKS = 8
SSH_USER = "svc-train"
SSH_PORT = 2222
PHASE = "2c"  # the site's largest phase: every node
# The largest size's time per node may be this many times the smallest's and still count as linear
# (a fixed cost, such as ansible-inventory's own start-up, makes small sites dearer per node, not cheaper).
LINEAR_TOLERANCE = 1.5
# A step this small a share of the budget at the largest size cannot break it, whatever its growth; its
# per-node times are timer noise, so it is shown as negligible rather than judged.
NEGLIGIBLE_SHARE = 0.05
STEPS = ("inventory", "phase hosts", "torchrun launch", "prometheus targets", "plan --offline")


def host_name(index: int) -> str:
    """Rack and unit, as many sites name their machines: 16 units a rack."""
    return f"gpu-r{index // 16 + 1:02d}-u{index % 16 + 1:02d}"


def host_address(index: int) -> str:
    return f"2001:db8:20::{index + 1:x}"


def phase_sizes(nodes: int) -> dict[str, int]:
    """The site's four phases over `nodes` nodes: one node, a quarter, a half, all (groups nest)."""
    return {"1": 1, "2a": max(2, nodes // 4), "2b": max(3, nodes // 2), "2c": max(4, nodes)}


def write_site(where: Path, nodes: int) -> tuple[Path, Path]:
    """The inventory directory and the site's phases file, for `nodes` training nodes."""
    sizes = phase_sizes(nodes)
    names = [host_name(i) for i in range(sizes["2c"])]
    inventory = where / "inventory"
    (inventory / "group_vars").mkdir(parents=True)
    groups: dict[str, Any] = {
        "nodes": {"hosts": {n: {"ansible_host": host_address(i)} for i, n in enumerate(names)}},
        "monitoring": {"hosts": {"mon-a01": {"ansible_host": "2001:db8:20::fffe"}}},
    }
    for phase, count in sizes.items():
        groups[f"train_{phase}"] = {"hosts": dict.fromkeys(names[:count])}
    (inventory / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": groups}}), encoding="utf-8")
    (inventory / "group_vars" / "all.yml").write_text(
        yaml.safe_dump({"ansible_user": SSH_USER, "ansible_become": True, "ansible_port": SSH_PORT}),
        encoding="utf-8",
    )
    plan = yaml.safe_load(DEFAULT_PHASES_FILE.read_text(encoding="utf-8"))
    for phase, count in sizes.items():
        spec = plan["phases"][phase]
        spec.update(group=f"train_{phase}", nodes=count, min_nodes=count, nproc_per_node=RANKS)
    phases = where / "site-phases.yml"
    phases.write_text(yaml.safe_dump(plan, sort_keys=False), encoding="utf-8")
    return inventory, phases


def timed(step: Callable[[], object], repeats: int) -> float:
    """Median seconds of `repeats` calls of `step`."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@dataclass(frozen=True)
class Growth:
    slope_s_per_node: float
    linear: bool


def growth(nodes: Sequence[int], seconds: Sequence[float], tolerance: float = LINEAR_TOLERANCE) -> Growth:
    """Least-squares seconds per node, and whether the largest size costs per node at most `tolerance`
    times what the smallest does."""
    if len(nodes) != len(seconds) or len(nodes) < 2:
        raise ValueError(f"need two sizes or more with a time each, got {list(nodes)} and {list(seconds)}")
    mean_n, mean_t = statistics.fmean(nodes), statistics.fmean(seconds)
    spread = sum((n - mean_n) ** 2 for n in nodes)
    slope = sum((n - mean_n) * (t - mean_t) for n, t in zip(nodes, seconds, strict=True)) / spread
    per_node = sorted((n, t / n) for n, t in zip(nodes, seconds, strict=True))
    return Growth(slope, per_node[-1][1] <= tolerance * per_node[0][1])


def measure(nodes: int, repeats: int, run_plan: bool) -> dict[str, float | None]:
    """Each step's median seconds for a generated site of `nodes` nodes (None: the plan was skipped)."""
    from typer.testing import CliRunner

    from tooling.cli import app
    from tooling.inventory import load_inventory, phase_hosts
    from tooling.job.deploy import derive_phase_launch
    from tooling.plan.launch import ansible_groups, derive_launch
    from tooling.plan.phases import load_phases

    with tempfile.TemporaryDirectory(prefix="plan-scale-") as scratch:
        inventory, phases = write_site(Path(scratch), nodes)
        os.environ[PHASES_FILE_ENV] = str(phases)
        plan = load_phases()
        spec = plan.get(PHASE)
        loaded = load_inventory(inventory)
        hostvars = loaded["_meta"]["hostvars"]

        def targets() -> list[str]:
            launch = derive_launch(plan, ansible_groups(loaded), hostvars, phase=PHASE)
            return [t.target for t in launch.metrics_targets]

        def offline_plan() -> None:
            argv = ["--home", f"{scratch}/home", "deploy", "-i", str(inventory), "--phase", PHASE]
            done = CliRunner().invoke(app, [*argv, "--run-id", "scale-1", "--plan", "--offline", "--json"])
            if done.exit_code != 0:
                raise SystemExit(f"deploy --plan --offline exited {done.exit_code}:\n{done.stderr[-2000:]}")

        times: dict[str, float | None] = {
            "inventory": timed(lambda: load_inventory(inventory), repeats),
            "phase hosts": timed(lambda: phase_hosts(loaded, PHASE, spec, inventory, plan=plan), repeats),
            "torchrun launch": timed(lambda: derive_phase_launch(loaded, inventory, plan, PHASE), repeats),
            "prometheus targets": timed(targets, repeats),
            "plan --offline": timed(offline_plan, repeats) if run_plan else None,
        }
    return times


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="64,256,1024", help="node counts, comma-separated")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each step a size (median kept)")
    parser.add_argument("--plan-max-nodes", type=int, default=None, help="run the whole plan only up to here")
    parser.add_argument("--budget-s", type=float, default=2.0, help="the plan's budget, largest size")
    args = parser.parse_args(argv)
    try:
        args.sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        parser.error(f"--sizes: expected node counts like 64,256,1024, got {args.sizes!r}")
    if len(args.sizes) < 2 or args.sizes[0] < 4 or args.repeats < 1:
        parser.error("need two --sizes or more, each at least 4 nodes, and --repeats of at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    results = {
        n: measure(n, args.repeats, args.plan_max_nodes is None or n <= args.plan_max_nodes)
        for n in args.sizes
    }
    print(f"{'step':20s}" + "".join(f"{n:>10d} n" for n in args.sizes) + "   ms/node   linear")
    verdicts = []
    for step in STEPS:
        row = [results[n][step] for n in args.sizes]
        cells = "".join(f"{'skipped':>12s}" if t is None else f"{t:11.3f}s" for t in row)
        measured = [(n, t) for n, t in zip(args.sizes, row, strict=True) if t is not None]
        if len(measured) < 2:
            print(f"{step:20s}{cells}   (fewer than two sizes measured)")
            verdicts.append(False)
            continue
        found = growth([n for n, _ in measured], [t for _, t in measured])
        negligible = measured[-1][1] < NEGLIGIBLE_SHARE * args.budget_s
        said = "negligible" if negligible else "yes" if found.linear else "NO"
        print(f"{step:20s}{cells}   {found.slope_s_per_node * 1000:7.3f}   {said}")
        verdicts.append(found.linear or negligible)
    largest = args.sizes[-1]
    whole = results[largest]["plan --offline"]
    within = whole is not None and whole <= args.budget_s
    said = "not measured" if whole is None else f"{whole:.2f} s"
    verdict = "PASS" if within and all(verdicts) else "FAIL"
    budget = f"budget {args.budget_s:g} s"
    print(f"plan --offline at {largest} nodes x {RANKS} ranks: {said} ({budget}): {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
