"""`tooling sweep --lock`: a sweep's chosen trial becomes the phase's production config, as a new version.

Versions are never overwritten (v1, v2, ...: the next unused number), each config has its evidence beside
it (phase<P>-v<k>.evidence.json: the sweep, every trial's figures, who locked it and when), and the pointer
(phase<P>.current) moves last. A failure at any point leaves the previous version current and no half
version behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ddp.atomic import atomic_write_text, fsync_dir
from ddp.config import _deep_merge, read_with_base, validate_config
from ddp.config_errors import ConfigError
from tooling.console import ToolingError
from tooling.job import production
from tooling.sweep.grid import describe
from tooling.sweep.ranking import Ranking, rank
from tooling.sweep.records import SweepPlan, TrialRecord, who

EVIDENCE_SCHEMA = 1


@dataclass(frozen=True)
class Locked:
    version: int
    config: Path
    evidence: Path
    trial: TrialRecord
    previous: str | None  # the version that was current before, by file name


def choose(plan: SweepPlan, records: list[TrialRecord], trial: int | None) -> tuple[TrialRecord, Ranking]:
    """The trial to lock: the best by default, or `trial` if it qualifies. Raises ToolingError (exit 2)."""
    ranking = rank(records, plan.loss_margin)
    if trial is None:
        if len(records) < len(plan.combinations):
            raise ToolingError(
                f"sweep {plan.id} has run {len(records)} of {len(plan.combinations)} trials: its best is not "
                "known yet",
                hint=f"finish it with `tooling sweep --resume {plan.id}`, or pick one with --trial N",
            )
        if ranking.best is None:
            raise ToolingError(
                f"sweep {plan.id}: no trial qualifies (every one failed or its loss misbehaved)",
                hint="see its sweep.md; run another sweep",
            )
        return ranking.best, ranking
    why = ranking.why_not(trial)
    if why is not None:
        raise ToolingError(f"sweep {plan.id}: trial {trial} cannot be locked: {why}")
    chosen = next(r for r in ranking.ranked if r.trial == trial)
    return chosen, ranking


def nested(combination: dict[str, Any]) -> dict[str, Any]:
    """{"training.batch_size": 32} -> {"training": {"batch_size": 32}}."""
    out: dict[str, Any] = {}
    for key, value in combination.items():
        node = out
        *sections, leaf = key.split(".")
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = value
    return out


def locked_settings(plan: SweepPlan, chosen: TrialRecord) -> dict[str, Any]:
    """What was measured: the production settings the sweep ran over, with the chosen combination on top."""
    below = (plan.measured_over or {}).get("settings") or {}
    return _deep_merge(below, nested(chosen.combination))


def _create(path: Path, text: str) -> None:
    """Write a new file whole, or fail if the name is taken: an earlier version is never overwritten."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.link(tmp, path)
    finally:
        os.unlink(tmp)
    fsync_dir(path.parent)


def _config_text(
    phase: str, version: int, base: str, settings: dict[str, Any], plan: SweepPlan, chosen: TrialRecord
) -> str:
    figures = f"{chosen.throughput:.1f} samples/s" if chosen.throughput is not None else "no throughput"
    header = (
        f"# Production config of phase {phase}, version {version}: locked by `tooling sweep --lock`\n"
        f"# from sweep {plan.id}, trial {chosen.trial} ({describe(chosen.combination, plan.axes)}: "
        f"{figures}).\n"
        f"# Every trial's figures: {production.stem(phase)}-v{version}.evidence.json.\n"
        "# Deploys of the phase lay this file over the phase's config; lock a new version rather than\n"
        "# editing it.\n"
    )
    body = yaml.safe_dump({"base": base}, sort_keys=False) + yaml.safe_dump(settings, sort_keys=True)
    return header + body


def evidence(
    plan: SweepPlan,
    records: list[TrialRecord],
    ranking: Ranking,
    chosen: TrialRecord,
    version: int,
    settings: dict[str, Any],
    previous: str | None,
    config_name: str,
    phase_config: str,
    now: float,
) -> dict[str, Any]:
    return {
        "schema": EVIDENCE_SCHEMA,
        "phase": plan.phase,
        "version": version,
        "config": config_name,
        "base": phase_config,
        "settings": settings,
        "chosen": {"trial": chosen.trial, "combination": chosen.combination},
        "previous": previous,
        "locked_by": who(),
        "locked_at": now,
        "locked_at_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "sweep": {
            "id": plan.id,
            "mode": plan.mode,
            "inventory": plan.inventory,
            "grid": [axis.arg for axis in plan.axes],
            "steps": plan.steps,
            "sets": plan.sets,
            "loss_margin": plan.loss_margin,
            "measured_over": plan.measured_over,
            "created_at": plan.created_at,
            "created_by": plan.created_by,
        },
        "ranking": {
            "ranked": [r.trial for r in ranking.ranked],
            "excluded": [{"trial": r.trial, "why": why} for r, why in ranking.excluded],
            "failed": [{"trial": r.trial, "why": why} for r, why in ranking.failed],
        },
        "trials": [r.to_json() for r in records],
    }


def lock(
    plan: SweepPlan,
    records: list[TrialRecord],
    phase_config: str,
    trial: int | None = None,
    where: Path | None = None,
) -> Locked:
    chosen, ranking = choose(plan, records, trial)
    folder = production.directory(where)
    folder.mkdir(parents=True, exist_ok=True)
    settings = locked_settings(plan, chosen)
    phase_file = production.PROJECT_ROOT / phase_config
    try:  # the file must load before it can become current
        validate_config(_deep_merge(read_with_base(phase_file), settings), phase_file)
    except ConfigError as exc:
        raise ToolingError(f"the chosen settings do not load over {phase_config}: {exc}") from None
    version = max(production.versions(plan.phase, where), default=0) + 1
    stem = f"{production.stem(plan.phase)}-v{version}"
    config_path, evidence_path = folder / f"{stem}.yaml", folder / f"{stem}.evidence.json"
    pointer = production.pointer_path(plan.phase, where)
    previous = pointer.read_text(encoding="utf-8").strip() if pointer.is_file() else None
    base = os.path.relpath(phase_file.resolve(), folder.resolve())
    now = time.time()
    record = evidence(
        plan, records, ranking, chosen, version, settings, previous, config_path.name, phase_config, now
    )
    created: list[Path] = []
    try:
        _create(evidence_path, json.dumps(record, indent=2, sort_keys=True) + "\n")
        created.append(evidence_path)
        _create(config_path, _config_text(plan.phase, version, base, settings, plan, chosen))
        created.append(config_path)
        atomic_write_text(pointer, config_path.name + "\n")
    except FileExistsError:
        _remove(created)
        raise ToolingError(
            f"version {version} of phase {plan.phase} appeared while locking (another lock at the same "
            "time?); nothing changed",
            hint="run the lock again",
        ) from None
    except BaseException:
        _remove(created)
        raise
    return Locked(version, config_path, evidence_path, chosen, previous)


def _remove(paths: list[Path]) -> None:
    for path in reversed(paths):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
