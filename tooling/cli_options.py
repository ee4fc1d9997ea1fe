"""Option declarations every `tooling` command shares, declared once.

The phase names in `--help` come from the plan (tooling/phases.yml, or the site file given with
`--phases`) when the help is shown (show_plan_phases), so a site with other phases sees its own. The
directory options default to None, meaning "the state root's" (tooling.home), resolved when the command
runs.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from ddp.config_errors import ConfigError
from tooling.home import HOME_ENV
from tooling.plan.phase_file import phase_names

PHASE_METAVAR = "PHASE"  # replaced by the plan's phase names when help is shown (show_plan_phases)


def phase_option(help: str) -> Any:
    """`--phase/-p`; `help` says what the phase is for, the metavar lists the plan's phases."""
    return typer.Option("--phase", "-p", metavar=PHASE_METAVAR, help=help)


def _commands(command: Any) -> Iterator[Any]:
    """`command` (a click command or group) and every command under it."""
    stack = [command]
    while stack:
        current = stack.pop()
        stack.extend(getattr(current, "commands", {}).values())
        yield current


def show_plan_phases(command: Any) -> None:
    """Give every phase option under `command` (a click command or group) the plan's phase names as its
    metavar, e.g. [1|2a|2b|2c]. Called by the entry point before a subcommand parses its arguments, so
    `--help` shows the phases of the plan in force (a site file given with --phases included), and a plan
    that does not load leaves PHASE (the command itself then reports the plan's error). The names only:
    validating the whole plan is the command's job when it runs, not a help screen's."""
    try:
        names = "[" + "|".join(phase_names()) + "]"
    except (ConfigError, OSError):
        return
    for current in _commands(command):
        for param in getattr(current, "params", []):
            if getattr(param, "metavar", None) == PHASE_METAVAR:
                param.metavar = names


def show_flags_as_flags(command: Any) -> None:
    """Show every on/off option under `command`, --help included, as a bare flag: typer prints a type
    (`<bool>`) beside a flag, which reads as if it took a value; an empty metavar is shown instead."""
    for current in _commands(command):
        params = [*getattr(current, "params", []), current.get_help_option(current.context_class(current))]
        for param in params:
            if getattr(param, "is_flag", False) and not param.count and param.metavar is None:
                param.metavar = ""


PhaseOption = Annotated[str, phase_option("Phase to act on.")]
OptionalPhaseOption = Annotated[str | None, phase_option("Phase to act on.")]
InventoryOption = Annotated[
    Path | None, typer.Option("--inventory", "-i", help="Inventory directory (default: ansible.cfg's).")
]
# For the commands that act on a running deployment (status, stop, logs): they follow the latest one.
DeploymentInventoryOption = Annotated[
    Path | None,
    typer.Option(
        "--inventory",
        "-i",
        help="Inventory directory of the deployment to act on (default: the latest deployment recorded).",
    ),
]
# For the commands that destroy something (stop, deploy --restart, sandbox down, sweep --lock): they ask
# first on a terminal (tooling.console.confirm).
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do it without asking first.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of the table.")]
SetOption = Annotated[list[str] | None, typer.Option("--set", help="Trainer setting KEY.PATH=VALUE.")]
HomeOption = Annotated[
    Path | None,
    typer.Option(
        "--home",
        file_okay=False,
        resolve_path=True,
        metavar="DIR",
        help=f"State root for every command (sets {HOME_ENV}; default: $XDG_STATE_HOME/ddp-toolkit "
        "or ~/.local/state/ddp-toolkit).",
    ),
]
RunsDirOption = Annotated[
    Path | None,
    typer.Option("--runs-dir", help="Where run directories are looked for or made (default: <home>/runs)."),
]
# Not --runs-dir: that names the training runs' directory. verify-node writes here, forecast reads it back.
VerifyArtifactsOption = Annotated[
    Path | None,
    typer.Option(
        "--artifacts-dir", help="Where ansible-runner keeps verify-node's artifacts (default: <home>/verify)."
    ),
]
DecisionsOption = Annotated[
    Path | None,
    typer.Option(
        "--decisions",
        help="Directory of decision records, written by gate, read by phases and report "
        "(default: <home>/decisions).",
    ),
]
SoakDirOption = Annotated[
    Path | None,
    typer.Option("--soak-dir", help="Where soak states and records are kept (default: <home>/soak)."),
]
VaultIdOption = Annotated[
    list[str] | None,
    typer.Option(
        "--vault-id",
        metavar="[LABEL@]FILE",
        help="Vault password file or client script for ansible-vault values in the inventory and the "
        "playbooks; repeat for more (sets ANSIBLE_VAULT_IDENTITY_LIST, after the ids ansible.cfg has).",
    ),
]
VaultPasswordFileOption = Annotated[
    Path | None,
    typer.Option(
        "--vault-password-file",
        metavar="FILE",
        help="Vault password file, the same as --vault-id FILE.",
    ),
]
# The gate's site criteria, for every command that judges against them (gate, report, forecast).
CriteriaOption = Annotated[
    Path | None,
    typer.Option("--criteria", help="Site criteria file (gate_criteria: ...; see tooling/gates/site.py)."),
]
SweepsDirOption = Annotated[
    Path | None, typer.Option("--sweeps-dir", help="Where sweeps are recorded (default: <home>/sweeps).")
]


