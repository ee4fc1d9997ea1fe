"""A sweep's run, behind `tooling sweep` (tooling/sweep/cli.py): start or resume it, run its trials with
progress, rank them, and lock the best (or a chosen) trial as the phase's production config."""

from __future__ import annotations

import datetime as dt
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn
from rich.text import Text

from tooling.console import (
    EXIT_INTERRUPTED,
    CheckFailed,
    ToolingError,
    confirm,
    console,
    err_console,
    print_document,
    print_next,
)
from tooling.inventory import default_inventory
from tooling.job import production
from tooling.plan.phases import PhasePlan
from tooling.sweep import DEFAULT_STEPS, report
from tooling.sweep.grid import (
    Axis,
    as_overrides,
    check_sets,
    describe,
    parse_grid,
    raw_combinations,
    validate,
)
from tooling.sweep.lock import lock
from tooling.sweep.ranking import loss_problem, rank
from tooling.sweep.records import (
    SweepPlan,
    SweepStore,
    TrialRecord,
    latest_sweep,
    record_from_summary,
    who,
)
from tooling.sweep.trials import ClusterTrials, LocalTrials, TrialRunner, TrialSpec, trial_settings


def make_runner(
    mode: str,
    plan: PhasePlan,
    phase: str,
    inventory: Path | None,
    store: SweepStore,
    timeout_s: float,
    restart: bool,
) -> TrialRunner:
    if mode == "local":
        return LocalTrials(plan, phase, store.run_dir, timeout_s)
    assert inventory is not None
    return ClusterTrials(plan, phase, inventory, store.run_dir, timeout_s, restart_first=restart)


class EtaColumn(ProgressColumn):
    """Time left from the mean duration of the trials so far: rich's own estimate only sees the last
    few seconds, and a trial takes minutes."""

    def render(self, task: Task) -> Text:
        if task.finished:
            return Text("done", style="progress.remaining")
        mean = task.fields.get("mean_s")
        if mean is None:
            return Text("ETA after the first trial", style="progress.remaining")
        started = task.fields.get("started") or time.time()
        left = max(0.0, mean * (task.remaining or 0) - (time.time() - started))
        return Text(f"ETA {dt.timedelta(seconds=round(left))}", style="progress.remaining")


def _mean_duration(records: list[TrialRecord]) -> float | None:
    durations = [d for r in records if (d := r.duration_s) is not None]
    return statistics.fmean(durations) if durations else None


def run_trials(
    store: SweepStore, plan: SweepPlan, runner: TrialRunner, raws: list[dict[str, str]], base: list[str]
) -> list[TrialRecord]:
    """Run every trial not yet recorded, recording each as it ends. Returns all the sweep's records."""
    records = store.trials()
    done = {r.trial for r in records}
    total = len(raws)
    if done:
        console.print(f"resuming sweep {plan.id}: {len(done)} of {total} trials already recorded")
    columns = (
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        EtaColumn(),
    )
    with Progress(*columns, console=err_console) as progress:
        task = progress.add_task("", total=total, completed=len(done), mean_s=_mean_duration(records))
        for number, raw in enumerate(raws, 1):
            if number in done:
                continue
            combination = plan.combinations[number - 1]
            setting = describe(combination, plan.axes)
            started = time.time()
            progress.update(task, description=f"trial {number}/{total}: {setting}", started=started)
            spec = TrialSpec(number, f"{plan.id}-t{number:02d}", [*base, *as_overrides(raw)])
            result = runner.run(spec)
            record = record_from_summary(
                number, combination, spec.run_id, result.summary, result.error, started, result.summary_path
            )
            store.append(record)
            records.append(record)
            console.print(Text(f"trial {number}/{total} {setting}:"), _outcome(record, plan.loss_margin))
            progress.update(task, advance=1, mean_s=_mean_duration(records))
    return sorted(records, key=lambda r: r.trial)


def _outcome(record: TrialRecord, margin: float) -> Text:
    if record.status != "ok":
        return Text(f"failed: {record.reason}", style="red")
    sigma = f" ± {record.throughput_sigma:.1f}" if record.throughput_sigma is not None else ""
    comm = f", comm overhead {record.comm_overhead:.1%}" if record.comm_overhead is not None else ""
    loss = f"{record.loss_first:.4g} -> {record.loss_last:.4g}" if record.loss_fell is not None else "-"
    text = Text(f"{record.throughput:.1f} samples/s{sigma}{comm}, loss {loss}")
    if (problem := loss_problem(record, margin)) is not None:
        text.append(f" (not ranked: {problem})", style="yellow")
    return text


