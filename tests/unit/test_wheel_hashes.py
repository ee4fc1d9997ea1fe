"""Node wheels installed with hashes: the control machine pins every wheel of a wheelhouse by its sha256
(plugins/filter/wheel_requirements.py), and the pytorch and ddp_trainer roles install on the node with
`pip install --require-hashes --no-index`, so a wheel changed after its sha256 was taken is refused.

The role tests run the roles' own wheelhouse and install tasks on this machine, into a throw-away venv, with
tiny wheels made here (a stand-in `torch` among them): once as they are, and once with a wheel replaced after
the control machine took the hashes, as if it had been changed on the way to the node.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError

from tests.unit.local_playbook import ROOT, run_local_playbook

TORCH_VERSION = "2.13.0"
HASH_MISMATCH = "THESE PACKAGES DO NOT MATCH THE HASHES"


def _filter_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "wheel_requirements", ROOT / "plugins/filter/wheel_requirements.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(
    directory: Path, name: str, version: str, *, requires: tuple[str, ...] = (), body: str = ""
) -> Path:
    """A minimal pure-Python wheel: package `name` whose __init__ holds VERSION (and `body`)."""
    directory.mkdir(parents=True, exist_ok=True)
    dist_info = f"{name}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {req}\n" for req in requires)
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n{body}".encode(),
        f"{dist_info}/METADATA": metadata.encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = "".join(f"{path},{_record_hash(data)},{len(data)}\n" for path, data in files.items())
    files[f"{dist_info}/RECORD"] = (record + f"{dist_info}/RECORD,,\n").encode()
    path = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in files.items():
            archive.writestr(member, data)
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the filter ---------------------------------------------------------------------------------------------


def test_every_wheel_is_pinned_by_version_and_sha256(tmp_path: Path) -> None:
    wheels = [
        make_wheel(tmp_path, "torch", "2.13.0+cpu"),
        make_wheel(tmp_path, "tiny_dep", "1.0"),
        make_wheel(tmp_path, "tiny_dep", "1.2"),
        make_wheel(tmp_path, "torch", "2.14.0"),
    ]
    files = [{"path": str(w), "checksum": _sha256(w)} for w in wheels]
    wheel_requirements = _filter_module().wheel_requirements
    by_name = {w.name: _sha256(w) for w in wheels}

    # The pinned torch (its local +cpu build), and the newest of a project held in several versions.
    assert wheel_requirements(files, pins={"torch": TORCH_VERSION}).splitlines() == [
        f"tiny-dep==1.2 --hash=sha256:{by_name['tiny_dep-1.2-py3-none-any.whl']}",
        f"torch==2.13.0+cpu --hash=sha256:{by_name['torch-2.13.0+cpu-py3-none-any.whl']}",
    ]
    assert wheel_requirements(files).splitlines()[1].startswith("torch==2.14.0 --hash=sha256:")
    assert wheel_requirements([]) == ""


def test_builds_of_one_version_share_a_line() -> None:
    files = [
        {"path": "/wh/numpy-2.1.0-cp311-cp311-manylinux_2_17_x86_64.whl", "checksum": "a" * 64},
        {"path": "/wh/numpy-2.1.0-cp312-cp312-manylinux_2_17_x86_64.whl", "checksum": "b" * 64},
    ]
    line = _filter_module().wheel_requirements(files)
    assert line == f"numpy==2.1.0 --hash=sha256:{'a' * 64} --hash=sha256:{'b' * 64}\n"


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"path": "/wh/a-1.0-py3-none-any.whl", "checksum": "0" * 40}, "has no sha256"),
        ({"path": "/wh/a-1.0-py3-none-any.whl"}, "checksum_algorithm: sha256"),
        ({"path": "/wh/not-a-wheel.tar.gz", "checksum": "0" * 64}, "is not a wheel file name"),
    ],
    ids=["sha1", "no-checksum", "not-a-wheel"],
)
def test_a_listing_without_sha256_is_refused(item: dict[str, str], expected: str) -> None:
    with pytest.raises(AnsibleFilterError, match=expected):
        _filter_module().wheel_requirements([item])


# --- the roles, run on this machine ----------------------------------------------------------------------


def _play(tmp_path: Path, role: str, role_vars: dict[str, Any], tamper: Path | None = None) -> dict[str, Any]:
    """The role's wheelhouse tasks (control machine), then optionally a wheel replaced by another build of the
    same version, then its install tasks (node). Returns the failed task and message, or none."""
    result = tmp_path / "result.json"
    tasks: list[dict[str, Any]] = [
        {
            "name": "Take the wheelhouse's hashes",
            "ansible.builtin.include_role": {"name": role, "tasks_from": "wheelhouse"},
        }
    ]
    if tamper is not None:
        tasks.append(
            {
                "name": "Replace a wheel after its sha256 was taken",
                "ansible.builtin.copy": {
                    "src": str(tamper),
                    "dest": str(role_vars["_test_tampered"]),
                    "mode": "0644",
                },
            }
        )
    tasks.append(
        {
            "name": "Install on the node",
            "ansible.builtin.include_role": {"name": role, "tasks_from": "install"},
        }
    )
    play = {
        "name": f"{role} wheelhouse and install",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "vars": role_vars,
        "tasks": [
            {
                "name": "Run the role",
                "block": [
                    *tasks,
                    {
                        "name": "Record a pass",
                        "ansible.builtin.copy": {"content": "{}", "dest": str(result), "mode": "0644"},
                    },
                ],
                "rescue": [
                    {
                        "name": "Record the failure",
                        "ansible.builtin.copy": {
                            "content": "{{ {'task': ansible_failed_task.name, 'stderr':"
                            " ansible_failed_result.stderr | default(ansible_failed_result.msg)}"
                            " | to_json }}",
                            "dest": str(result),
                            "mode": "0644",
                        },
                    }
                ],
            }
        ],
    }
    proc = run_local_playbook(tmp_path, [play], "-i", "localhost,")
    assert result.exists(), f"the play did not finish:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    recorded: dict[str, Any] = json.loads(result.read_text())
    return recorded


def _venv_has(venv: Path, module: str) -> str | None:
    # Run from the venv: from the checkout, `import ddp` would find the project's own package.
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-c", f"import {module}; print({module}.VERSION)"],
        cwd=venv,
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def _pytorch_vars(tmp_path: Path) -> dict[str, Any]:
    wheelhouse = tmp_path / "wheelhouse"
    make_wheel(wheelhouse, "torch", TORCH_VERSION, requires=("tinydep>=1",))
    make_wheel(wheelhouse, "tinydep", "1.0")
    return {
        "pytorch_version": TORCH_VERSION,
        "pytorch_accelerator": "cpu",
        "pytorch_python": sys.executable,
        "pytorch_system_packages": [],
        "pytorch_venv_path": str(tmp_path / "venv"),
        "pytorch_wheelhouse": str(wheelhouse),
        "pytorch_node_wheelhouse": str(tmp_path / "node-wheelhouse"),
        "pytorch_node_wheelhouse_keep": True,
        "_test_tampered": str(wheelhouse / "tinydep-1.0-py3-none-any.whl"),
    }


@pytest.mark.slow
def test_pytorch_installs_the_wheelhouse_with_hashes(tmp_path: Path) -> None:
    role_vars = _pytorch_vars(tmp_path)
    assert _play(tmp_path, "pytorch", role_vars) == {}
    venv = Path(role_vars["pytorch_venv_path"])
    assert _venv_has(venv, "torch") == TORCH_VERSION and _venv_has(venv, "tinydep") == "1.0"
    requirements = (Path(role_vars["pytorch_node_wheelhouse"]) / "requirements.txt").read_text().splitlines()
    wheelhouse = Path(role_vars["pytorch_wheelhouse"])
    torch = wheelhouse / f"torch-{TORCH_VERSION}-py3-none-any.whl"
    assert requirements == [
        f"tinydep==1.0 --hash=sha256:{_sha256(wheelhouse / 'tinydep-1.0-py3-none-any.whl')}",
        f"torch=={TORCH_VERSION} --hash=sha256:{_sha256(torch)}",
    ]


@pytest.mark.slow
def test_pytorch_refuses_a_wheel_changed_after_its_hash_was_taken(tmp_path: Path) -> None:
    role_vars = _pytorch_vars(tmp_path)
    other = make_wheel(
        tmp_path / "elsewhere", "tinydep", "1.0", body="import os  # not the wheel that was hashed\n"
    )
    failure = _play(tmp_path, "pytorch", role_vars, tamper=other)
    assert (
        failure.get("task")
        == "Install torch offline from the node's wheelhouse, each wheel checked against its sha256"
    )
    assert HASH_MISMATCH in failure["stderr"] and "tinydep" in failure["stderr"], failure
    assert _venv_has(Path(role_vars["pytorch_venv_path"]), "tinydep") is None


def _ddp_trainer_vars(tmp_path: Path) -> dict[str, Any]:
    """A project shaped like this one (a `ddp` package needing torch and one more dependency), a wheelhouse
    already holding that dependency (nothing is downloaded), and a venv that has torch, as the pytorch role
    leaves it."""
    project = tmp_path / "project"
    (project / "ddp").mkdir(parents=True)
    (project / "ddp" / "__init__.py").write_text("VERSION = '0.1.0'\n")
    (project / "ddp" / "config.py").write_text("")
    (project / "ddp" / "real_ddp_trainer.py").write_text("")
    (project / "ddp" / "rank_main.py").write_text("import torch, tinydep\n")
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "demo"\nversion = "0.1.0"\ndependencies = ["torch", "tinydep>=1"]\n'
    )
    wheelhouse = tmp_path / "wheelhouse"
    make_wheel(wheelhouse, "tinydep", "1.0")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    torch = make_wheel(tmp_path / "torch-wheel", "torch", TORCH_VERSION)
    subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "install", "-q", "--no-index", str(torch)],
        check=True,
    )
    return {
        "ddp_trainer_project_dir": str(project),
        "ddp_trainer_wheelhouse": str(wheelhouse),
        "ddp_trainer_venv_path": str(venv),
        "ddp_trainer_node_wheelhouse": str(tmp_path / "node-wheelhouse"),
        "_test_tampered": str(wheelhouse / "tinydep-1.0-py3-none-any.whl"),
    }


@pytest.mark.slow
def test_ddp_trainer_installs_the_wheelhouse_with_hashes(tmp_path: Path) -> None:
    role_vars = _ddp_trainer_vars(tmp_path)
    assert _play(tmp_path, "ddp_trainer", role_vars) == {}
    venv = Path(role_vars["ddp_trainer_venv_path"])
    assert _venv_has(venv, "ddp") == "0.1.0" and _venv_has(venv, "tinydep") == "1.0"
    requirements = (Path(role_vars["ddp_trainer_node_wheelhouse"]) / "requirements.txt").read_text()
    assert [line.split(" ")[0] for line in requirements.splitlines()] == [
        "ddp-trainer==0.1.0",
        "tinydep==1.0",
    ]


@pytest.mark.slow
def test_ddp_trainer_refuses_a_wheel_changed_after_its_hash_was_taken(tmp_path: Path) -> None:
    role_vars = _ddp_trainer_vars(tmp_path)
    other = make_wheel(
        tmp_path / "elsewhere", "tinydep", "1.0", body="import os  # not the wheel that was hashed\n"
    )
    failure = _play(tmp_path, "ddp_trainer", role_vars, tamper=other)
    assert failure.get("task", "").startswith(
        "Install the trainer and its dependencies from the node's wheelhouse"
    )
    assert HASH_MISMATCH in failure["stderr"] and "tinydep" in failure["stderr"], failure
    assert _venv_has(Path(role_vars["ddp_trainer_venv_path"]), "tinydep") is None
