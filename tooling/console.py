"""One place for terminal output and for leaving the program with the right exit code.

Exit codes: 0 ok, 1 a check failed, 2 usage or input error (bad phase, bad file, unreachable setup), 130
a long command ended by Ctrl-C (what a shell reports for SIGINT, 128 + 2).
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Iterator
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.panel import Panel

from ddp.config_errors import ConfigError

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

console = Console()
err_console = Console(stderr=True)


class ToolingError(Exception):
    """A failure the user can fix; printed as a panel without a traceback."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, hint: str | None = None, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code


class CheckFailed(ToolingError):
    exit_code = EXIT_CHECK_FAILED


def print_next(what: str, out: Console | None = None) -> None:
    """The last line of a long command: what to run next (`next: tooling gate --phase 1 --run ...`), worded
    alike by every command. Never highlighted or wrapped: it is copied and pasted whole."""
    (out or console).print(f"next: {what}", highlight=False, soft_wrap=True)


def print_json(data: Any, out: Console | None = None) -> None:
    """`Console.print_json(data=...)`. Its colouring takes seconds for the megabytes of a large site's plan;
    where nothing is coloured (not a terminal, not recorded) the same text is written as it is."""
    out = out or console
    if out.is_terminal or out.record:
        out.print_json(data=data)
        return
    # What rich's JSON renderable holds before it colours it, with print's closing newline.
    out.file.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def display_error(message: str, hint: str | None = None) -> None:
    body = message if hint is None else f"{message}\n\n[bold]fix:[/bold] {hint}"
    err_console.print(Panel(body, title="error", border_style="red", expand=False))


P = ParamSpec("P")
R = TypeVar("R")


@contextlib.contextmanager
def error_edge() -> Iterator[None]:
    """User mistakes and environment problems end as a red panel and an exit code, never a traceback.

    The `tooling` entry point runs every command inside it once (tooling.cli); stand-alone entry points
    (`python -m tooling.sandbox`) wrap their commands with cli_edge, which is the same edge.
    """
    try:
        yield
    except ToolingError as exc:
        display_error(str(exc), exc.hint)
        raise typer.Exit(exc.exit_code) from None
    except ConfigError as exc:
        display_error(str(exc))
        raise typer.Exit(EXIT_USAGE) from None


def cli_edge(func: Callable[P, R]) -> Callable[P, R]:
    """`func` run inside error_edge()."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with error_edge():
            return func(*args, **kwargs)

    return wrapper


def interactive() -> bool:
    """Whether someone at a terminal can answer a question (stdin is one)."""
    import sys

    return sys.stdin.isatty()


def confirm(question: str, *, yes: bool) -> None:
    """Ask `question` ("... [y/N]") before a destructive action; only a "y" goes on.

    `yes` (the command's --yes) skips the question. Without a terminal on stdin there is nobody to ask:
    scripts and CI (which call these commands with no stdin) go on as they always have, and a line on
    stderr says that nobody confirmed, rather than hanging on a prompt no one will answer. Declined: exit 1,
    nothing done.
    """
    if yes:
        return
    if not interactive():
        err_console.print(f"no terminal to confirm on, going on (as with --yes): {question}", style="dim")
        return
    answer = typer.prompt(f"{question} [y/N]", default="", show_default=False, err=True)
    if answer.strip().lower() not in ("y", "yes"):
        err_console.print("nothing done")
        raise typer.Exit(EXIT_CHECK_FAILED)


@contextlib.contextmanager
def people_output_on_stderr(on: bool = True) -> Iterator[None]:
    """With --json, stdout holds the JSON document alone: while this lasts, what a command says for people
    (progress, tables, notes printed on `console`) goes to stderr instead. Off: nothing changes."""
    if not on or console.stderr:
        yield
        return
    console.stderr = True
    try:
        yield
    finally:
        console.stderr = False


def print_document(data: Any) -> None:
    """One JSON document on stdout (whatever people_output_on_stderr has moved)."""
    import json
    import sys

    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()
