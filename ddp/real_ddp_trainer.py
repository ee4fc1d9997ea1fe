"""Entry point of the DDP trainer, one process per rank.

    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint node1:29400 \\
        -m ddp.real_ddp_trainer --config ddp/configs/phase2a.yaml
    python -m ddp.real_ddp_trainer --config ddp/configs/phase1.yaml     # one process, for development

Exit codes: 0 completed or stopped cleanly, 2 bad configuration or setup, 3 non-finite loss (policy stop).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ddp.config import load_config
from ddp.config_errors import ConfigError
from ddp.dist import init_distributed, shutdown_distributed
from ddp.logs import setup_logging
from ddp.metrics import MetricsServerError, TrainerMetrics
from ddp.trainer import NonFiniteLossError, Trainer
from ddp.workloads.imported import WorkloadImportError

EXIT_BAD_INPUT = 2
EXIT_NONFINITE = 3


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
    parser.add_argument("--check", action="store_true", help="validate the config and exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"invalid trainer config:\n{exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.check:
        print(f"{args.config}: valid")
        return 0

    env = init_distributed(cfg.distributed)
    run_dir = cfg.output_dir / cfg.run.name
    log = setup_logging(run_dir / "logs", env, cfg.run.name, cfg.logging.level)
    metrics = TrainerMetrics(env, cfg.run.name)
    try:
        if cfg.metrics.enabled:
            address, port = metrics.serve(cfg.metrics, env.local_rank)
            log.info("metrics on http://%s:%d/metrics", address, port)
        trainer = Trainer(cfg, env, metrics, run_dir)
        trainer.run()
        return 0
    except (MetricsServerError, WorkloadImportError, ValueError) as exc:
        log.error("cannot start: %s", exc)
        return EXIT_BAD_INPUT
    except NonFiniteLossError as exc:
        log.error("%s", exc)
        return EXIT_NONFINITE
    finally:
        metrics.close()
        shutdown_distributed()


if __name__ == "__main__":
    sys.exit(main())
