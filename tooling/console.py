"""One place for terminal output and for leaving the program with the right exit code.

Exit codes: 0 ok, 1 a check failed, 2 usage or input error (bad phase, bad file, unreachable setup).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NoReturn, ParamSpec, TypeVar

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


def abort(message: str, *, hint: str | None = None, code: int = EXIT_USAGE) -> NoReturn:
    raise ToolingError(message, hint=hint, exit_code=code)


P = ParamSpec("P")
R = TypeVar("R")


def cli_edge(func: Callable[P, R]) -> Callable[P, R]:
    """User mistakes and environment problems end as a red panel and an exit code, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ToolingError as exc:
            display_error(str(exc), exc.hint)
            raise typer.Exit(exc.exit_code) from None
        except ConfigError as exc:
            display_error(str(exc))
            raise typer.Exit(EXIT_USAGE) from None

    return wrapper
