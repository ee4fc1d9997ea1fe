"""`python -m tooling.verify verify-node ...`: the same command, through the `tooling` entry point and
its error edge (an entry point, so it sits at the top with tooling.cli)."""

import sys

from tooling.cli import app

app(args=sys.argv[1:], prog_name="python -m tooling.verify")
