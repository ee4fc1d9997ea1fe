"""What `tooling verify-node` (tooling/verify/cli.py) does: collect raw outputs with playbooks/verify.yml,
judge them, show the verdict; also deploy's pre-flight check (preflight)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from ddp.config_errors import ConfigError
from tooling import home
from tooling.console import EXIT_CHECK_FAILED, EXIT_OK, ToolingError, console, err_console
from tooling.findings import CLUSTER, Finding, FindingsView
from tooling.inventory import (
    all_hosts,
    default_inventory,
    group_hosts,
    load_inventory,
    natural_key,
    refuse_placeholder_hosts,
)
from tooling.inventory import phase_hosts as phase_group_hosts
from tooling.job import quarantine
from tooling.job.deploy import DeployRequest
from tooling.plan.phases import load_phases
from tooling.runner import RunResult, run_playbook
from tooling.verify import gpu_skus, pair_report
from tooling.verify.judge import judge_all, overall
from tooling.verify.levels import Level
from tooling.verify.pair_schedule import PairMode, schedule
from tooling.verify.profiles import BUILTIN_PROFILES, Profile, load_profile, resolve_profile_path

PLAYBOOK = "playbooks/verify.yml"
DEFAULT_GROUP = "nodes"
# A table per node, then the cluster-wide network findings; a JSON finding's reason is "reason".
VIEW = FindingsView(overall=overall, host_titles={CLUSTER: "network across the nodes"})


@dataclass(frozen=True)
class Target:
    hosts: list[str]
    scope: str  # what the user asked for, for headings: "phase 2a", "node1, node3", "group nodes"
    nproc_per_node: int | None


def resolve_target(
    inventory: dict[str, Any], hosts: list[str], phase: str | None, inventory_path: Path
) -> Target:
    nproc: int | None = None
    phase_hosts: list[str] | None = None
    if phase is not None:
        try:
            plan_phase = load_phases().get(phase)
        except ConfigError as exc:
            raise ToolingError("; ".join(exc.problems), hint="run `tooling verify-node --help`") from None
        nproc = plan_phase.nproc_per_node
        phase_hosts = phase_group_hosts(inventory, phase, plan_phase, inventory_path)
    if hosts:
        known = all_hosts(inventory)
        unknown = [h for h in hosts if h not in known]
        if unknown:
            raise ToolingError(
                f"not in inventory {inventory_path}: {', '.join(unknown)}",
                hint=f"known hosts: {', '.join(sorted(known, key=natural_key)) or 'none'}",
            )
        if phase_hosts is not None:
            outside = [h for h in hosts if h not in phase_hosts]
            if outside:
                raise ToolingError(
                    f"not part of phase {phase} ({', '.join(phase_hosts)}): {', '.join(outside)}"
                )
        return Target(sorted(dict.fromkeys(hosts), key=natural_key), ", ".join(hosts), nproc)
    if phase_hosts is not None:
        if not phase_hosts:
            raise ToolingError(f"phase {phase}'s group has no hosts in {inventory_path}")
        return Target(phase_hosts, f"phase {phase}", nproc)
    try:
        nodes = group_hosts(inventory, DEFAULT_GROUP)
    except KeyError:
        raise ToolingError(
            f"inventory {inventory_path} has no {DEFAULT_GROUP!r} group", hint="name hosts or pass --phase"
        ) from None
    return Target(nodes, f"group {DEFAULT_GROUP}", None)


def is_sandbox_inventory(inventory: dict[str, Any], inventory_path: Path) -> bool:
    """`tooling sandbox up` writes `sandbox_container` for every host (default dir: inventory/sandbox)."""
    hostvars = (inventory.get("_meta") or {}).get("hostvars") or {}
    return inventory_path.name == "sandbox" or any(
        "sandbox_container" in (v or {}) for v in hostvars.values()
    )


def pick_profile(name: str | None, sandbox: bool) -> tuple[str, Profile]:
    chosen = name or ("sandbox" if sandbox else "production")
    try:
        profile = load_profile(chosen)
        # A site's per-GPU-model numbers must name models of the table: checked before any SSH work.
        gpu_skus.sku_table(profile, resolve_profile_path(chosen))
        return chosen, profile
    except ConfigError as exc:
        raise ToolingError(
            "bad verification profile:\n" + "\n".join(f"{exc.source}: {p}" for p in exc.problems),
            hint=f"use a YAML file or one of: {', '.join(BUILTIN_PROFILES)}",
        ) from None


def collect(
    target: Target,
    inventory_path: Path,
    runs_dir: Path,
    *,
    install_iperf3: bool,
    progress_console: Console | None,
    level: Level = Level.full,
    dcgm_diag_level: int = 1,
    rdma_fabric: bool = True,
    pairs: PairMode = PairMode.ring,
) -> RunResult:
    extravars: dict[str, Any] = {
        "verify_target": ",".join(target.hosts),
        "verify_install_iperf3": install_iperf3,
        "verify_level": level.value,
        "verify_dcgm_diag_level": dcgm_diag_level,
        # ib_write_bw only where the profile expects a fabric: elsewhere (the sandbox) not even looked for.
        "verify_ib_write_bw": rdma_fabric,
    }
    if pairs is PairMode.all:  # ring is the playbook's default
        # The rounds come from tooling/verify/pair_schedule.py: the playbook only runs them.
        extravars["verify_pairs"] = pairs.value
        extravars["verify_pair_rounds"] = [[list(p) for p in r] for r in schedule(target.hosts, pairs)]
    if target.nproc_per_node:
        extravars["verify_gpus_per_node"] = target.nproc_per_node
    try:
        return run_playbook(
            PLAYBOOK,
            inventory=inventory_path,
            runs_dir=runs_dir,
            limit=target.hosts,
            extravars=extravars,
            label="verify",
            console=progress_console,
            progress=progress_console is not None,
        )
    except FileNotFoundError as exc:
        raise ToolingError(str(exc)) from None


def judge_run(result: RunResult, target: Target, profile: Profile) -> list[Finding]:
    if not result.events or (
        not result.custom_stats
        and not result.unreachable
        and not result.failures
        and result.status != "successful"
    ):
        raise ToolingError(
            f"the verification playbook did not run: {result.explanation}",
            hint=f"ansible's output is in {result.artifact_dir / 'stdout'}",
        )
    failures: dict[str, list[str]] = {}
    for failure in result.hard_failures():
        failures.setdefault(failure.host, []).append(f"task {failure.task!r} failed: {failure.message}")
    raw_nodes = result.custom_stats.get("verify_raw") or {}
    raw_net = result.custom_stats.get("verify_net")
    if raw_net is None and len(target.hosts) < 2:
        raw_net = {"nodes": [h for h in target.hosts if h not in result.unreachable]}
    return judge_all(profile, target.hosts, raw_nodes, raw_net, result.unreachable, failures)


def summary_line(rows: Sequence[Finding], scope: str, profile: str) -> str:
    nodes = {r.host for r in rows if r.host != CLUSTER}
    return f"{scope}: {len(nodes)} node(s), profile {profile}: {VIEW.summary(rows)}"


def print_report(console: Console, rows: Sequence[Finding], scope: str, profile: str) -> None:
    VIEW.print(console, VIEW.host_tables(rows), summary_line(rows, scope, profile))


def run_verify(
    hosts: list[str],
    phase: str | None,
    inventory: Path | None,
    profile_name: str | None,
    as_json: bool,
    install_iperf3: bool = False,
    runs_dir: Path | None = None,
    out: Console | None = None,
    level: Level = Level.full,
    exclude: list[str] | None = None,
    pairs: PairMode = PairMode.ring,
) -> int:
    """The whole command; returns the exit code (0/1) and raises ToolingError for usage errors (2).
    `exclude` leaves nodes of the target out (deploy's pre-flight of a phase without its quarantined
    nodes). A quarantined node with no FAIL row leaves quarantine."""
    out = out or console
    if pairs is PairMode.all and level is not Level.full:
        raise ToolingError("--pairs all measures with iperf3, which runs at --level full only")
    inventory_path = (inventory or default_inventory()).resolve()
    if profile_name is not None:
        pick_profile(profile_name, sandbox=False)  # a bad profile is reported before any SSH work
    # Checked, vault-aware and with safe addresses, as every other command reads it.
    inventory_data = load_inventory(inventory_path)
    profile_label, profile = pick_profile(profile_name, is_sandbox_inventory(inventory_data, inventory_path))
    target = resolve_target(inventory_data, hosts, phase, inventory_path)
    if exclude:
        kept = [h for h in target.hosts if h not in exclude]
        target = replace(target, hosts=kept, scope=f"{target.scope} without {', '.join(exclude)}")
    refuse_placeholder_hosts(inventory_data, target.hosts, inventory_path)
    runs = (runs_dir or home.verify()).resolve()
    result = collect(
        target,
        inventory_path,
        runs,
        install_iperf3=install_iperf3,
        progress_console=None if as_json else err_console,
        level=level,
        dcgm_diag_level=profile.dcgm_diag_level,
        rdma_fabric=profile.infiniband is not None,
        pairs=pairs,
    )
    rows = judge_run(result, target, profile)
    matrix = None
    if pairs is PairMode.all and len(target.hosts) > 1:
        matrix, failed_pairs = pair_report.build_matrix(
            target.hosts, result.custom_stats.get("verify_net") or {}
        )
        rows += pair_report.pair_findings(matrix, profile, failed_pairs)
    _release_passed(inventory_path, rows, target.hosts, err_console if as_json else out)
    if as_json:
        out.print_json(
            VIEW.to_json(
                rows,
                scope=target.scope,
                hosts=target.hosts,
                profile=profile_label,
                level=level.value,
                inventory=str(inventory_path),
                run={
                    "status": result.status,
                    "rc": result.rc,
                    "explanation": result.explanation,
                    "artifact_dir": str(result.artifact_dir),
                },
                **({"pairs": pair_report.to_json(matrix, profile)} if matrix else {}),
            )
        )
    else:
        for table in pair_report.tables(matrix, profile) if matrix else []:
            out.print(table)
        print_report(out, rows, target.scope, f"{profile_label}, level {level.value}")
        out.print(f"[dim]ansible artifacts: {result.artifact_dir}[/]")
    return EXIT_CHECK_FAILED if overall(rows) == "FAIL" else EXIT_OK


def _release_passed(inventory: Path, rows: list[Finding], hosts: list[str], out: Console) -> None:
    """Quarantined nodes verified without a FAIL row leave quarantine (tooling.job.quarantine): the one
    way out, so a node comes back only once it has been looked at."""
    failed = {row.host for row in rows if row.status == "FAIL"}
    if CLUSTER in failed:
        return  # a failed check across the nodes clears none of them
    for entry in quarantine.release(inventory, [h for h in hosts if h not in failed]):
        out.print(
            f"[green]{entry.node} leaves quarantine[/green]: verify-node passed (was {entry.describe()})"
        )


def preflight(request: DeployRequest) -> int:
    """deploy's pre-flight verification of the phase's nodes (tooling.job.deploy runs it before launching):
    the quick level, so a launch waits seconds, not the minutes of nccl-tests and DCGM."""
    return run_verify(
        [],
        request.phase,
        request.inventory,
        request.profile,
        as_json=False,
        runs_dir=request.runs_dir,
        level=Level.quick,
        exclude=request.exclude,
    )
