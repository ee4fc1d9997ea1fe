"""The per-host cost of a warm `site.yml` run, and what it projects to at 100 and 1,000 nodes.

    python bench/warm_site.py -i INVENTORY [--limit phase2c] [--repeats 3] [--slowest 8] [--timeout 3600]

Needs a cluster that is already provisioned (e.g. the sandbox after `site.yml -l phase2c`): every run here
must change nothing. One warm-up run first (it fills the fact cache and SSH's control sockets, as any
operator's second run finds them), then, alternately, --repeats runs on the limit's first host alone and
on the whole limit (n hosts). The medians give the one-host time T1 and the n-host time Tn; the cost each
further host adds is m = (Tn - T1) / (n - 1), and a site of N hosts is projected at T1 + (N - 1) * m.

That projection holds while the controller is what grows with the host count (Ansible's per-task,
per-host worker and result handling on one machine): it is linear in N for any `forks`, since more forks
only overlap remote time, not the controller's CPU. It is optimistic where N / forks rounds of a slow
remote task dominate instead; the slowest tasks printed for each run show which tasks those would be.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.provisioning import slowest_tasks  # noqa: E402

PROJECTED_SIZES = (100, 1000)


@dataclass(frozen=True)
class WarmCost:
    one_host_s: float  # T1
    hosts: int  # n
    all_hosts_s: float  # Tn

    @property
    def per_host_s(self) -> float:
        """What each host past the first adds to the run: m = (Tn - T1) / (n - 1), never below 0."""
        if self.hosts < 2:
            raise ValueError("the per-host cost needs a run on two hosts or more")
        return max(0.0, (self.all_hosts_s - self.one_host_s) / (self.hosts - 1))

    def projected_s(self, hosts: int) -> float:
        """T1 + (N - 1) * m for a site of `hosts` hosts."""
        if hosts < 1:
            raise ValueError(f"a site has at least one host, got {hosts}")
        return self.one_host_s + (hosts - 1) * self.per_host_s


def warm_cost(one_host_runs: Sequence[float], all_hosts_runs: Sequence[float], hosts: int) -> WarmCost:
    """The medians of the repeated runs, as a WarmCost."""
    if not one_host_runs or not all_hosts_runs:
        raise ValueError("need at least one run on one host and one on all hosts")
    return WarmCost(statistics.median(one_host_runs), hosts, statistics.median(all_hosts_runs))


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-i", "--inventory", type=Path, required=True, help="a converged cluster")
    parser.add_argument("--limit", default="phase2c", help="the hosts of the n-host runs (default phase2c)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each (default 3)")
    parser.add_argument("--slowest", type=int, default=8, help="print this many slowest tasks of each run")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds a run may take")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    from tooling.inventory import group_hosts, load_inventory
    from tooling.runner import run_playbook

    hosts = group_hosts(load_inventory(args.inventory), args.limit)
    if len(hosts) < 2:
        print(f"--limit {args.limit} holds {len(hosts)} host(s); the per-host cost needs two or more")
        return 2
    limits = {"one host": hosts[0], "all hosts": args.limit}
    times: dict[str, list[float]] = {name: [] for name in limits}
    with tempfile.TemporaryDirectory(prefix="ddp-bench-warm-") as tmp:

        def run(name: str, label: str) -> float | None:
            started = time.perf_counter()
            result = run_playbook(
                "site.yml",
                inventory=args.inventory,
                runs_dir=f"{tmp}/runs",
                limit=limits[name],
                label=label,
                progress=False,
                timeout=args.timeout,
            )
            seconds = time.perf_counter() - started
            changed = sum(s.changed for s in result.stats.values())
            if not result.ok:
                print(f"{label} failed: {result.explanation}")
                return None
            warning = "" if changed == 0 else "  (not warm: the cluster was not converged)"
            print(f"{label:16s} {seconds:7.1f} s  changed={changed}{warning}")
            for task, took in slowest_tasks(result.artifact_dir, args.slowest):
                print(f"    {took:6.1f} s  {task}")
            return seconds

        if run("all hosts", "warm-up") is None:
            return 1
        for repeat in range(args.repeats):
            order = list(limits) if repeat % 2 == 0 else list(reversed(limits))
            for name in order:
                seconds = run(name, f"{name.replace(' ', '-')}-{repeat + 1}")
                if seconds is None:
                    return 1
                times[name].append(seconds)
    cost = warm_cost(times["one host"], times["all hosts"], len(hosts))
    print(
        f"warm site.yml: 1 host {cost.one_host_s:.1f} s, {cost.hosts} hosts {cost.all_hosts_s:.1f} s "
        f"(medians of {args.repeats}); per host {cost.per_host_s:.2f} s"
    )
    for size in PROJECTED_SIZES:
        print(f"projected at {size:5d} hosts: {cost.projected_s(size) / 60:6.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