def _agree(plan: SweepPlan, given: dict[str, Any]) -> None:
    """A resumed sweep runs with its own settings; a differing one on the command line is a mistake."""
    stored = {
        "--phase": plan.phase,
        "--grid": [a.arg for a in plan.axes],
        "--steps": plan.steps,
        "--set": plan.sets,
        "--local": plan.mode == "local",
        "--inventory": plan.inventory,
        "--loss-margin": plan.loss_margin,
    }
    for option, value in given.items():
        if value is not None and value != stored[option]:
            raise ToolingError(
                f"sweep {plan.id} was started with {option} {stored[option]!r}, not {value!r}",
                hint=f"leave {option} out when resuming (the sweep keeps its own), or start a new sweep",
            )


def _measured_over(locked: production.LockedConfig | None) -> dict[str, Any] | None:
    if locked is None:
        return None
    return {"config": locked.path.name, "version": locked.version, "settings": locked.settings}


@dataclass
class _Request:
    """What to sweep, from the command line or, when resuming, from the sweep's own plan."""

    store: SweepStore
    phase: str
    axes: list[Axis]
    sets: list[str]
    steps: int
    mode: str  # local | cluster
    inventory: Path | None
    stored: SweepPlan | None = None  # the plan being resumed


def _resumed(sweeps_dir: Path, sweep_id: str, given: dict[str, Any]) -> _Request:
    store = SweepStore(sweeps_dir, sweep_id)
    stored = store.load_plan()
    _agree(stored, given)
    inventory = Path(stored.inventory) if stored.inventory else None
    return _Request(
        store, stored.phase, stored.axes, stored.sets, stored.steps, stored.mode, inventory, stored
    )


def _fresh(
    sweeps_dir: Path,
    sweep_id: str | None,
    phase: str | None,
    grid: list[str],
    steps: int | None,
    sets: list[str] | None,
    local: bool,
    inventory: Path | None,
) -> _Request:
    if phase is None:
        raise ToolingError("--phase is required", hint="e.g. tooling sweep --phase 1 --grid lr=0.01,0.1")
    axes = parse_grid(grid)
    check_sets(list(sets or []))
    sweep_id = sweep_id or f"phase{phase}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    store = SweepStore(sweeps_dir, sweep_id)
    store.ensure_new()
    inventory = None if local else (inventory or default_inventory()).resolve()
    mode = "local" if local else "cluster"
    return _Request(store, phase, axes, list(sets or []), steps or DEFAULT_STEPS, mode, inventory)


def start_sweep(
    *,
    phases: PhasePlan,
    phase: str | None,
    grid: list[str],
    steps: int | None,
    sets: list[str] | None,
    local: bool,
    inventory: Path | None,
    sweep_id: str | None,
    resume: str | None,
    loss_margin: float | None,
    timeout_s: float,
    restart: bool,
    sweeps_dir: Path,
    as_json: bool = False,
) -> SweepPlan:
    if resume is not None:
        given = {
            "--phase": phase,
            "--grid": [a.arg for a in parse_grid(grid)] if grid else None,
            "--steps": steps,
            "--set": sets,
            "--local": True if local else None,
            "--inventory": str(inventory.resolve()) if inventory else None,
            "--loss-margin": loss_margin,
        }
        req = _resumed(sweeps_dir, resume, given)
    else:
        req = _fresh(sweeps_dir, sweep_id, phase, grid, steps, sets, local, inventory)
    config = phases.get(req.phase)
    locked = production.current(req.phase, config.config)
    start_from = locked.path if locked is not None else production.PROJECT_ROOT / config.config
    if locked is not None:
        console.print(f"trials run over the {locked.describe()}")
    base = trial_settings(req.mode, req.sets, req.steps)
    combinations = validate(req.axes, start_from, base)
    if req.stored is not None:
        _same_trials(req.stored, combinations, _measured_over(locked))
        plan = req.stored
    else:
        plan = SweepPlan(
            id=req.store.id,
            phase=req.phase,
            axes=req.axes,
            combinations=combinations,
            steps=req.steps,
            sets=req.sets,
            mode=req.mode,
            inventory=str(req.inventory) if req.inventory else None,
            loss_margin=loss_margin or 0.0,
            measured_over=_measured_over(locked),
            created_by=who(),
        )
    raws = raw_combinations(req.axes)
    runner = make_runner(req.mode, phases, req.phase, req.inventory, req.store, timeout_s, restart)
    runner.prepare([*base, *as_overrides(raws[0])])
    if req.stored is None:
        req.store.create(plan)
    where = "this machine" if req.mode == "local" else plan.inventory
    console.print(
        f"sweep {plan.id}: {len(raws)} trials of {plan.steps} steps on phase {plan.phase} ({where}); "
        f"records in {req.store.dir}"
    )
    try:
        records = run_trials(req.store, plan, runner, raws, base)
    except KeyboardInterrupt:
        _interrupted(req, plan, len(raws))
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finish(req.store, plan, records, as_json)
    return plan