# How to get past Prometheus' front door, for every command that reads Prometheus; the command makes one
# PrometheusAccess of them.
_FILE: dict[str, Any] = {"exists": True, "dir_okay": False, "resolve_path": True, "metavar": "FILE"}
PrometheusUserOption = Annotated[
    str | None,
    typer.Option(
        "--prometheus-user", help="Basic-auth user for Prometheus (with --prometheus-password-file)."
    ),
]
PrometheusPasswordFileOption = Annotated[
    Path | None,
    typer.Option(
        "--prometheus-password-file",
        help="File holding that user's password (the password itself never goes on the command line).",
        **_FILE,
    ),
]
PrometheusCaOption = Annotated[
    Path | None,
    typer.Option(
        "--prometheus-ca", help="CA certificate (PEM) that signed Prometheus' TLS certificate.", **_FILE
    ),
]
PrometheusClientCertOption = Annotated[
    Path | None,
    typer.Option(
        "--prometheus-client-cert",
        help="Client certificate (PEM, may hold the key too) for a Prometheus that asks for one.",
        **_FILE,
    ),
]
PrometheusClientKeyOption = Annotated[
    Path | None,
    typer.Option("--prometheus-client-key", help="Key of --prometheus-client-cert, when apart.", **_FILE),
]
AllowInsecureHttpOption = Annotated[
    bool,
    typer.Option(
        "--allow-insecure-http",
        help="Send the basic-auth password to an http:// Prometheus (refused otherwise).",
    ),
]


# The access options in the order --help lists them, each with its default.
_ACCESS_OPTIONS: tuple[tuple[str, Any, Any], ...] = (
    ("prometheus_user", PrometheusUserOption, None),
    ("prometheus_password_file", PrometheusPasswordFileOption, None),
    ("prometheus_ca", PrometheusCaOption, None),
    ("prometheus_client_cert", PrometheusClientCertOption, None),
    ("prometheus_client_key", PrometheusClientKeyOption, None),
    ("allow_insecure_http", AllowInsecureHttpOption, False),
)
R = TypeVar("R")


def with_prometheus_access(command: Callable[..., R]) -> Callable[..., R]:
    """`command` given the options above, declared here once for every command that reads Prometheus; it
    receives them as one PrometheusAccess in its `access` parameter (which --help does not show)."""
    signature = inspect.signature(command)
    kept = []
    for param in signature.parameters.values():
        if param.name == "access":
            continue
        # typer reads the annotations as objects; the commands' modules write them as strings.
        annotation = param.annotation
        if isinstance(annotation, str):
            annotation = eval(annotation, command.__globals__)  # what inspect's eval_str does
        kept.append(param.replace(annotation=annotation))
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        for name, annotation, default in _ACCESS_OPTIONS
    ]
    keyword = inspect.Parameter.KEYWORD_ONLY
    params = [p.replace(kind=keyword) for p in kept] + added

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> R:
        from tooling.prometheus_api import PrometheusAccess  # when the command runs, not at --help

        values = [kwargs.pop(name) for name, _, _ in _ACCESS_OPTIONS]
        return command(**kwargs, access=PrometheusAccess(*values))

    wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper
