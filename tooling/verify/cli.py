"""`tooling verify-node`: collect raw outputs with playbooks/verify.yml, judge them, show the verdict.

Exit codes: 0 every check passed (WARN allowed), 1 a check failed, 2 usage error (unknown phase or host,
missing inventory, bad profile). The work is tooling/verify/run.py's; this module only declares the
command, so that `tooling --help` does not import the judging, the profiles' schema and the parsers.
"""

from __future__ import annotations

import shlex
from typing import Annotated

import typer

from tooling.cli_options import InventoryOption, JsonOption, VerifyArtifactsOption, phase_option
from tooling.console import EXIT_OK, console, err_console, print_next
from tooling.verify.levels import Level
from tooling.verify.pair_schedule import PairMode


def verify_node(
    hosts: Annotated[
        list[str] | None,
        typer.Argument(
            help="Hosts to check (default: the phase's nodes, or group 'nodes').", show_default=False
        ),
    ] = None,
    phase: Annotated[str | None, phase_option("Check every node of this phase.")] = None,
    inventory: InventoryOption = None,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile", help="production, sandbox or a YAML file (default: sandbox for inventory/sandbox)."
        ),
    ] = None,
    as_json: JsonOption = False,
    level: Annotated[
        Level,
        typer.Option(
            "--level",
            help="quick: seconds, what deploy runs before every launch (no nccl-tests, DCGM or iperf3); "
            "full (default, the acceptance run): adds nccl-tests, iperf3 and `dcgmi diag` where DCGM "
            "is installed.",
        ),
    ] = Level.full,
    pairs: Annotated[
        PairMode,
        typer.Option(
            "--pairs",
            help="ring (default): iperf3 between consecutive nodes; all: every node pair both ways plus a "
            "2-process all_reduce per pair, in n - 1 rounds of disjoint pairs (n even; n rounds for n odd), "
            "printed as a node x node matrix with asymmetry flagged and the slow node or link named.",
        ),
    ] = PairMode.ring,
    install_iperf3: Annotated[
        bool,
        typer.Option("--install-iperf3", help="Install iperf3 with the package manager where it is missing."),
    ] = False,
    runs_dir: VerifyArtifactsOption = None,
) -> None:
    """Check that nodes match the plan: CPU, memory, NUMA, disk, MPI, torch, GPUs, InfiniBand/RoCE ports
    and the network."""
    from tooling.verify.run import run_verify

    code = run_verify(
        list(hosts or []),
        phase,
        inventory,
        profile,
        as_json,
        install_iperf3,
        runs_dir,
        level=level,
        pairs=pairs,
    )
    # Beside a JSON document, never in it.
    out = err_console if as_json else console
    given = [
        *(["--inventory", str(inventory)] if inventory else []),
        *(["--profile", profile] if profile else []),
    ]
    if code != EXIT_OK:
        level_args = [] if level == Level.full else ["--level", level.value]
        again = ["tooling", "verify-node", *(hosts or []), *(["--phase", phase] if phase else []), *given]
        print_next(f"fix the FAIL rows above, then again: {shlex.join([*again, *level_args])}", out)
    elif phase is not None:
        print_next(shlex.join(["tooling", "deploy", "--phase", phase, *given]), out)
    else:
        print_next("tooling phases (which phase comes next; then `tooling deploy --phase P`)", out)
    if code != EXIT_OK:
        raise typer.Exit(code)
