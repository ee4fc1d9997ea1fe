"""Checkpoint files: atomic, verified by sha256, last K kept, corrupt ones skipped for older ones; a save
keeps what it wrote, a fresh start sets another run's checkpoints aside, crash orphans are pruned."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from ddp import atomic
from ddp.checkpoint import CheckpointStore
from ddp.checkpoint_verify import OK, verify_directory
from ddp.dist import DistEnv
from ddp.distributed_checkpoint import DistributedCheckpointer


def state(value: float) -> dict:
    return {"step": int(value), "model": {"w": torch.full((4,), value)}}


def test_save_load_and_keep_last(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep_last=2)
    for step in (10, 20, 30):
        store.save(state(step), step)
    assert [e.step for e in store.entries()] == [20, 30]
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["step-000000020.pt", "step-000000030.pt"]
    found = store.load_newest()
    assert found is not None
    entry, loaded = found
    assert entry.step == 30
    assert torch.equal(loaded["model"]["w"], torch.full((4,), 30.0))


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "garbage_same_size"])
def test_damaged_newest_is_skipped_for_previous(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = CheckpointStore(tmp_path, keep_last=3)
    store.save(state(1), 1)
    newest = store.save(state(2), 2)
    path = tmp_path / newest.file
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        path.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    elif damage == "delete":
        path.unlink()
    else:
        path.write_bytes(b"\0" * len(data))
    with caplog.at_level(logging.WARNING, logger="ddp.checkpoint"):
        found = store.load_newest()
    assert found is not None and found[0].step == 1
    assert any(newest.file in r.getMessage() and "skipping" in r.getMessage() for r in caplog.records)


def test_all_damaged_means_fresh_start(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep_last=3)
    entry = store.save(state(1), 1)
    (tmp_path / entry.file).write_bytes(b"x")
    assert store.load_newest() is None


def test_unreadable_manifest_is_reported_not_fatal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = CheckpointStore(tmp_path, keep_last=3)
    store.save(state(1), 1)
    store.manifest_path.write_text("{not json")
    with caplog.at_level(logging.ERROR, logger="ddp.checkpoint"):
        assert store.load_newest() is None
    assert "unreadable" in caplog.text


def test_file_not_in_manifest_does_not_count(tmp_path: Path) -> None:
    """A crash between writing the file and the manifest leaves a file that must not be trusted."""
    store = CheckpointStore(tmp_path, keep_last=3)
    store.save(state(1), 1)
    torch.save({"format": 1, **state(9)}, tmp_path / "step-000000009.pt")
    found = store.load_newest()
    assert found is not None and found[0].step == 1


def test_failed_write_leaves_previous_intact_and_no_temp_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CheckpointStore(tmp_path, keep_last=3)
    store.save(state(1), 1)
    before = json.loads(store.manifest_path.read_text())

    def disk_full(*_args: object, **_kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        store.save(state(2), 2)
    monkeypatch.undo()
    assert json.loads(store.manifest_path.read_text()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "step-000000001.pt"]
    assert store.load_newest() is not None


def test_manifest_that_cannot_be_written_takes_the_new_file_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new step file made it, the manifest did not: the file goes, the previous checkpoint stays."""
    store = CheckpointStore(tmp_path, keep_last=3)
    store.save(state(1), 1)
    real_write = atomic.atomic_write_json

    def manifest_disk_full(path: object, *args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("ddp.checkpoint.atomic_write_json", manifest_disk_full)
    with pytest.raises(OSError, match="No space left"):
        store.save(state(2), 2)
    monkeypatch.setattr("ddp.checkpoint.atomic_write_json", real_write)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "step-000000001.pt"]
    newest = store.load_newest()
    assert newest is not None and newest[0].step == 1


def other_runs_checkpoints(directory: Path, steps: tuple[int, ...] = (800, 1000, 1200)) -> CheckpointStore:
    store = CheckpointStore(directory, keep_last=3, run="shared-id")
    for step in steps:
        store.save(state(-step), step)
    return store


@pytest.mark.parametrize("keep_last", [1, 3])
def test_a_save_never_drops_the_file_it_just_wrote(tmp_path: Path, keep_last: int) -> None:
    """Listed steps past the new one (another run's, or a newer one resumed past) must not outrank it."""
    other_runs_checkpoints(tmp_path)
    store = CheckpointStore(tmp_path, keep_last=keep_last, run="shared-id")
    entry = store.save(state(200), 200)
    assert (tmp_path / entry.file).exists()
    assert [e.step for e in store.entries()] == [200]
    found = store.load_newest()
    assert found is not None and found[0].step == 200
    assert torch.equal(found[1]["model"]["w"], torch.full((4,), 200.0))


def test_fresh_start_sets_another_runs_checkpoints_aside_and_starts_a_new_manifest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logging.getLogger("ddp"), "propagate", True)
    other_runs_checkpoints(tmp_path)
    store = CheckpointStore(tmp_path, keep_last=3, run="shared-id")
    env = DistEnv(0, 0, 1, 1, "node1", 0, "gloo", torch.device("cpu"))
    with caplog.at_level(logging.WARNING, logger="ddp.checkpoint"):
        DistributedCheckpointer(store, env, "rank0").start_fresh()
    (aside,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert "run 'shared-id' (steps [800, 1000, 1200])" in caplog.text and str(aside) in caplog.text
    assert store.entries() == [] and not list(tmp_path.glob("*.pt"))
    store.save(state(200), 200)
    found = store.load_newest()
    assert found is not None and found[0].step == 200
    # Nothing of the other run is lost: its directory still verifies on its own.
    kept = verify_directory(aside, newest=3)
    assert kept.verdict == OK and [c.step for c in kept.checked] == [1200, 1000, 800]


def test_fresh_start_in_an_empty_directory_moves_nothing(tmp_path: Path) -> None:
    assert CheckpointStore(tmp_path / "new", keep_last=3).set_aside() is None
    (tmp_path / "new").mkdir()
    assert CheckpointStore(tmp_path / "new", keep_last=3).set_aside() is None
    assert list((tmp_path / "new").iterdir()) == []


def test_orphans_of_a_crash_are_pruned_but_never_symlinks_or_other_files(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    store = CheckpointStore(ckpt, keep_last=3)
    store.save(state(1), 1)
    # A crash between writing the file and listing it, and one in the middle of writing.
    torch.save({"format": 2, **state(5)}, ckpt / "step-000000005.pt")
    (ckpt / ".step-000000007.pt.k2j_x9a.tmp").write_bytes(b"half a checkpoint")
    # Things that are not the store's own files, whatever their names say.
    outside = tmp_path / "elsewhere.pt"
    outside.write_bytes(b"precious")
    (ckpt / "step-000000009.pt").symlink_to(outside)
    (ckpt / "step-000000003.pt.bak").write_bytes(b"operator's copy")
    (ckpt / "notes.txt").write_text("keep me")
    store.save(state(10), 10)
    assert sorted(p.name for p in ckpt.iterdir()) == [
        "manifest.json",
        "notes.txt",
        "step-000000001.pt",
        "step-000000003.pt.bak",
        "step-000000009.pt",
        "step-000000010.pt",
    ]
    assert (ckpt / "step-000000009.pt").is_symlink() and outside.read_bytes() == b"precious"
    assert [e.step for e in store.entries()] == [1, 10]
