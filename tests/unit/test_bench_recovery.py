"""The pure parts of bench/recovery.py: reading the trainer's ECS records and torchrun's log, the verdict."""

from __future__ import annotations

import importlib.util
import json
import sys
from datetime import datetime
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "recovery.py"


def _load() -> ModuleType:
    # bench/ is a folder of scripts, not a package: load the file as a module.
    spec = importlib.util.spec_from_file_location("bench_recovery", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


recovery = _load()
StepEvent = recovery.StepEvent


def ecs_line(t: str, rank: int, restart: int, step: int, event: str) -> str:
    return json.dumps(
        {
            "@timestamp": t,
            "log.level": "info",
            "message": f"step {step}",
            "labels": {"rank": rank, "local_rank": rank, "restart": restart, "run": "r", "world_size": 2},
            "trainer": {"event": event, "step": step},
        }
    )


def test_parse_log_line_reads_time_rank_restart_step_and_event() -> None:
    event = recovery.parse_log_line(ecs_line("2026-11-25T19:30:46.453Z", 1, 0, 7, "heartbeat"))
    assert event == StepEvent(
        datetime.fromisoformat("2026-11-25T19:30:46.453+00:00").timestamp(), 1, 0, 7, "heartbeat"
    )


@pytest.mark.parametrize(
    "line",
    [
        "",
        '{"@timestamp": "2026-11-25T19:30:46.453Z", "labels": {"rank"',  # torn by the SIGKILL
        json.dumps({"@timestamp": "2026-11-25T19:30:46.453Z", "message": "metrics on", "labels": {}}),
        json.dumps({"@timestamp": "x", "labels": {"rank": 0, "restart": 0}, "trainer": {"step": 1}}),
        "[]",
    ],
)
def test_parse_log_line_skips_what_is_not_a_step_record(line: str) -> None:
    assert recovery.parse_log_line(line) is None


def test_read_events_reads_every_rank_file(tmp_path: Path) -> None:
    (tmp_path / "rank0.ndjson").write_text(ecs_line("2026-01-01T00:00:01.000Z", 0, 0, 1, "heartbeat") + "\n")
    (tmp_path / "rank1.ndjson").write_text(
        ecs_line("2026-01-01T00:00:01.010Z", 1, 0, 1, "heartbeat") + "\n{torn"
    )
    assert [(e.rank, e.step) for e in recovery.read_events(tmp_path)] == [(0, 1), (1, 1)]


EVENTS = [
    StepEvent(10.0, 0, 0, 0, "start"),
    StepEvent(10.5, 1, 0, 0, "start"),
    StepEvent(11.0, 0, 0, 1, "heartbeat"),
    StepEvent(11.2, 1, 0, 1, "heartbeat"),
    StepEvent(12.0, 0, 0, 2, "heartbeat"),
    StepEvent(12.0, 0, 0, 2, "checkpoint"),
    StepEvent(12.1, 1, 0, 2, "heartbeat"),
    StepEvent(13.0, 0, 0, 3, "heartbeat"),  # rank 1 was killed before it logged step 3
    StepEvent(30.0, 0, 1, 2, "start"),
    StepEvent(30.4, 1, 1, 2, "start"),
    StepEvent(31.0, 1, 1, 3, "heartbeat"),
    StepEvent(31.3, 0, 1, 3, "heartbeat"),
    StepEvent(32.0, 0, 1, 4, "heartbeat"),
]


def test_job_step_time_waits_for_every_rank_in_that_incarnation() -> None:
    assert recovery.job_step_time(EVENTS, 0, 0, 2) == 11.2
    assert recovery.job_step_time(EVENTS, 1, 2, 2) == 31.3
    assert recovery.job_step_time(EVENTS, 0, 2, 2) is None  # only rank 0 got past step 2 before the kill
    assert recovery.job_step_time(EVENTS, 1, 0, 3) is None  # a third rank never reported


def test_start_last_and_resumed_steps() -> None:
    assert recovery.job_start_time(EVENTS, 0, 2) == 10.5
    assert recovery.job_start_time(EVENTS, 1, 2) == 30.4
    assert recovery.job_start_time(EVENTS, 2, 2) is None
    assert recovery.last_step(EVENTS, 0) == 3
    assert recovery.last_step(EVENTS, 5) is None
    assert recovery.resumed_step(EVENTS, 1) == 2
    assert recovery.resumed_step([*EVENTS, StepEvent(30.5, 2, 1, 0, "start")], 1) is None  # ranks disagree


def test_launcher_time_reads_glog_local_time_and_picks_the_year_near_the_kill() -> None:
    near = datetime(2026, 11, 25, 19, 33, 0).timestamp()
    line = "W1125 19:33:29.236000 18236 api.py:1028] Sending process 18339 closing signal SIGTERM"
    assert recovery.launcher_time(line, near) == pytest.approx(near + 29.236)
    new_year = datetime(2027, 1, 1, 0, 0, 1).timestamp()
    assert recovery.launcher_time("E1231 23:59:59.000000 1 api.py:1] x", new_year) == pytest.approx(
        new_year - 2
    )
    assert recovery.launcher_time("19:33:29 rank0 INFO step 5/90", near) is None


def test_group_stop_times_after_the_kill() -> None:
    killed = datetime(2026, 11, 25, 19, 33, 28, 500000).timestamp()
    lines = [
        "W1125 19:30:00.000000 1 api.py:1028] Sending process 5 closing signal SIGTERM",  # an earlier restart
        "W1125 19:33:29.236000 1 api.py:1028] Sending process 7 closing signal SIGTERM",
        "W1125 19:33:29.237000 1 api.py:1028] Sending process 8 closing signal SIGTERM",
        "E1125 19:33:31.392000 1 api.py:1002] failed (exitcode: -9) local_rank: 1 (pid: 6) of binary: python",
    ]
    began, stopped = recovery.group_stop_times(lines, killed)
    assert began == pytest.approx(killed + 0.736)
    assert stopped == pytest.approx(killed + 2.892)
    assert recovery.group_stop_times(lines[:1], killed) == (None, None)


def trial(**fields: object) -> object:
    base = {"recovery_s": 12.0, "steps_lost": 10, "restarts": 1, "completed": True}
    return recovery.Trial(**{**base, **fields})


def test_verdict_passes_within_target_and_one_interval() -> None:
    assert recovery.verdict([trial(), trial(recovery_s=40.0), trial(recovery_s=20.0)], 20, 30.0) == (True, [])


@pytest.mark.parametrize(
    ("trials", "reason"),
    [
        ([trial(recovery_s=31.0)], "median recovery 31.0 s > target 30 s"),
        ([trial(steps_lost=21)], "run 1: lost 21 steps, more than the interval 20"),
        ([trial(recovery_s=None)], "no recovery time measured"),
        ([trial(), trial(problems=["no summary.json"])], "run 2: no summary.json"),
    ],
)
def test_verdict_fails_with_the_reason(trials: list[object], reason: str) -> None:
    ok, reasons = recovery.verdict(trials, 20, 30.0)
    assert not ok and reason in reasons


def test_median_ignores_missing_figures() -> None:
    assert recovery.median([3.0, None, 1.0, 2.0]) == 2.0
    assert recovery.median([None]) is None


def test_parse_defaults_and_usage_errors() -> None:
    args = recovery.parse([])
    assert (args.nproc, args.every_steps, args.kill_rank, args.kill_step, args.max_steps) == (
        4,
        20,
        1,
        50,
        90,
    )
    for bad in (["--kill-rank", "4"], ["--nproc", "1"], ["--kill-step", "20"], ["--repeats", "0"]):
        with pytest.raises(SystemExit) as exc:
            recovery.parse(bad)
        assert exc.value.code == 2
