"""Trainer (all instrumentation on) vs a bare DDP loop: same model, batch, world size, data, optimizer.

    python bench/trainer_overhead.py [--nproc 2] [--steps 100] [--rounds 5]

Runs itself under torchrun. In one process group it alternates a bare loop and the real Trainer for
`--steps` steps each, `--rounds` times (the order flips every round so drift hits both), and prints the
throughput of each and the ratio of medians. Instrumentation = Prometheus endpoint, ECS logs, heartbeats,
gradient-sync checks, communication probes, status files. Checkpoints are off in both (they are not
instrumentation and the bare loop has none). Target: ratio >= 0.97.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=64)
    return parser.parse_args()


def bench_config(args: argparse.Namespace, out: Path) -> dict:
    return {
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
    cfg = validate_config(bench_config(args, out))
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
        data = batches.epoch(0)
        torch.distributed.barrier()
        start = time.perf_counter()
        for _ in range(args.steps):
            inputs, targets = next(data)
            workload.loss_fn(model(inputs), targets).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        torch.distributed.barrier()
        return samples / (time.perf_counter() - start)

    def instrumented() -> float:
        trainer = Trainer(cfg, env, metrics, out / "bench")
        torch.distributed.barrier()
        start = time.perf_counter()
        trainer.run()
        torch.distributed.barrier()
        return samples / (time.perf_counter() - start)

    bare()  # warm-up: allocator, thread pools, first all-reduce
    results: dict[str, list[float]] = {"bare": [], "trainer": []}
    for round_index in range(args.rounds):
        order = [("bare", bare), ("trainer", instrumented)]
        for name, fn in order if round_index % 2 == 0 else reversed(order):
            results[name].append(fn())
    if env.is_main:
        for name, values in results.items():
            print(f"{name:8s} samples/s per round: " + ", ".join(f"{v:8.1f}" for v in values))
        bare_median = statistics.median(results["bare"])
        trainer_median = statistics.median(results["trainer"])
        print(
            f"world size {env.world_size}, {args.steps} steps x {args.rounds} rounds, batch {args.batch}/rank"
        )
        print(f"median bare {bare_median:.1f} samples/s, trainer {trainer_median:.1f} samples/s")
        print(f"ratio trainer/bare = {trainer_median / bare_median:.3f} (target >= 0.97)")
    metrics.close()
    shutdown_distributed()


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
            f"--nproc-per-node={args.nproc}",
            __file__,
            *sys.argv[1:],
        ]
        return subprocess.run(command, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
