"""`tooling self-check`: check this control machine, each problem with its fix.

Exit codes: 0 nothing failed (WARN and SKIP allowed), 1 a check failed. The probes (tooling/selfcheck/
probes.py) are imported when the command runs: `tooling --help` imports this module and must stay quick.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tooling.cli_options import JsonOption
from tooling.console import EXIT_CHECK_FAILED, console

if TYPE_CHECKING:
    from tooling.findings import Finding


def run_probes(inventory: Path | None) -> tuple[list[Finding], Path]:
    """Every finding, in the order a machine is set up, and the inventory they looked at."""
    from tooling import runner
    from tooling.sandbox.settings import SandboxSettings
    from tooling.selfcheck import probes

    distribution = probes.installed_distribution()
    pins = probes.requirements(distribution)
    settings = SandboxSettings()
    rows = probes.python_environment(distribution)
    rows += [probes.pinned_package(name, module, pins) for name, module in probes.PACKAGES.items()]
    rows.append(probes.executable("ansible-playbook", runner.path_with_ansible()))
    rows.append(probes.podman_tool())
    if rows[-1].status == "PASS":
        rows.append(probes.sandbox_network(settings))
    rows.append(probes.sandbox_key(settings))
    path, why = probes.chosen_inventory(inventory)
    loaded, data = probes.inventory_loads(path, why)
    rows.append(loaded)
    if data is not None:
        rows += probes.inventory_keys(data)
    return rows, path


def self_check_command(
    inventory: Annotated[
        Path | None,
        typer.Option(
            "--inventory",
            "-i",
            help="Inventory to check (default: the latest deployment's, else ansible.cfg's).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Check this control machine: python and its venv, torch against its pin, Ansible, podman and the
    sandbox's network, the SSH keys, and that the inventory in use loads. Exit 1 on a failed check."""
    from tooling.selfcheck.probes import VIEW

    rows, path = run_probes(inventory)
    if as_json:
        sys.stdout.write(VIEW.to_json(rows, inventory=str(path)) + "\n")
    else:
        VIEW.print(console, VIEW.host_tables(rows), VIEW.summary(rows))
    if VIEW.overall(rows) == "FAIL":
        raise typer.Exit(EXIT_CHECK_FAILED)
