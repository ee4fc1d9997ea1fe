"""package_source's wheels_push on localhost: the wheels land in the node's directory with mode 0644, owned
by the user that unpacked them, and the scratch archive on the control machine is gone afterwards; in check
mode (the deploy's --plan) nothing is unpacked (unarchive cannot check a tar) and no archive is left either;
a second push of the same wheels reports no change."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.unit.local_playbook import run_local_playbook

WHEELS = {
    "ddp_trainer-0.1.0-py3-none-any.whl": b"PK\x03\x04 a trainer wheel",
    "pyyaml-6.0.4-cp311-cp311-manylinux2014_x86_64.whl": b"PK\x03\x04 another wheel",
}


def _play(wheels: list[str], dest: Path) -> list[dict[str, Any]]:
    """One play on localhost running the step with these inputs."""
    step = {"name": "package_source", "tasks_from": "wheels_push"}
    inputs = {"package_source_wheels": wheels, "package_source_wheels_dest": str(dest)}
    task = {"name": "Push the wheels", "ansible.builtin.include_role": step, "vars": inputs}
    return [
        {"name": "Push", "hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": [task]}
    ]


def _push(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, list[bool]]:
    source = tmp_path / "wheelhouse"
    source.mkdir(exist_ok=True)
    for name, data in WHEELS.items():
        if not (source / name).exists():  # rewritten, a wheel would be a newer file to unpack
            (source / name).write_bytes(data)
    dest = tmp_path / "node" / "wheelhouse"
    dest.mkdir(parents=True, exist_ok=True)
    play = _play([str(source / name) for name in sorted(WHEELS)], dest)
    env_tmp = tmp_path / "scratch"
    env_tmp.mkdir(exist_ok=True)
    monkeypatch.setenv("TMPDIR", str(env_tmp))  # where ansible.builtin.tempfile makes the archive
    done = run_local_playbook(tmp_path, play, "-i", "localhost,", *args, callback="json")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(done.stdout)["plays"][0]["tasks"]
    unpacked = [
        bool(t["hosts"]["localhost"].get("changed")) for t in results if "Unpack" in t["task"]["name"]
    ]
    return done.returncode, str(env_tmp), unpacked


@pytest.mark.parametrize("check", [False, True], ids=["run", "check mode"])
def test_the_wheels_arrive_and_no_scratch_archive_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, check: bool
) -> None:
    _, scratch, unpacked = _push(tmp_path, monkeypatch, *(["--check"] if check else []))
    dest = tmp_path / "node" / "wheelhouse"
    if check:
        assert unpacked == [False] and list(dest.iterdir()) == []
    else:
        assert unpacked == [True]
        assert {p.name: p.read_bytes() for p in dest.iterdir()} == WHEELS
        assert all(p.stat().st_mode & 0o777 == 0o644 for p in dest.iterdir())
        assert all(p.stat().st_uid == os.geteuid() for p in dest.iterdir())
    assert list(Path(scratch).iterdir()) == [], "the scratch archive was left behind"


def test_the_same_wheels_again_change_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _push(tmp_path, monkeypatch)
    _, _, unpacked = _push(tmp_path, monkeypatch)
    assert unpacked == [False]


def test_no_wheels_is_refused_naming_the_variables(tmp_path: Path) -> None:
    done = run_local_playbook(tmp_path, _play([], tmp_path), "-i", "localhost,")
    assert done.returncode != 0
    assert "needs package_source_wheels" in done.stdout and "package_source_wheels_dest" in done.stdout
