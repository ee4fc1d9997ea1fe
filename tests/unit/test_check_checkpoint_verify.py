"""`python -m ddp.checkpoint_verify`: real checkpoints written by CheckpointStore, then broken on purpose."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ddp.checkpoint import MANIFEST, CheckpointEntry, CheckpointStore
from ddp.checkpoint_verify import CORRUPT, NONE, OK, main, verify_directory
from tests.conftest import ROOT
from tooling.check.judge import judge_checkpoint
from tooling.check.parsers import parse_checkpoint_listing, parse_checkpoint_verdict


def _store(directory: Path, steps: tuple[int, ...] = (10, 20, 30)) -> CheckpointStore:
    store = CheckpointStore(directory, keep_last=3)
    for step in steps:
        store.save({"model": {"w": torch.full((4, 4), float(step))}, "step": step}, step)
    return store


def _flip_byte(path: Path, offset: int = 200) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    code = main(argv)
    return code, json.loads(capsys.readouterr().out)


def test_good_checkpoints_pass_and_name_the_newest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _store(tmp_path / "ckpt")
    code, verdict = _run([str(tmp_path / "ckpt"), "--json"], capsys)
    assert code == 0
    assert verdict["verdict"] == OK and verdict["manifest_entries"] == 3
    assert [c["file"] for c in verdict["checked"]] == ["step-000000030.pt"]
    assert verdict["checked"][0]["ok"] is True


def test_flipped_byte_in_newest_fails_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _store(tmp_path / "ckpt")
    _flip_byte(tmp_path / "ckpt" / "step-000000030.pt")
    code, verdict = _run([str(tmp_path / "ckpt"), "--json"], capsys)
    assert code == 1
    assert verdict["verdict"] == CORRUPT
    assert "step-000000030.pt" in verdict["problem"] and "sha256" in verdict["problem"]
    row = judge_checkpoint("node1", parse_checkpoint_verdict(json.dumps(verdict)))
    assert row.status == "FAIL" and "step-000000030.pt" in row.measured


def test_older_corruption_found_only_when_asked_for_more(tmp_path: Path) -> None:
    _store(tmp_path / "ckpt")
    _flip_byte(tmp_path / "ckpt" / "step-000000010.pt")
    assert verify_directory(tmp_path / "ckpt", newest=1).verdict == OK
    deeper = verify_directory(tmp_path / "ckpt", newest=3)
    assert deeper.verdict == CORRUPT
    assert [c.ok for c in deeper.checked] == [True, True, False]


def test_a_checkpoint_pruned_while_read_is_not_corruption(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _store(tmp_path / "ckpt")
    trainer = CheckpointStore(tmp_path / "ckpt", keep_last=3)
    original = CheckpointStore.verify
    raced: list[str] = []

    def racing(self: CheckpointStore, entry: CheckpointEntry) -> str | None:
        if not raced:
            raced.append(entry.file)  # the live trainer saves three more and prunes the one being read
            for step in (40, 50, 60):
                trainer.save({"step": step}, step)
        return original(self, entry)

    monkeypatch.setattr(CheckpointStore, "verify", racing)
    result = verify_directory(tmp_path / "ckpt")
    assert raced == ["step-000000030.pt"]
    assert result.verdict == OK and result.checked[0].file == "step-000000060.pt"


def test_a_listed_checkpoint_that_is_gone_fails(tmp_path: Path) -> None:
    _store(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "step-000000030.pt").unlink()
    result = verify_directory(tmp_path / "ckpt")
    assert result.verdict == CORRUPT and "step-000000030.pt: file is missing" in (result.problem or "")


def test_truncated_file_and_unloadable_bytes_fail(tmp_path: Path) -> None:
    store = _store(tmp_path / "ckpt", (10,))
    path = tmp_path / "ckpt" / "step-000000010.pt"
    path.write_bytes(path.read_bytes()[:-10])
    assert "truncated" in (verify_directory(tmp_path / "ckpt").checked[0].problem or "")
    # Garbage whose sha256 the manifest vouches for: only torch.load can tell.
    garbage = b"not a torch file" * 10
    path.write_bytes(garbage)
    manifest = json.loads(store.manifest_path.read_text())
    manifest["checkpoints"][0].update(sha256=hashlib.sha256(garbage).hexdigest(), bytes=len(garbage))
    store.manifest_path.write_text(json.dumps(manifest))
    result = verify_directory(tmp_path / "ckpt")
    assert result.verdict == CORRUPT
    assert "cannot be loaded by torch" in (result.checked[0].problem or "")


def test_missing_manifest_with_checkpoint_files_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _store(tmp_path / "ckpt")
    (tmp_path / "ckpt" / MANIFEST).unlink()
    code, verdict = _run([str(tmp_path / "ckpt"), "--json"], capsys)
    assert code == 1 and verdict["verdict"] == CORRUPT
    assert "manifest.json is missing" in verdict["problem"] and "step-000000030.pt" in verdict["problem"]


def test_unreadable_manifest_fails(tmp_path: Path) -> None:
    _store(tmp_path / "ckpt", (10,))
    (tmp_path / "ckpt" / MANIFEST).write_text("{not json")
    result = verify_directory(tmp_path / "ckpt")
    assert result.verdict == CORRUPT and "unreadable" in (result.problem or "")


def test_no_checkpoint_yet_is_none_not_a_failure(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "status").mkdir(parents=True)
    result = verify_directory(run_dir)
    assert result.verdict == NONE and result.directory == str(run_dir / "checkpoints")
    assert verify_directory(tmp_path / "nowhere").verdict == NONE


def test_run_directory_resolves_checkpoint_dir_from_summary(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    _store(run_dir / "ckpts", (5,))
    (run_dir / "summary.json").write_text(json.dumps({"config": {"checkpoint": {"dir": "ckpts"}}}))
    result = verify_directory(run_dir)
    assert result.verdict == OK and result.directory == str(run_dir / "ckpts")
    _store(run_dir / "checkpoints", (7,))
    (run_dir / "summary.json").unlink()
    assert verify_directory(run_dir).checked[0].step == 7


def test_text_output_and_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _store(tmp_path / "ckpt", (10,))
    assert main([str(tmp_path / "ckpt")]) == 0
    out = capsys.readouterr().out
    assert "step-000000010.pt (step 10" in out and ": ok" in out
    with pytest.raises(SystemExit) as info:
        main([str(tmp_path), "--newest", "0"])
    assert info.value.code == 2
    assert "--newest" in capsys.readouterr().err


@pytest.mark.slow
def test_runs_as_a_module(tmp_path: Path) -> None:
    # What the node runs: `python -m ddp.checkpoint_verify DIR --json` (a fresh interpreter imports torch).
    _store(tmp_path / "ckpt", (10,))
    proc = subprocess.run(
        [sys.executable, "-m", "ddp.checkpoint_verify", str(tmp_path / "ckpt"), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert parse_checkpoint_verdict(proc.stdout).checked[0].file == "step-000000010.pt"


def test_list_names_every_checkpoint_and_the_retention(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    _store(run / "ckpt", (10, 20, 30))
    (run / "summary.json").write_text(json.dumps({"config": {"checkpoint": {"dir": "ckpt", "keep_last": 3}}}))
    code, listing = _run([str(run), "--list"], capsys)
    assert code == 0
    assert listing["directory"] == str(run / "ckpt") and listing["keep_last"] == 3
    assert [e["step"] for e in listing["entries"]] == [10, 20, 30]
    times = [e["saved_at"] for e in listing["entries"]]
    assert times == sorted(times) and all(e["bytes"] > 0 for e in listing["entries"])
    assert parse_checkpoint_listing(json.dumps(listing)).entries[-1].step == 30
    code, empty = _run([str(tmp_path / "nothing"), "--list"], capsys)
    assert code == 0 and empty["entries"] == [] and empty["keep_last"] is None


def test_trainer_package_does_not_import_tooling() -> None:
    source = (ROOT / "ddp" / "checkpoint_verify.py").read_text()
    assert "tooling" not in source.split('"""', 2)[2]
