"""Will this config start here? What `--check` answers, and what every rank asks before it writes anything.

The schema (ddp/config.py) says whether a config is well formed; these checks say whether it can start on
this node: the workload's import paths and kwargs, a rank's share of the data against the batch size, the
backend, and the directories the run creates. Each problem is one line naming the key and what was
expected, so a run that cannot start stops before its run directory exists.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ddp.config import TrainerConfig
from ddp.config_errors import ConfigError
from ddp.data import shard_problem
from ddp.dist import backend_problem
from ddp.workloads import dataset_size, workload_problems

_PROBE_PREFIX = ".ddp-write-probe-"


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path))  # normalised (`..` resolved), symlinks left alone


def directory_problem(path: Path, key: str) -> str | None:
    """Why this process cannot create (or write in) the directory `path`; None when it can.

    Tried, not inferred from permission bits (root, ACLs and read-only mounts all disagree with them): a
    temporary directory is made in the deepest part of `path` that exists, then removed.
    """
    target = _absolute(path)
    existing = next(p for p in (target, *target.parents) if os.path.exists(p))
    if not existing.is_dir():
        blocked = "" if existing == target else f", so {target} cannot be created"
        return f"{key}: {existing} is a file{blocked}; expected a directory"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=_PROBE_PREFIX, dir=existing))
    except OSError as exc:
        return (
            f"{key}: cannot create {target}: writing in {existing} fails ({exc.strerror}); "
            "expected a directory this user can write"
        )
    return None


def startup_problems(cfg: TrainerConfig, world_size: int) -> list[str]:
    """Everything known before building anything that would stop a run of `world_size` ranks."""
    problems: list[str | None] = [*workload_problems(cfg.workload)]
    samples = dataset_size(cfg.workload)
    if samples is not None:  # a user's dataset is sized when it is built (ddp/data.py checks it then)
        problems.append(shard_problem(samples, world_size, cfg.training.batch_size))
    problems.append(backend_problem(cfg.distributed.backend))
    run_dir_problem = directory_problem(cfg.run_dir, "run.output_dir")
    problems.append(run_dir_problem)
    inside_run_dir = _absolute(cfg.checkpoint_dir).is_relative_to(_absolute(cfg.run_dir))
    if cfg.checkpoint.enabled and not (run_dir_problem and inside_run_dir):  # said once is enough
        problems.append(directory_problem(cfg.checkpoint_dir, "checkpoint.dir"))
    return [problem for problem in problems if problem is not None]


def check_startup(cfg: TrainerConfig, source: str | Path, world_size: int) -> None:
    """Raise a ConfigError naming `source` when the config cannot start here."""
    problems = startup_problems(cfg, world_size)
    if problems:
        raise ConfigError(source, problems)
