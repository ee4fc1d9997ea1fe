"""One rank of the DDP trainer: its arguments, configuration, start-up checks, training and exit code.

Run through ddp/real_ddp_trainer.py, the entry point torchrun starts (directly, or forked from the node's
warm pool: ddp/warm_pool.py); the exit codes are listed there.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import NoReturn

from ddp.config import TrainerConfig, load_config
from ddp.config_errors import ConfigError
from ddp.control import peer_failure_hold_s
from ddp.cpu_threads import apply_launcher_threads
from ddp.dist import init_distributed, launched_world_size, shutdown_distributed
from ddp.logs import setup_logging
from ddp.metrics import MetricsServerError, TrainerMetrics
from ddp.orphan_guard import OrphanGuard, guard_under_torchrun
from ddp.startup_checks import check_startup
from ddp.status import RankStatus
from ddp.trainer import NonFiniteLossError, Trainer
from ddp.workloads.imported import WorkloadImportError

EXIT_PEER_FAILED = 1  # what an uncaught exception gives: the code torchrun has always seen here
EXIT_BAD_INPUT = 2
EXIT_NONFINITE = 3


def _rank_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of ranks, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of ranks, got {value}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="real_ddp_trainer", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, type=Path, help="trainer YAML config")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override one setting (repeatable), e.g. --set training.max_steps=50",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="check that the config would start on this node (imports, data shards, directories), then exit",
    )
    parser.add_argument(
        "--world-size",
        type=_rank_count,
        metavar="N",
        help="with --check: the job's total process count the data is sharded over (default: $WORLD_SIZE, "
        "else 1)",
    )
    args = parser.parse_args(argv)
    if args.world_size is not None and not args.check:
        parser.error("--world-size goes with --check; a run takes its world size from torchrun")
    return args


def preload() -> None:
    """What a rank imports on its way to the first step beyond this module's own imports: building DDP
    imports torch._dynamo (about a second of CPU, 800 modules). The warm pool runs this before it forks, so
    its ranks find it done."""
    importlib.import_module("torch._dynamo")


def main(argv: list[str] | None = None) -> int:
    # First: from here on, losing the torchrun agent stops this worker.
    guard = guard_under_torchrun()
    apply_launcher_threads()  # before any work: a rank forked from the warm pool has the pool's count
    args = parse_args(argv)
    world_size = args.world_size or launched_world_size()
    try:
        cfg = load_config(args.config, args.overrides)
        # Before anything is written: a run that cannot start leaves no run directory behind.
        check_startup(cfg, args.config, world_size)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.check:
        print(f"{args.config}: valid; ready to start here with {world_size} rank(s)")
        return 0
    return train(cfg, args.config, guard)


def train(cfg: TrainerConfig, source: Path, guard: OrphanGuard | None) -> int:
    env = init_distributed(cfg.distributed)
    run_dir = cfg.run_dir
    log = setup_logging(run_dir / "logs", env, cfg.run.name, cfg.logging.level)
    status = RankStatus(run_dir / "status", env, cfg.run.name)
    trainer: Trainer | None = None

    def last_status(reason: str) -> None:
        # Once training, the trainer's own status (step, loss) is the one to end on; it reads figures the
        # training thread may be changing, so a failure falls back to the plain status.
        if trainer is not None:
            with contextlib.suppress(Exception):
                trainer.telemetry.write_status("failed", final=True, error=reason)
                return
        status.write("failed", final=True, error=reason)

    if guard is not None:
        guard.add_last_words(last_status)
        guard.add_last_words(lambda reason: log.error("%s", reason))
    metrics = TrainerMetrics(env, cfg.run.name)
    try:
        try:
            if cfg.metrics.enabled:
                address, port = metrics.serve(cfg.metrics, env.local_rank)
                log.info("metrics on http://%s:%d/metrics", address, port)
            trainer = Trainer(cfg, env, metrics, run_dir)
        except (MetricsServerError, WorkloadImportError, ValueError) as exc:
            # Found only once built (a user's dataset too small, a port taken): the rank says it failed.
            log.error("%s: cannot start: %s", source, exc)
            status.write("failed", error=f"cannot start: {exc}")
            return EXIT_BAD_INPUT
        trainer.run()
        return 0
    except NonFiniteLossError as exc:
        log.error("%s", exc)
        return EXIT_NONFINITE
    except Exception as exc:
        if trainer is not None and env.world_size > 1:
            hold_s = peer_failure_hold_s()
            log.error("failed: %s; waiting up to %.0f s for the agent", exc, hold_s)
            if trainer.stop.wait_for_signal(hold_s):
                leave_at_once()
        raise
    finally:
        metrics.close()
        shutdown_distributed()


def leave_at_once() -> NoReturn:
    """The agent is stopping the group after a peer failed: exit now. A normal exit tears down the process
    group, the metrics server and the interpreter (1.8 s for three such ranks of a 2-core machine, all of
    it on the restart's path); the kernel closes the sockets just as well. The traceback still goes to
    stderr, where torchrun shows it, and the logs are flushed."""
    traceback.print_exc()
    logging.shutdown()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(EXIT_PEER_FAILED)
