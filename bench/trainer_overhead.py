"""Trainer (all instrumentation on) vs a bare DDP loop: same model, batch, world size, data, optimizer.

    python bench/trainer_overhead.py [--ranks 2] [--steps 100] [--rounds 7] [--breakdown]

Runs itself under torchrun. In one process group it alternates a bare loop and the real Trainer for
`--steps` steps each, `--rounds` times (the order rotates every round so drift hits every side), and prints
the throughput of each, the median of the per-round ratios trainer/bare with a bootstrap interval
(bench/ratio_stats.py), each side's spread and the machine's load. The verdict against the target (0.97)
is PASS or FAIL only when the interval is wholly on one side; otherwise INCONCLUSIVE.

Instrumentation = Prometheus endpoint, ECS logs, heartbeats (with system sampling), gradient-sync checks,
communication probes, status files. `--breakdown` adds, in the same rounds, one Trainer per instrument
with that instrument off, and prints each instrument's share of the cost: 1 - trainer / trainer-without-it.
Checkpoints are off everywhere (they are not instrumentation and the bare loop has none).

Each side is timed over its steps: the bare loop between barriers, the Trainer over its training loop
(RunResult.loop_seconds), first step to the last step's bookkeeping, heartbeats, sync checks and probes
included. What a run pays once whatever its length (its start and its end: the final status, the summary
gathered from every rank and written) is measured in the same rounds and printed on its own, with its
share of a round: at 100 steps it is a share no real run of thousands of steps pays.
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

    def bare() -> float:
        rng.seed_everything(cfg.training.seed)
        workload = build_workload(cfg.workload, cfg.training.seed)
        model = DDP(
            workload.model,
            bucket_cap_mb=cfg.ddp.bucket_cap_mb,
            gradient_as_bucket_view=cfg.ddp.gradient_as_bucket_view,
        )
        opt = torch.optim.SGD(model.parameters(), lr=cfg.optimizer.lr, momentum=cfg.optimizer.momentum)
        batches = ShardedBatches(workload.dataset, args.batch, env.rank, env.world_size, cfg.training.seed)
        # Epoch after epoch, as the trainer reads: at 4 ranks one epoch is 64 steps, fewer than a round.
        data = (batch for epoch in itertools.count() for batch in batches.epoch(epoch))
        torch.distributed.barrier()
        start = time.perf_counter()
        for _ in range(args.steps):
            inputs, targets = next(data)
            workload.loss_fn(model(inputs), targets).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        torch.distributed.barrier()
        return samples / (time.perf_counter() - start)

    fixed_costs: list[float] = []

    def instrumented(without: str | None = None) -> float:
        trainer = Trainer(validate_config(bench_config(args, out, without)), env, metrics, out / "bench")
        torch.distributed.barrier()
        start = time.perf_counter()
        result = trainer.run()
        torch.distributed.barrier()
        whole = time.perf_counter() - start
        assert result.loop_seconds is not None
        # The steps, as the bare loop is timed; the run's start and end (announcement, final status,
        # summary), paid once a run whatever its length, are printed on their own.
        fixed_costs.append(whole - result.loop_seconds)
        return samples / result.loop_seconds

    sides: dict[str, Callable[[], float]] = {"bare": bare, "trainer": instrumented}
    if args.breakdown:
        sides |= {f"without {name}": functools.partial(instrumented, key) for name, key in WITHOUT.items()}
    bare()  # warm-up: allocator, thread pools, first all-reduce
    load_before = machine_load()
    results: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for round_index in range(args.rounds):
        shift = round_index % len(names)  # every side takes every position in turn
        for name in names[shift:] + names[:shift]:
            results[name].append(sides[name]())
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
    print(f"world size {world_size}, {args.steps} steps x {args.rounds} rounds, batch {args.batch}/rank")
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
