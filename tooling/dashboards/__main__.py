"""`python -m tooling.dashboards [--check] [--output DIR]`: regenerate (or compare) the dashboard JSON.

Exit codes: 0 written or in step, 1 `--check` found drift, 2 usage error (argparse).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tooling.cli_examples import epilog
from tooling.dashboards.build import OUTPUT_DIR, drift, write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tooling.dashboards",
        description=__doc__,
        epilog=epilog("dashboards"),
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keeps one example per line
    )
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 when the files differ")
    parser.add_argument("--output", type=Path, default=OUTPUT_DIR, help=f"directory (default {OUTPUT_DIR})")
    args = parser.parse_args(argv)
    if args.check:
        problems = drift(args.output)
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print("run `python -m tooling.dashboards` and commit the result", file=sys.stderr)
            return 1
        print(f"dashboards in {args.output} match the generator")
        return 0
    changed = write(args.output)
    for path in changed:
        print(f"wrote {path}")
    if not changed:
        print(f"dashboards in {args.output} already up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
