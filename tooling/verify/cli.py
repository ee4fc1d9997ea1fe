"""`tooling verify-node`: collect raw outputs with playbooks/verify.yml, judge them, show the verdict.

Exit codes: 0 every check passed (WARN allowed), 1 a check failed, 2 usage error (unknown phase or host,
missing inventory, bad profile).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from ddp.config_errors import ConfigError
from tooling.console import EXIT_CHECK_FAILED, EXIT_OK, ToolingError, console, err_console
from tooling.inventory import all_hosts, default_inventory, group_hosts, natural_key
from tooling.inventory import phase_hosts as phase_group_hosts
from tooling.phases import load_phases
from tooling.runner import PROJECT_ROOT, RunResult, get_inventory, run_playbook
from tooling.verify.judge import CheckResult, judge_all, overall
from tooling.verify.profiles import BUILTIN_PROFILES, Profile, load_profile
from tooling.verify.report import print_report, to_json

PLAYBOOK = "playbooks/verify.yml"
DEFAULT_GROUP = "nodes"


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
        return chosen, load_profile(chosen)
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
) -> RunResult:
    extravars: dict[str, Any] = {
        "verify_target": ",".join(target.hosts),
        "verify_install_iperf3": install_iperf3,
    }
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


def judge_run(result: RunResult, target: Target, profile: Profile) -> list[CheckResult]:
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


def run_verify(
    hosts: list[str],
    phase: str | None,
    inventory: Path | None,
    profile_name: str | None,
    as_json: bool,
    install_iperf3: bool = False,
    runs_dir: Path | None = None,
    out: Console | None = None,
) -> int:
    """The whole command; returns the exit code (0/1) and raises ToolingError for usage errors (2)."""
    out = out or console
    inventory_path = (inventory or default_inventory()).resolve()
    if not inventory_path.exists():
        raise ToolingError(f"inventory not found: {inventory_path}", hint="pass --inventory DIR")
    if profile_name is not None:
        pick_profile(profile_name, sandbox=False)  # a bad profile is reported before any SSH work
    try:
        inventory_data = get_inventory(inventory_path)
    except (FileNotFoundError, ValueError) as exc:
        raise ToolingError(str(exc)) from None
    profile_label, profile = pick_profile(profile_name, is_sandbox_inventory(inventory_data, inventory_path))
    target = resolve_target(inventory_data, hosts, phase, inventory_path)
    runs = (runs_dir or PROJECT_ROOT / "runs" / "verify").resolve()
    result = collect(
        target,
        inventory_path,
        runs,
        install_iperf3=install_iperf3,
        progress_console=None if as_json else err_console,
    )
    rows = judge_run(result, target, profile)
    if as_json:
        out.print_json(
            to_json(
                rows,
                scope=target.scope,
                hosts=target.hosts,
                profile=profile_label,
                inventory=str(inventory_path),
                run={
                    "status": result.status,
                    "rc": result.rc,
                    "explanation": result.explanation,
                    "artifact_dir": str(result.artifact_dir),
                },
            )
        )
    else:
        print_report(out, rows, target.scope, profile_label)
        out.print(f"[dim]ansible artifacts: {result.artifact_dir}[/]")
    return EXIT_CHECK_FAILED if overall(rows) == "FAIL" else EXIT_OK


def verify_node(
    hosts: Annotated[
        list[str] | None,
        typer.Argument(
            help="Hosts to check (default: the phase's nodes, or group 'nodes').", show_default=False
        ),
    ] = None,
    phase: Annotated[
        str | None, typer.Option("--phase", "-p", help="Check every node of this phase (1, 2a, 2b, 2c).")
    ] = None,
    inventory: Annotated[
        Path | None, typer.Option("--inventory", "-i", help="Inventory directory (default: ansible.cfg's).")
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile", help="production, sandbox or a YAML file (default: sandbox for inventory/sandbox)."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print machine-readable results on stdout.")
    ] = False,
    install_iperf3: Annotated[
        bool,
        typer.Option("--install-iperf3", help="Install iperf3 with the package manager where it is missing."),
    ] = False,
    runs_dir: Annotated[
        Path | None,
        typer.Option("--runs-dir", help="Where ansible-runner keeps its artifacts (default: runs/verify)."),
    ] = None,
) -> None:
    """Check that nodes match the plan: CPU, memory, NUMA, disk, MPI, torch, GPUs and the network."""
    code = run_verify(list(hosts or []), phase, inventory, profile, as_json, install_iperf3, runs_dir)
    if code != EXIT_OK:
        raise typer.Exit(code)


def main() -> None:
    """`python -m tooling.verify` until the command is mounted on the main `tooling` app."""
    from tooling.console import display_error

    app = typer.Typer(add_completion=False)

    @app.callback()
    def _group() -> None:
        """Node verification (mounted as `tooling verify-node` on the main app)."""

    app.command("verify-node")(verify_node)
    try:
        # Without standalone mode click returns typer.Exit's code instead of exiting.
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except ToolingError as exc:
        display_error(str(exc), exc.hint)
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
