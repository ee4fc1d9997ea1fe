"""cuda_nccl's nccl-tests sources (tasks/source.yml), run locally against a small git repository made here.

The role checks nccl-tests out at the commit pinned for the release, from the repository URL or a git bundle,
and refuses a checkout that is not that commit or has files that differ from it; new sources drop the old
build. Preflight refuses a release with no pinned commit, naming the variable to set. The pinned commit of
the default release is the one NVIDIA's repository tags.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.unit.local_playbook import run_local_playbook

VERSION = "9.9.9"


def _git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return proc.stdout.strip()


@pytest.fixture
def upstream(tmp_path: Path) -> dict[str, str]:
    """A stand-in for NVIDIA/nccl-tests: two commits, the first tagged as the release."""
    repo = tmp_path / "upstream"
    (repo / "src").mkdir(parents=True)
    (repo / "Makefile").write_text("all:\n\t@echo build\n")
    (repo / "src" / "all_reduce.cu").write_text("// release\n")
    _git(repo, "init", "-q", "-b", "master")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "release")
    _git(repo, "tag", f"v{VERSION}")
    release = _git(repo, "rev-parse", "HEAD")
    (repo / "src" / "all_reduce.cu").write_text("// later work\n")
    _git(repo, "commit", "-q", "-am", "later")
    return {"path": str(repo), "release": release, "later": _git(repo, "rev-parse", "HEAD")}


def _run(tmp_path: Path, overrides: dict[str, Any], entry: str = "source") -> tuple[int, dict[str, Any]]:
    """Run cuda_nccl's `entry` tasks on localhost; return the exit code and what the play recorded."""
    result = tmp_path / "result.json"
    play = {
        "name": f"cuda_nccl {entry}",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "tasks": [
            {
                "name": "Check the sources",
                "block": [
                    {
                        "name": "Run the role's tasks",
                        "ansible.builtin.include_role": {"name": "cuda_nccl", "tasks_from": entry},
                        "vars": {"cuda_nccl_tests_version": VERSION, **overrides},
                    },
                    {
                        "name": "Record a pass",
                        "ansible.builtin.copy": {
                            "content": "{{ {'failed_task': ''} | to_json }}",
                            "dest": str(result),
                            "mode": "0644",
                        },
                        # The play's changed count is the role's alone.
                        "changed_when": False,
                    },
                ],
                "rescue": [
                    {
                        "name": "Record the failure",
                        "ansible.builtin.copy": {
                            "content": "{{ {'failed_task': ansible_failed_task.name,"
                            " 'msg': ansible_failed_result.msg | default('')} | to_json }}",
                            "dest": str(result),
                            "mode": "0644",
                        },
                    }
                ],
            }
        ],
    }
    proc = run_local_playbook(tmp_path, [play], "-i", "localhost,")
    assert result.exists(), f"the play did not finish:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}"
    recorded = json.loads(result.read_text())
    recorded["stdout"] = proc.stdout
    result.unlink()
    return proc.returncode, recorded


def _vars(tmp_path: Path, upstream: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "cuda_nccl_tests_prefix": str(tmp_path / "prefix"),
        "cuda_nccl_tests_repo_url": upstream["path"],
        "cuda_nccl_tests_commits": {VERSION: upstream["release"]},
        **extra,
    }


def _recap_changed(stdout: str) -> int:
    line = next(line for line in stdout.splitlines() if line.startswith("localhost") and "changed=" in line)
    return int(line.split("changed=")[1].split()[0])


