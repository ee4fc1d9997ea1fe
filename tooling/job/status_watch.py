"""`tooling status --watch`: the status table re-drawn every few seconds until Ctrl-C.

On a terminal the table is re-drawn in place (rich Live); into a pipe or a file each round is printed after
the last one under a time line, since there is no screen to redraw.
"""

from __future__ import annotations

import time

from tooling.console import console
from tooling.job import records, status


def watch_status(chosen: records.Chosen, every_s: float) -> None:
    """Re-read and re-draw every `every_s` seconds; Ctrl-C ends it (exit 0: watching is not a check)."""
    from rich.live import Live

    try:
        if console.is_terminal:
            with Live(console=console, auto_refresh=False, screen=False) as live:
                while True:
                    shown = status.snapshot(chosen.deployment, chosen.inventory)
                    live.update(status.view(shown), refresh=True)
                    time.sleep(every_s)
        while True:
            shown = status.snapshot(chosen.deployment, chosen.inventory)
            console.print(f"--- {time.strftime('%H:%M:%S')} (every {every_s:g} s, Ctrl-C ends)", style="dim")
            console.print(status.view(shown))
            time.sleep(every_s)
    except KeyboardInterrupt:
        return
