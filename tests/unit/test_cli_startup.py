"""`tooling --help` and every `tooling <command> --help` stay quick: none of them imports the heavy libraries
or the toolkit's own costly modules (they are imported by the code that uses them, see bench/cli_start.py),
and `tooling --version` prints the installed version."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from tests.unit.panel_text import flat
from tooling.cli import app

ROOT = Path(__file__).resolve().parents[2]
# Each of these takes from a fraction of a second to several seconds to import. A name stands for its
# submodules too. Not pydantic: typer itself imports it to parse a subcommand's options.
HEAVY = (
    "torch",
    "matplotlib",
    "paramiko",
    "ansible_runner",
    "cryptography",
    "jinja2",
    # The toolkit's schemas (pydantic models built at import), parsers (compiled patterns) and clients:
    # a help screen reads the phase names alone (tooling.plan.phase_file).
    "ddp.config",
    "tooling.plan.criteria",
    "tooling.plan.phases",
    "tooling.verify.parsers",
    "tooling.check.parsers",
    "tooling.inventory",
    "tooling.prometheus_api",
    "tooling.sandbox.cluster",
)


def _heavy(module: str) -> str | None:
    """The HEAVY entry `module` is, or is a submodule of; None for a light one."""
    return next((h for h in HEAVY if module == h or module.startswith(h + ".")), None)


def _command_paths(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The argument path of `command` and of every command under it, as registered on the app."""
    yield path
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _command_paths(sub, (*path, name))


COMMANDS = list(_command_paths(typer.main.get_command(app)))


def _imported(importtime_log: str) -> set[str]:
    """Module names from `python -X importtime` output ("import time: self | cumulative | name")."""
    names = set()
    for line in importtime_log.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def test_the_app_registers_commands_and_subcommands() -> None:
    # Guards the parametrisation below: reading the app must find the command groups and their commands.
    assert ("deploy",) in COMMANDS
    assert any(len(path) == 2 for path in COMMANDS), COMMANDS


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "tooling")
def test_help_imports_no_heavy_library(path: tuple[str, ...], tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "tooling.cli", *path, "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Usage:" in done.stdout
    imported = _imported(done.stderr)
    assert {"typer", "tooling.console"} <= imported  # the log is read right: what the CLI imports is in it
    heavy = sorted({h for name in imported if (h := _heavy(name)) is not None})
    assert not heavy, f"`tooling {' '.join(path)} --help` imported {heavy}"


def _distribution_name() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"])


def test_version_prints_the_installed_distribution_version() -> None:
    name = _distribution_name()
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{name} {importlib.metadata.version(name)}"


def test_version_without_an_installed_distribution_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.metadata, "packages_distributions", lambda: {})
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 2
    assert "no installed distribution provides the `tooling` package" in flat(result.output)