def test_the_pinned_commit_is_checked_out_and_old_binaries_go(
    tmp_path: Path, upstream: dict[str, str]
) -> None:
    old_build = tmp_path / "prefix" / "build" / "all_reduce_perf"
    old_build.parent.mkdir(parents=True)
    old_build.write_text("built from other sources")

    _, first = _run(tmp_path, _vars(tmp_path, upstream))
    assert first["failed_task"] == "", first
    checkout = tmp_path / "prefix" / "src" / "nccl-tests"
    # The tag's commit, not the repository's newer HEAD.
    assert _git(checkout, "rev-parse", "HEAD") == upstream["release"]
    assert (checkout / "src" / "all_reduce.cu").read_text() == "// release\n"
    assert not old_build.exists(), "binaries of other sources survived new sources"

    # Nothing to do the second time: unchanged, and a build of these sources is kept.
    old_build.parent.mkdir(parents=True)
    old_build.write_text("built from the checked sources")
    _, second = _run(tmp_path, _vars(tmp_path, upstream))
    assert second["failed_task"] == "" and _recap_changed(second["stdout"]) == 0, second["stdout"][-2000:]
    assert old_build.exists()


def test_a_bundle_on_the_control_machine_replaces_the_url(tmp_path: Path, upstream: dict[str, str]) -> None:
    bundle = tmp_path / "nccl-tests.bundle"
    _git(Path(upstream["path"]), "bundle", "create", str(bundle), "--all")
    overrides = _vars(
        tmp_path, upstream, cuda_nccl_tests_repo_url="https://nccl-tests.invalid/unreachable.git"
    )
    _, outcome = _run(tmp_path, {**overrides, "cuda_nccl_tests_local_bundle": str(bundle)})
    assert outcome["failed_task"] == "", outcome
    assert _git(tmp_path / "prefix" / "src" / "nccl-tests", "rev-parse", "HEAD") == upstream["release"]


def test_a_changed_checkout_is_refused(tmp_path: Path, upstream: dict[str, str]) -> None:
    _, first = _run(tmp_path, _vars(tmp_path, upstream))
    assert first["failed_task"] == "", first
    checkout = tmp_path / "prefix" / "src" / "nccl-tests"

    # A file the build would pick up, added after the checkout.
    (checkout / "src" / "extra.cu").write_text("// not in the release\n")
    _, added = _run(tmp_path, _vars(tmp_path, upstream))
    assert added["failed_task"] == "Check the checkout is the pinned commit, unmodified", added
    message = " ".join(added["msg"].split())
    assert f"is not nccl-tests at the pinned commit {upstream['release']}" in message
    assert f"cuda_nccl_tests_commits[{VERSION}]" in message
    assert "files that differ: ?? src/extra.cu" in message
    (checkout / "src" / "extra.cu").unlink()

    # A tracked file edited in place: git refuses to move such a checkout, and so does the role.
    (checkout / "src" / "all_reduce.cu").write_text("// edited on the node\n")
    _, edited = _run(tmp_path, _vars(tmp_path, upstream))
    assert edited["failed_task"] == "Check out nccl-tests at the pinned commit", edited
    assert "Local modifications exist" in edited["msg"]


def test_a_commit_the_repository_does_not_have_is_refused(tmp_path: Path, upstream: dict[str, str]) -> None:
    missing = "0123456789abcdef0123456789abcdef01234567"
    _, outcome = _run(tmp_path, _vars(tmp_path, upstream, cuda_nccl_tests_commit=missing))
    assert outcome["failed_task"] == "Check out nccl-tests at the pinned commit", outcome
    assert not (tmp_path / "prefix" / "build").exists()


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"cuda_nccl_tests_commits": {}},
            f"no commit is pinned for nccl-tests {VERSION} (cuda_nccl_tests_commits has none): "
            "set cuda_nccl_tests_commit to the full commit id",
        ),
        (
            {"cuda_nccl_tests_commit": "v2.13.12"},
            "cuda_nccl_tests_commit must be a full 40-digit commit id (got v2.13.12)",
        ),
    ],
    ids=["no-pin", "a-tag-instead-of-a-commit"],
)
def test_preflight_wants_a_pinned_commit(tmp_path: Path, overrides: dict[str, Any], expected: str) -> None:
    _, outcome = _run(tmp_path, overrides, entry="preflight")
    assert outcome["failed_task"] == "Check that the nccl-tests release has a pinned commit", outcome
    assert expected in " ".join(outcome["msg"].split())
