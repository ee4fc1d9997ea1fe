"""`tooling soak`: start the phase's job, watch it for a duration, stop it cleanly, keep the record.

Exit codes: 0 the soak ran to its end (the record says how well the job did; `tooling gate` judges it),
1 the job ended by itself, never came up, or the soak was interrupted (record kept, job left running),
2 usage or input error.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from tooling import home
from tooling.cli_options import InventoryOption, RunsDirOption, SetOption, SoakDirOption, phase_option
from tooling.console import EXIT_CHECK_FAILED, CheckFailed, ToolingError, console, err_console, print_next
from tooling.soak import state as states
from tooling.soak.duration import format_duration, parse_duration
from tooling.soak.samples import Sample
from tooling.soak.state import SoakState
from tooling.soak.uptime import analyse
from tooling.soak.watch import RealClock, StopRequest, Watcher

if TYPE_CHECKING:
    from tooling.plan.phases import PhasePlan
    from tooling.soak.jobs import ClusterSoakJob, LocalSoakJob

    Job = LocalSoakJob | ClusterSoakJob

# The jobs, the inventory, the plan's and the trainer config's schemas and the record's template are
# imported where they are used: `tooling --help` imports this module and must stay quick.


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def _utc(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t)) if t else "-"


def _start_local(
    plan: PhasePlan, state: SoakState, root: Path, output_dir: Path, sets: list[str]
) -> LocalSoakJob:
    from tooling.job.torchrun import local_launch
    from tooling.soak.jobs import LocalSoakJob

    output = output_dir.resolve()
    # The process count a soak on this machine asks for (--nproc), not necessarily the phase's.
    launch = local_launch(plan, state.phase, output, state.id, sets, nproc=state.world_size)
    log_path = (root / state.id / "launcher.log").resolve()
    job = LocalSoakJob.start(launch, output / state.id, log_path, state.world_size)
    console.print(
        f"[bold]phase {state.phase}[/bold]: {state.world_size} local processes (torchrun pid "
        f"{job.launcher_pid}), run directory {job.run_dir}, launcher log {log_path}"
    )
    return job


def _print_sample(state: SoakState) -> Callable[[Sample], None]:
    def show(sample: Sample) -> None:
        step = sample.global_step(state.world_size)
        missing = sample.missing(state.world_size)
        left = max(0.0, (state.end_at or sample.t) - sample.t)
        ranks = f"{state.world_size - len(missing)}/{state.world_size} ranks"
        console.print(
            f"{_clock(sample.t)} step {step if step is not None else '-'}, {ranks}, "
            f"restarts {sample.restart_count()}, {format_duration(left)} left",
            style="dim" if not missing else "yellow",
        )

    return show


def write_soak_record(
    root: Path,
    state: SoakState,
    status: str,
    final: dict[str, Any] | None = None,
    job_left_running: bool = False,
) -> tuple[dict[str, Any], Path, Path]:
    from tooling.soak import record as records

    ended = (state.ended["at"], state.ended["reason"]) if state.ended else None
    analysis = analyse(
        state.samples,
        state.world_size,
        state.samples_per_step,
        state.interval_s,
        planned_end=state.end_at if status in records.FINISHED else None,
        ended=ended,
        incarnations=(final or {}).get("incarnations"),
        final_lines=(final or {}).get("launcher_lines"),
    )
    record = records.build_record(state, analysis, status, final=final, job_left_running=job_left_running)
    json_path, md_path = records.write_record(root, record)
    return record, json_path, md_path


def print_record(record: dict[str, Any], json_path: Path) -> None:
    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.3%}"

    def num(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    uptime, rate = record["uptime"], record["throughput"]
    table = Table(title=f"soak {record['id']} (phase {record['phase']}): {record['status']}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("window", f"{_utc(record['start'])} -> {_utc(record['end'])}"),
        ("uptime", f"{pct(uptime['ratio'])} ({uptime['up_intervals']}/{uptime['intervals']} intervals)"),
        ("incidents / time lost", f"{len(record['incidents'])} / {format_duration(record['time_lost_s'])}"),
        ("unobserved", format_duration(uptime["unobserved_s"])),
        ("restarts", str(record["restarts"]["count"])),
        (
            "throughput, samples/s (mean, sigma, CV)",
            f"{num(rate['mean'])}, {num(rate['stddev'])}, {pct(rate['cv'])}",
        ),
    ]
    final = record.get("final")
    if final:
        rows.append(("final checkpoint", f"step {final.get('checkpoint_step')} ({final.get('stopped')})"))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    for event in record["restarts"]["events"]:
        console.print(f"  restart at {_clock(event['detected_at'])}: {'; '.join(event['causes'])}")
    console.print(f"soak record: {json_path} (+ soak.md)")


SUMMARY_FILE = "summary.json"


def _keep_summary(root: Path, state: SoakState, summary: dict[str, Any] | None) -> Path | None:
    """The run's summary kept beside the soak's record (a cluster run's lives on its first node only), so
    the gate can be pointed at the pair; None when no summary could be read."""
    if summary is None:
        return None
    from ddp.atomic import atomic_write_json

    path = states.soak_path(root, state.id) / SUMMARY_FILE
    atomic_write_json(path, summary)
    return path


def _soak_dir_args(root: Path) -> list[str]:
    """`--soak-dir DIR` when the soak is kept elsewhere than the state root's soak directory."""
    return [] if root.resolve() == home.soak().resolve() else ["--soak-dir", str(root)]


def _after_soak(root: Path, state: SoakState, summary: Path | None) -> str:
    """What a finished soak leads to: the gate over its run and its uptime; a soak of another size than
    the phase's is no evidence for it, so a soak of the phase's own size comes first."""
    if state.world_size != state.phase_world_size:
        duration = format_duration(state.duration_s)
        return shlex.join(["tooling", "soak", "--phase", state.phase, "--duration", duration]) + (
            f" (the phase's {state.phase_world_size} processes: this soak's {state.world_size} are no "
            "evidence for its gate)"
        )
    # Without a summary of its own the gate takes the phase's newest run; the soak is named by its
    # directory, found wherever the soaks are kept.
    run = ["--run", str(summary)] if summary is not None else []
    soak = ["--soak", str(states.soak_path(root, state.id))]
    return shlex.join(["tooling", "gate", "--phase", state.phase, *run, *soak])


def _finish(
    root: Path, state: SoakState, job: Job, outcome: str, stop_timeout_s: float, signal_name: str | None
) -> None:
    from tooling.soak.jobs import LocalSoakJob, final_from_summary

    if outcome == "interrupted":
        state.status = "interrupted"
        states.save(state, root)
        # A cluster job cannot be asked cheaply here; the soak never stops it on an interrupt.
        running = job.alive() if isinstance(job, LocalSoakJob) else True
        record, json_path, _ = write_soak_record(root, state, "interrupted", job_left_running=running)
        print_record(record, json_path)
        job_line = (
            f"[bold]The job is still running[/bold] ({job.how_to_stop()})."
            if running
            else "The job is no longer running."
        )
        err_console.print(
            f"[yellow]soak {state.id} interrupted[/] ({signal_name or 'stop requested'}) after "
            f"{format_duration(record['watched_s'] or 0)}: the record is marked interrupted. {job_line}"
        )
        resume = shlex.join(["tooling", "soak", "--resume", state.id, *_soak_dir_args(root)])
        print_next(f"{resume} (watches it until {_utc(state.end_at)} and finishes the record)", err_console)
        raise typer.Exit(EXIT_CHECK_FAILED)
    if outcome == "completed":
        console.print(f"soak {state.id}: planned end reached; stopping the job (final checkpoint)")
        how = job.stop(stop_timeout_s)
    else:
        how = f"ended by itself: {state.ended['reason'] if state.ended else 'unknown'}"
    summary, where = job.fetch_summary()
    final = final_from_summary(summary, where, how)
    # The launcher's lines since the last look: the cause of a restart that only the run summary shows.
    final["launcher_lines"] = job.observe().events
    if summary is None:
        state.notes.append(f"no run summary at {where}: the final checkpoint could not be confirmed")
    state.status = "finished"
    states.save(state, root)
    status = "completed" if outcome == "completed" else "ended-early"
    record, json_path, _ = write_soak_record(root, state, status, final=final)
    kept = _keep_summary(root, state, summary)
    print_record(record, json_path)
    if kept is not None:
        console.print(f"run summary: {kept}", highlight=False)
    if status == "completed":
        print_next(_after_soak(root, state, kept))
    else:
        raise CheckFailed(
            f"the job ended before the soak's planned end: {how}",
            hint=f"the record ({json_path}) counts the rest of the window as down",
        )


def _new_soak(
    plan: PhasePlan,
    phase: str,
    duration: str,
    interval: str,
    run_id: str | None,
    overrides: list[str],
    local: bool,
    nproc: int | None,
    root: Path,
) -> SoakState:
    from ddp.config import load_config
    from tooling.job import production

    phase_def = plan.get(phase)
    duration_s = parse_duration(duration, "--duration")
    interval_s = parse_duration(interval, "--interval")
    if interval_s > duration_s:
        raise ToolingError(f"--interval {interval} is longer than --duration {duration}")
    soak_id = states.check_id(run_id or f"soak-phase{phase}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}")
    if (states.soak_path(root, soak_id) / states.STATE_FILE).exists():
        raise ToolingError(
            f"soak {soak_id} already exists under {root}",
            hint=f"`tooling soak --resume {soak_id}`, or pick another --run-id",
        )
    world = nproc if local and nproc else phase_def.world_size
    # The config the job will run, validated before anything starts; its batch settings turn steps into
    # samples for throughput.
    config = load_config(production.config_path(phase, phase_def.config), overrides)
    samples_per_step = config.training.batch_size * config.ddp.grad_accum_steps * world
    state = SoakState(
        id=soak_id,
        phase=phase,
        mode="local" if local else "cluster",
        world_size=world,
        phase_world_size=phase_def.world_size,
        duration_s=duration_s,
        interval_s=interval_s,
        samples_per_step=samples_per_step,
        overrides=overrides,
    )
    if not config.checkpoint.enabled:
        state.notes.append("checkpoints are off (checkpoint.enabled=false): no final checkpoint")
    if world != phase_def.world_size:
        state.notes.append(
            f"{world} processes instead of the phase's {phase_def.world_size}: not evidence for the gate"
        )
    return state


def _resume(root: Path, soak_id: str, phase: str | None) -> tuple[SoakState, Job]:
    from tooling.soak import record as records
    from tooling.soak.jobs import job_from_state

    state = states.load(root, soak_id)
    if phase is not None and phase != state.phase:
        raise ToolingError(f"soak {soak_id} is of phase {state.phase}, not {phase}")
    if state.status == "finished":
        raise ToolingError(
            f"soak {soak_id} has already finished",
            hint=f"its record is {states.soak_path(root, soak_id) / records.RECORD_FILE}",
        )
    job = job_from_state(state.job)
    now = time.time()
    state.resumed_at.append(now)
    state.notes.append(f"resumed at {_utc(now)}")
    states.save(state, root)
    console.print(
        f"soak {state.id}: resumed, watching until {_utc(state.end_at)}; the job: {job.how_to_stop()}"
    )
    return state, job


def _first_sample(
    watcher: Watcher, root: Path, job: Job, timeout_s: float, stop_timeout_s: float, stop: StopRequest
) -> None:
    """Wait for every rank; a job that never gets there is stopped (the soak started it) and reported."""
    state = watcher.state
    problem = watcher.wait_for_ranks(timeout_s)
    if problem is None:
        console.print(
            f"soak {state.id}: every rank reported at {_utc(state.watch_start)}; watching until "
            f"{_utc(state.end_at)}, a look every {format_duration(state.interval_s)}"
        )
    elif not stop():
        state.notes.append(problem)
        how = job.stop(min(stop_timeout_s, 60.0))
        state.status = "finished"
        states.save(state, root)
        raise CheckFailed(
            f"soak {state.id} did not start: {problem}; the job {how}",
            hint=f"see {state.job.get('log_path') or 'the journal of the trainer unit on the nodes'}",
        )


def soak_command(
    phase: Annotated[str | None, phase_option("Phase to soak.")] = None,
    duration: Annotated[
        str | None, typer.Option(help="How long to watch the job: 24h, 90m, 45s, 1h30m.")
    ] = None,
    inventory: InventoryOption = None,
    interval: Annotated[str, typer.Option(help="Time between two looks at the job.")] = "30s",
    run_id: Annotated[
        str | None, typer.Option(help="Id of the soak and its run (default: soak-phase<P>-<UTC time>).")
    ] = None,
    overrides: SetOption = None,
    local: Annotated[
        bool, typer.Option(help="Run the phase's processes on this machine (torchrun --standalone).")
    ] = False,
    nproc: Annotated[
        int | None, typer.Option(min=1, help="With --local: this many processes instead of the phase's.")
    ] = None,
    resume: Annotated[
        str | None, typer.Option(help="Carry on watching soak ID's job until its planned end.")
    ] = None,
    soak_dir: SoakDirOption = None,
    runs_dir: RunsDirOption = None,
    start_timeout: Annotated[str, typer.Option(help="How long the ranks may take to report.")] = "10m",
    stop_timeout: Annotated[str, typer.Option(help="How long the final checkpoint may take.")] = "5m",
    skip_provision: Annotated[bool, typer.Option(help="Cluster: launch without running site.yml.")] = False,
    skip_verify: Annotated[bool, typer.Option(help="Cluster: launch without the pre-flight checks.")] = False,
) -> None:
    """Soak test: run the phase's job for a duration, sample it every interval, stop it cleanly and record
    uptime, incidents, restarts (with causes) and throughput stability for the gate."""
    from tooling.inventory import default_inventory
    from tooling.job.deploy import DeployRequest
    from tooling.plan.phases import load_phases
    from tooling.soak.jobs import SOAK_MAX_STEPS, ClusterSoakJob
    from tooling.verify.run import preflight

    soak_dir = soak_dir or home.soak()
    start_timeout_s = parse_duration(start_timeout, "--start-timeout")
    stop_timeout_s = parse_duration(stop_timeout, "--stop-timeout")
    stop = StopRequest()
    with stop.installed():
        if resume is not None:
            given = {"--duration": duration, "--run-id": run_id, "--set": overrides, "--nproc": nproc}
            extra = [name for name, value in given.items() if value] + (["--local"] if local else [])
            if extra:
                raise ToolingError(f"--resume takes the soak's own settings; drop {', '.join(extra)}")
            state, job = _resume(soak_dir, resume, phase)
        else:
            if phase is None or duration is None:
                raise ToolingError(
                    "a new soak needs --phase and --duration",
                    hint="e.g. `tooling soak --phase 1 --duration 24h`, or `tooling soak --resume ID`",
                )
            if local and inventory is not None:
                raise ToolingError("--inventory is for a cluster soak; --local runs on this machine")
            if nproc is not None and not local:
                raise ToolingError("--nproc only applies to --local (a cluster runs the phase's processes)")
            plan = load_phases()
            # The soak's end is a time: the job must not finish first; an explicit --set still wins.
            sets = [f"training.max_steps={SOAK_MAX_STEPS}", *(overrides or [])]
            if local:
                sets = ["metrics.bind_address=127.0.0.1", *sets]
            state = _new_soak(plan, phase, duration, interval, run_id, sets, local, nproc, soak_dir)
            states.save(state, soak_dir)  # before launching: a soak that dies starting still leaves a trace
            if local:
                job = _start_local(plan, state, soak_dir, runs_dir or home.runs(), sets)
            else:
                request = DeployRequest(
                    phase=phase,
                    inventory=(inventory or default_inventory()).resolve(),
                    overrides=sets,
                    provision=not skip_provision,
                    verify=not skip_verify,
                    run_id=state.id,
                )
                job = ClusterSoakJob.launch(request, plan, preflight)
            state.job = job.to_json()
            states.save(state, soak_dir)
        watcher = Watcher(
            state,
            job,
            RealClock(stop),
            persist=lambda s: states.save(s, soak_dir),
            stop_requested=stop,
            on_sample=_print_sample(state),
        )
        if not state.samples:
            _first_sample(watcher, soak_dir, job, start_timeout_s, stop_timeout_s, stop)
        outcome = "interrupted" if stop() else watcher.watch()
        _finish(soak_dir, state, job, outcome, stop_timeout_s, stop.signal)