def _interrupted(req: _Request, plan: SweepPlan, total: int) -> None:
    kept = len(req.store.trials())
    message = (
        f"[yellow]interrupted[/yellow]: {kept} of {total} trials are recorded in {req.store.trials_path}; "
        f"continue with `tooling sweep --resume {plan.id}`"
    )
    if req.mode != "local":
        message += "; the trial's run may still be going on the nodes (`tooling stop`)"
    err_console.print(message)


def _same_trials(
    stored: SweepPlan, combinations: list[dict[str, Any]], measured_over: dict[str, Any] | None
) -> None:
    if measured_over != stored.measured_over:
        then = (stored.measured_over or {}).get("config", "the phase's config")
        now = (measured_over or {}).get("config", "the phase's config")
        raise ToolingError(
            f"sweep {stored.id} ran its trials over {then}; the phase now starts from {now}",
            hint="its trials would not compare: start a new sweep",
        )
    if combinations != stored.combinations:
        raise ToolingError(
            f"sweep {stored.id}: its combinations load differently now (the phase's config changed?)",
            hint="its trials would not compare: start a new sweep",
        )


def finish(store: SweepStore, plan: SweepPlan, records: list[TrialRecord], as_json: bool = False) -> None:
    """Rank the trials, write the results, show them (with `as_json`, also as one document on stdout)."""
    ranking = rank(records, plan.loss_margin)
    result = report.result(plan, records, ranking)
    json_path, md_path = store.write_result(result, report.markdown(plan, ranking))
    console.print(report.table(plan, ranking))
    console.print(f"results: {md_path} (and sweep.json, trials.jsonl beside it)")
    if as_json:
        print_document({**result, "written": {"json": str(json_path), "markdown": str(md_path)}})
    if ranking.best is None:
        raise CheckFailed(
            f"sweep {plan.id}: no trial qualifies (every one failed or its loss misbehaved)",
            hint=f"see {md_path}; adjust the grid or --steps and sweep again",
        )
    best = ranking.best
    console.print(f"[green]best: trial {best.trial}[/green] ({describe(best.combination, plan.axes)})")
    print_next(
        f"tooling sweep --lock --phase {plan.phase} --id {plan.id} (makes it phase {plan.phase}'s "
        "production config)"
    )


def lock_sweep(
    *,
    phases: PhasePlan,
    phase: str | None,
    sweep_id: str | None,
    trial: int | None,
    sweeps_dir: Path,
    yes: bool = False,
) -> None:
    if phase is None:
        raise ToolingError("--lock needs --phase", hint="e.g. tooling sweep --lock --phase 1")
    config = phases.get(phase)
    if sweep_id is None:
        sweep_id = latest_sweep(sweeps_dir, phase)
        if sweep_id is None:
            raise ToolingError(
                f"no sweep of phase {phase} in {sweeps_dir}",
                hint=f"run one: tooling sweep --phase {phase} --grid NAME=V1,V2",
            )
    store = SweepStore(sweeps_dir, sweep_id)
    plan = store.load_plan()
    if plan.phase != phase:
        raise ToolingError(f"sweep {sweep_id} is a sweep of phase {plan.phase}, not {phase}")
    current = production.current(phase, config.config)
    confirm(
        f"Make {'the best trial' if trial is None else f'trial {trial}'} of sweep {sweep_id} phase {phase}'s "
        f"production config (a new version over {current.path.name if current else 'the plan config'}; "
        "deploys and local runs use it from then on)?",
        yes=yes,
    )
    locked = lock(plan, store.trials(), config.config, trial)
    if current is not None and plan.measured_over and plan.measured_over["config"] != current.path.name:
        console.print(
            f"[yellow]note[/yellow]: the sweep ran over {plan.measured_over['config']}, not the then current "
            f"{current.path.name}; version {locked.version} builds on what was measured"
        )
    figures = f"{locked.trial.throughput:.1f} samples/s" if locked.trial.throughput is not None else ""
    console.print(
        f"[green]phase {phase} production config, version {locked.version}[/green]: {locked.config}\n"
        f"  trial {locked.trial.trial} of sweep {plan.id}: {describe(locked.trial.combination, plan.axes)}"
        f" ({figures})\n"
        f"  evidence: {locked.evidence}\n"
        f"  previous: {locked.previous or 'none'}; `tooling deploy --phase {phase}` and local runs use it now"
    )
