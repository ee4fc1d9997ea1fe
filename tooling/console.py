"""One place for terminal output and for leaving the program with the right exit code.

Exit codes: 0 ok, 1 a check failed, 2 usage or input error (bad phase, bad file, unreachable setup).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.panel import Panel

from ddp.config_errors import ConfigError

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2

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
