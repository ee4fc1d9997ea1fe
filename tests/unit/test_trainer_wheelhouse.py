"""roles/ddp_trainer/files/wheelhouse.py: an unchanged project is not rebuilt; a changed one is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "roles/ddp_trainer/files/wheelhouse.py"

pytestmark = pytest.mark.slow  # builds real wheels with pip


def _project(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "pkg/__init__.py").write_text("VALUE = 1\n")
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "demo"\nversion = "0.1.0"\ndependencies = []\n'
    )
    return root


def _fill(project: Path, wheelhouse: Path) -> dict:
    argv = [sys.executable, str(SCRIPT), "--project", str(project), "--wheelhouse", str(wheelhouse)]
    argv += ["--dist-name", "demo-node", "--package", "pkg"]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_unchanged_sources_skip_the_build_and_changes_rebuild(tmp_path: Path) -> None:
    project = _project(tmp_path / "project")
    wheelhouse = tmp_path / "wheelhouse"
    first = _fill(project, wheelhouse)
    assert first["changed"] is True
    wheel = Path(first["wheel"])
    built = wheel.read_bytes()

    again = _fill(project, wheelhouse)
    assert again == {**first, "changed": False, "saved": []}

    (project / "pkg/__init__.py").write_text("VALUE = 2\n")
    edited = _fill(project, wheelhouse)
    assert edited["changed"] is True and wheel.read_bytes() != built

    # A wheel removed by hand is noticed: the wheelhouse's file list is part of the fingerprint.
    wheel.unlink()
    restored = _fill(project, wheelhouse)
    assert restored["changed"] is True and wheel.is_file()


def test_the_node_wheel_carries_the_package_entry_points_only(tmp_path: Path) -> None:
    """torchrun finds the trainer's rendezvous backend through an entry point: the node's wheel keeps those
    whose object is in the package, and drops one into code the node does not get."""
    import configparser
    import zipfile

    project = _project(tmp_path / "project")
    with (project / "pyproject.toml").open("a", encoding="utf-8") as toml:
        toml.write(
            '[project.entry-points."torchrun.handlers"]\n'
            'demo-c10d = "pkg.rendezvous:creator"\n'
            'tool-c10d = "tool.rendezvous:creator"\n'
            "[project.scripts]\n"
            'tool = "tool.cli:main"\n'
        )
    wheel = Path(_fill(project, tmp_path / "wheelhouse")["wheel"])
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")]
        entries = configparser.ConfigParser()
        entries.read_string(archive.read(name).decode())
    assert {section: dict(entries[section]) for section in entries.sections()} == {
        "torchrun.handlers": {"demo-c10d": "pkg.rendezvous:creator"}
    }
