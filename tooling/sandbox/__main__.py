"""`python -m tooling.sandbox ...`: the sandbox commands without the top-level `tooling` CLI."""

from tooling.sandbox.cli import sandbox_app

sandbox_app(prog_name="python -m tooling.sandbox")
