"""Trainer (all instrumentation on) vs a bare DDP loop: same model, batch, world size, data, optimizer.

    python bench/trainer_overhead.py [--ranks 2] [--steps 100] [--rounds 7] [--block 10] [--breakdown]

Runs itself under torchrun. In one process group each round runs a bare loop and the real Trainer side by
side, `--block` steps of one, then `--block` steps of the other, and so on for `--steps` steps each (the
order turns every block), and prints the throughput of each, the median of the per-round ratios
trainer/bare with a bootstrap interval (bench/ratio_stats.py), each side's spread and the machine's load.
Alternating a few steps at a time leaves the machine's drift (tens of seconds on a shared host) no time
to favour either side; whole runs one after the other could not tell a 3 % difference apart here. The
verdict against the target (0.97) is PASS or FAIL only when the interval is wholly on one side;
otherwise INCONCLUSIVE.

Instrumentation = Prometheus endpoint, ECS logs, heartbeats (with system sampling), gradient-sync checks,
communication probes, status files. `--breakdown` adds, in the same rounds, one Trainer per instrument
with that instrument off, and prints each instrument's share of the cost: 1 - trainer / trainer-without-it.
Checkpoints are off everywhere (they are not instrumentation and the bare loop has none).

Each side is timed over its own steps: the bare loop's data, forward, backward, optimizer step; the
Trainer's steps as `Trainer.stepwise()` yields them, each with its bookkeeping (heartbeats, sync checks,
probes, status). The Trainer's threads (status writer, link prober, metrics endpoint) run on while the
bare loop has its turn; what they do then is charged to the bare loop, which makes the ratio a little
kinder than it is (they are idle but for a status write every 10 steps). What a run pays once whatever
its length (its start and its end: the announcement, final status, the summary gathered from every rank
and written) is measured in the same rounds and printed on its own, with its share of a round: at 100
steps it is a share no real run of thousands of steps pays.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ratio_stats import judge, machine_load, paired_ratio, relative_spread  # noqa: E402

TARGET = 0.97
# Each instrument turned off by its own setting (pushed past the run's last step); heartbeats carry the
# ECS step log lines and the system sampling, so they go together.
WITHOUT: dict[str, str] = {
    "sync checks": "sync_check_every_steps",
    "comm probes": "comm_probe_every_steps",
    "status files": "status_every_steps",
    "heartbeats, logs, system sampling": "log_every_steps",
}


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    # Not --nproc: torchrun re-reads this script's arguments and takes --nproc for its own --nproc-per-node.
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--block", type=int, default=10, help="steps a side runs before the other's turn")
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--breakdown", action="store_true", help="also measure each instrument's share")
    return parser.parse_args()


def bench_config(args: argparse.Namespace, out: Path, without: str | None = None) -> dict:
    """The config of every side; `without` names the setting of the one instrument turned off."""
    config: dict = {
        "run": {"name": "bench", "output_dir": str(out)},
        "workload": {
            "kind": "synthetic",
            "input_dim": 512,
            "hidden_dim": args.hidden,
            "num_layers": 4,
            "num_samples": 16384,
        },
        "training": {"batch_size": args.batch, "max_steps": args.steps, "log_every_steps": 20},
        "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9},
        "checkpoint": {"enabled": False},
        "metrics": {
            "enabled": True,
            "bind_address": "127.0.0.1",
            "base_port": 19500,
            "sync_check_every_steps": 50,
            "comm_probe_every_steps": 100,
            "status_every_steps": 10,
        },
    }
    if without == "log_every_steps":
        config["training"]["log_every_steps"] = args.steps + 1
    elif without is not None:
        config["metrics"][without] = args.steps + 1
    return config


class Side:
    """One side of a round: `step()` runs one step; `finish()` ends the run and returns what its end cost."""

    def step(self) -> None:
        raise NotImplementedError

    def finish(self) -> float:
        return 0.0


def worker(args: argparse.Namespace) -> None:
    import torch
    from torch.nn.parallel import DistributedDataParallel as DDP

    from ddp import rng
    from ddp.config import validate_config
    from ddp.data import ShardedBatches
    from ddp.dist import init_distributed, shutdown_distributed
    from ddp.logs import setup_logging
    from ddp.metrics import TrainerMetrics
    from ddp.trainer import Trainer
    from ddp.workloads import build_workload

    out = Path(os.environ["BENCH_OUT"])
    cfg = validate_config(bench_config(args, out))  # the shared settings of every side
    env = init_distributed(cfg.distributed)
    setup_logging(out / "bench" / "logs", env, "bench", "WARNING")
    metrics = TrainerMetrics(env, "bench")
    metrics.serve(cfg.metrics, env.local_rank)
    samples = args.steps * args.batch * env.world_size

    class Bare(Side):
        def __init__(self) -> None:
            rng.seed_everything(cfg.training.seed)
            workload = build_workload(cfg.workload, cfg.training.seed)
            self.loss_fn = workload.loss_fn
            self.model = DDP(
                workload.model,
                bucket_cap_mb=cfg.ddp.bucket_cap_mb,
                gradient_as_bucket_view=cfg.ddp.gradient_as_bucket_view,
            )
            self.opt = torch.optim.SGD(
                self.model.parameters(), lr=cfg.optimizer.lr, momentum=cfg.optimizer.momentum
            )
            batches = ShardedBatches(
                workload.dataset, args.batch, env.rank, env.world_size, cfg.training.seed
            )
            # Epoch after epoch, as the trainer reads: at 4 ranks one epoch is 64 steps, fewer than a round.
            self.data = (batch for epoch in itertools.count() for batch in batches.epoch(epoch))

        def step(self) -> None:
            inputs, targets = next(self.data)
            self.loss_fn(self.model(inputs), targets).backward()
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)

    class Instrumented(Side):
        def __init__(self, without: str | None = None) -> None:
            trainer = Trainer(validate_config(bench_config(args, out, without)), env, metrics, out / "bench")
            self.steps = trainer.stepwise()
            started = time.perf_counter()
            next(self.steps)  # resumed (nothing here) and announced
            self.start_s = time.perf_counter() - started

        def step(self) -> None:
            next(self.steps)

        def finish(self) -> float:
            started = time.perf_counter()
            for _ in self.steps:
                raise RuntimeError("the trainer ran more steps than the bench gave it")
            return self.start_s + time.perf_counter() - started

    makers: dict[str, Callable[[], Side]] = {"bare": Bare, "trainer": Instrumented}
    if args.breakdown:
        makers |= {f"without {name}": functools.partial(Instrumented, key) for name, key in WITHOUT.items()}
    warm = Bare()  # warm-up: allocator, thread pools, first all-reduces
    for _ in range(args.block):
        warm.step()
    del warm
    load_before = machine_load()
    results: dict[str, list[float]] = {name: [] for name in makers}
    fixed_costs: list[float] = []
    names = list(makers)
    for _ in range(args.rounds):
        sides = {name: make() for name, make in makers.items()}
        seconds = dict.fromkeys(names, 0.0)
        for block_index, first in enumerate(range(0, args.steps, args.block)):
            shift = block_index % len(names)  # every side takes every position in turn
            for name in names[shift:] + names[:shift]:
                side = sides[name]
                started = time.perf_counter()
                for _ in range(min(args.block, args.steps - first)):
                    side.step()
                seconds[name] += time.perf_counter() - started
        for name in names:
            results[name].append(samples / seconds[name])
            fixed = sides[name].finish()
            if name == "trainer":
                fixed_costs.append(fixed)
        torch.distributed.barrier()
    if env.is_main:
        report(args, env.world_size, results, load_before)
        round_s = args.steps * args.batch * env.world_size / statistics.median(results["trainer"])
        fixed = statistics.median(fixed_costs)
        print(
            f"once a run, not counted above: the trainer's start and end (summary, final status) "
            f"{fixed * 1000:.1f} ms, {fixed / round_s:.1%} of a {args.steps}-step round"
        )
    metrics.close()
    shutdown_distributed()


def report(args: argparse.Namespace, world_size: int, results: dict[str, list[float]], load: str) -> None:
    print(
        f"world size {world_size}, {args.steps} steps x {args.rounds} rounds in blocks of {args.block}, "
        f"batch {args.batch}/rank"
    )
    print(f"before: {load}; after: {machine_load()}")
    for name, values in results.items():
        spread = relative_spread(values)
        print(
            f"{name:42s} median {statistics.median(values):8.1f} samples/s, spread "
            f"{'-' if spread is None else f'{spread:.1%}'}; rounds: " + ", ".join(f"{v:.1f}" for v in values)
        )
    estimate = paired_ratio(results["trainer"], results["bare"])
    verdict = judge(estimate, TARGET, higher_is_better=True)
    print(f"ratio trainer/bare = {estimate.describe()}: {verdict} (target >= {TARGET})")
    for name in WITHOUT:
        without = results.get(f"without {name}")
        if without:
            share = paired_ratio(results["trainer"], without)
            print(
                f"cost of {name}: {1 - share.ratio:+.1%} "
                f"(interval {1 - share.high:+.1%}..{1 - share.low:+.1%})"
            )


def main() -> int:
    args = parse()
    if "RANK" in os.environ:
        worker(args)
        return 0
    with tempfile.TemporaryDirectory(prefix="ddp-bench-") as out:
        env = dict(
            os.environ,
            BENCH_OUT=out,
            TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1",
            PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        )
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={args.ranks}",
            __file__,
            *sys.argv[1:],
        ]
        return subprocess.run(command, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
