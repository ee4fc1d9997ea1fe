"""tooling.console.print_json writes what rich's Console.print_json writes where nothing is coloured."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from tooling.console import print_json

DATA: dict[str, Any] = {
    "phase": "2c",
    "nodes": [
        {"host": "gpu-r01-u01", "command": ["/opt/ddp/venv/bin/torchrun", "--local-addr", "2001:db8::1"]}
    ],
    "text": 'tab\there, quote " backslash \\ newline \n bell \a del \x7f C1 \x85 é ✓',
    "markup": "[bold]not markup[/bold] :smile:",
    "numbers": [0, -1, 1.5, 1e300, True, False, None],
    "empty": {"list": [], "dict": {}},
    "long": "x" * 500,
}


def test_the_same_text_as_rich_without_a_terminal() -> None:
    theirs, ours = io.StringIO(), io.StringIO()
    Console(file=theirs, width=40).print_json(data=DATA)
    print_json(DATA, Console(file=ours, width=40))
    assert ours.getvalue() == theirs.getvalue()


def test_a_terminal_still_gets_richs_colours() -> None:
    out = io.StringIO()
    print_json({"a": 1}, Console(file=out, force_terminal=True, color_system="standard"))
    assert "\x1b[" in out.getvalue()
