"""The layers of tooling/ (DESIGN.md), read from the source with ast: an import never runs back up, and
ddp/ (shipped to the nodes alone) never imports tooling/."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Bottom to top. A module belongs to the layer of the longest name here that it starts with; an import
# may go to its own layer or any below it.
LAYERS: list[tuple[str, list[str]]] = [
    # What every layer shares: the package, errors and console, the state root, verdict words, and the
    # probe script copied to nodes as is.
    ("base", ["tooling", "tooling.console", "tooling.home", "tooling.verdicts", "tooling.probes"]),
    ("plan", ["tooling.plan"]),
    # Talking to Ansible, SSH, podman and Prometheus; the shared typer options and help examples (no
    # behaviour of their own).
    (
        "io",
        [
            "tooling.runner",
            "tooling.inventory",
            "tooling.inventory_plugins",
            "tooling.inventory_values",
            "tooling.vault",
            "tooling.remote",
            "tooling.sandbox",
            "tooling.prometheus_api",
            "tooling.cli_options",
            "tooling.cli_examples",
        ],
    ),
    ("job", ["tooling.job"]),
    ("findings", ["tooling.verify", "tooling.check", "tooling.findings"]),
    (
        "users of jobs",
        [
            "tooling.soak",
            "tooling.sweep",
            "tooling.gates",
            "tooling.forecast",
            "tooling.report",
            "tooling.rehearse",
            "tooling.rehearse_local",
            "tooling.dashboards",
            "tooling.selfcheck",
            "tooling.doctor",
        ],
    ),
    ("cli", ["tooling.cli", "tooling.job_cli", "tooling.logs_cli", "tooling.doctor_cli"]),
]
TOP = len(LAYERS) - 1
PACKAGE = "tooling"  # the package itself is base; its modules are in the layers named for them
ENTRY_POINT = "__main__"  # `python -m tooling.X` runs the whole CLI: entry points sit with it at the top


def layer_of(module: str) -> int | None:
    if module.rsplit(".", 1)[-1] == ENTRY_POINT:
        return TOP
    best: tuple[int, int] | None = None  # (length of the matching name, layer)
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            inside = module == prefix or (prefix != PACKAGE and module.startswith(prefix + "."))
            if inside and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    return None if best is None else best[1]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported_modules(module: str, source: str, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """(line, module) for every import in the source, wherever it sits (functions, TYPE_CHECKING too)."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                # `from tooling import home` imports the module tooling.home, not the package.
                candidate = f"{base}.{alias.name}"
                yield node.lineno, candidate if is_module(candidate) else base


def upward_imports(module: str, source: str, is_package: bool = False) -> list[str]:
    own = layer_of(module)
    if own is None:
        return [f"{module}: in no layer of tests/unit/test_layers.py (add it to LAYERS)"]
    found = []
    for line, target in imported_modules(module, source, is_package):
        if not target.startswith("tooling"):
            continue
        theirs = layer_of(target)
        if theirs is None:
            found.append(f"{module}:{line} imports {target}, which is in no layer")
        elif theirs > own:
            found.append(
                f"{module}:{line} imports {target}: layer {LAYERS[own][0]!r} may not import "
                f"layer {LAYERS[theirs][0]!r} above it"
            )
    return found


def sources(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_no_import_runs_up_the_layers() -> None:
    problems = [
        problem
        for path in sources("tooling")
        for problem in upward_imports(
            module_name(path), path.read_text(encoding="utf-8"), path.name == "__init__.py"
        )
    ]
    assert not problems, "\n".join(problems)


def test_ddp_never_imports_tooling() -> None:
    problems = [
        f"{module_name(path)}:{line} imports {target}"
        for path in sources("ddp")
        for line, target in imported_modules(
            module_name(path), path.read_text(encoding="utf-8"), path.name == "__init__.py"
        )
        if target == "tooling" or target.startswith("tooling.")
    ]
    assert not problems, "ddp/ is shipped to the nodes alone:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("tooling.plan.phases", "from tooling.gates import site\n", "imports tooling.gates.site"),
        ("tooling.job.deploy", "def f():\n    from tooling.verify.cli import run_verify\n", "verify.cli"),
        ("tooling.check.prom", "from ..gates.prometheus import PrometheusClient\n", "gates.prometheus"),
        ("tooling.soak.jobs", "import tooling.job_cli\n", "layer 'cli'"),
        ("tooling.newthing", "import os\n", "in no layer"),
    ],
)
def test_an_upward_import_is_named(module: str, source: str, expected: str) -> None:
    [problem] = upward_imports(module, source)
    assert module in problem and expected in problem


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("tooling.cli", "from tooling.job_cli import deploy_command\nfrom tooling.plan import phases\n"),
        ("tooling.verify.__main__", "from tooling.cli import app\n"),
        ("tooling.soak.cli", "from tooling.gates.evidence import load_summary\nfrom . import record\n"),
    ],
)
def test_imports_down_or_across_are_allowed(module: str, source: str) -> None:
    assert upward_imports(module, source) == []
