"""Start-up of `tooling --help` vs a bare interpreter (`python -c pass`), measured side by side.

    python bench/cli_start.py [--repeats 15] [COMMAND ...]

Each repeat starts both as fresh processes of this interpreter, one after the other (the order flips every
repeat, so a busy machine's drift hits both), and times each from start to exit. `tooling` runs the way
its console script does (`from tooling.cli import main; main()`), on this checkout's code. COMMAND, if
given, times `tooling COMMAND --help` instead. Prints the median of each and the ratio tooling / python:
what the CLI's imports cost on top of the interpreter's own start-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONSOLE_SCRIPT = "import sys; from tooling.cli import main; sys.argv[0] = 'tooling'; sys.exit(main())"


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=15, help="runs of each (default 15)")
    parser.add_argument("command", nargs="*", help="a command whose --help to time instead of the top level")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    return args


def timed(argv: list[str], env: dict[str, str]) -> float:
    """Seconds from start to exit of `argv`; its output is discarded, a failure ends the benchmark."""
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return elapsed


def main() -> int:
    args = parse()
    # This checkout's tooling/, ahead of any installed copy.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    runs = {
        "python -c pass": [sys.executable, "-c", "pass"],
        f"tooling {' '.join([*args.command, '--help'])}": [
            sys.executable,
            "-c",
            CONSOLE_SCRIPT,
            *args.command,
            "--help",
        ],
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for repeat in range(args.repeats):
        order = list(runs) if repeat % 2 == 0 else list(reversed(runs))
        for name in order:
            times[name].append(timed(runs[name], env))
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(
            f"{name:32s} median {medians[name] * 1000:7.0f} ms  (min {min(values) * 1000:.0f}, "
            f"max {max(values) * 1000:.0f}, {len(values)} runs)"
        )
    bare, cli = medians.values()
    print(f"ratio tooling / python = {cli / bare:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
