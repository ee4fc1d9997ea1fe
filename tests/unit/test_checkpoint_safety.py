"""Checkpoints cannot run code: a planted pickle payload whose sha256 the manifest vouches for is refused
on resume and by `python -m ddp.checkpoint_verify`, named as unsafe, and never unpickled."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pickle
import random
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ddp import rng
from ddp.checkpoint import CheckpointStore, step_file
from ddp.checkpoint_format import UnsafeCheckpointError, decode_state, encode_state
from ddp.checkpoint_verify import UNSAFE, main
from tooling.check.judge import judge_checkpoint
from tooling.check.parsers import parse_checkpoint_verdict


class TouchMarker:
    """Unpickling this runs a shell command that creates `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def payload(marker: Path, kind: str) -> bytes:
    """A checkpoint-shaped file whose unpickling creates `marker`: torch's zip format or a bare pickle."""
    state = {"format": 2, "step": 2, "model": {"w": torch.ones(2)}, "hook": TouchMarker(marker)}
    if kind == "bare_pickle":
        return pickle.dumps(state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def plant(store: CheckpointStore, step: int, data: bytes) -> str:
    """Write `data` as step `step` and list it with its true sha256, as an attacker with disk access can."""
    name = step_file(step)
    (store.directory / name).write_bytes(data)
    manifest = json.loads(store.manifest_path.read_text())
    digest = hashlib.sha256(data).hexdigest()
    manifest["checkpoints"].append(
        {"file": name, "step": step, "sha256": digest, "bytes": len(data), "saved_at": 1.0}
    )
    store.manifest_path.write_text(json.dumps(manifest))
    return name


def good_store(directory: Path) -> CheckpointStore:
    store = CheckpointStore(directory, keep_last=3)
    store.save({"step": 1, "model": {"w": torch.zeros(2)}}, 1)
    return store


KINDS = ["torch_zip", "bare_pickle"]
# torch warns that a bare pickle's protocol is newer than its own files' before it refuses the payload.
pytestmark = pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")


@pytest.mark.parametrize("kind", KINDS)
def test_the_planted_payload_runs_code_when_fully_unpickled(tmp_path: Path, kind: str) -> None:
    """The payload is live, so the tests below prove something when their marker stays absent."""
    canary = tmp_path / "canary"
    data = payload(canary, kind)
    if kind == "bare_pickle":
        pickle.loads(data)
    else:
        torch.load(io.BytesIO(data), weights_only=False)
    assert canary.exists()


@pytest.mark.parametrize("kind", KINDS)
def test_resume_refuses_the_payload_and_falls_back_without_running_it(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logging.getLogger("ddp"), "propagate", True)
    marker = tmp_path / "marker"
    store = good_store(tmp_path / "ckpt")
    name = plant(store, 2, payload(marker, kind))
    with caplog.at_level(logging.ERROR, logger="ddp.checkpoint"):
        found = store.load_newest()
    assert not marker.exists(), "loading a checkpoint ran the code planted in it"
    assert found is not None and found[0].step == 1
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    message = record.getMessage()
    assert str(store.directory / name) in message and "unsafe" in message


@pytest.mark.parametrize("kind", KINDS)
def test_checkpoint_verify_calls_the_payload_unsafe_without_running_it(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "marker"
    store = good_store(tmp_path / "ckpt")
    name = plant(store, 2, payload(marker, kind))
    code = main([str(store.directory), "--json"])
    assert not marker.exists(), "checkpoint_verify ran the code planted in a checkpoint"
    verdict = json.loads(capsys.readouterr().out)
    assert code == 1 and verdict["verdict"] == UNSAFE
    assert f"{store.directory / name}: unsafe" in verdict["problem"]
    assert "posix.system" in verdict["problem"]
    (checked,) = verdict["checked"]
    assert (checked["file"], checked["ok"], checked["unsafe"]) == (name, False, True)
    # What `tooling check` makes of it over SSH.
    finding = judge_checkpoint("node1", parse_checkpoint_verdict(json.dumps(verdict)))
    assert finding.status == "FAIL" and name in finding.measured


def test_bytes_from_a_peer_are_refused_the_same_way(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    with pytest.raises(UnsafeCheckpointError, match=r"broadcast by rank 1: unsafe.*posix\.system"):
        decode_state(payload(marker, "torch_zip"), "the checkpoint broadcast by rank 1")
    assert not marker.exists()


def test_garbage_is_corrupt_not_unsafe() -> None:
    with pytest.raises(Exception) as info:
        decode_state(b"\0" * 512, "zeros")
    assert not isinstance(info.value, UnsafeCheckpointError)


def test_a_full_trainer_state_loads_weights_only_and_restores_every_rng(tmp_path: Path) -> None:
    """Model, optimizer, scheduler, data position and RNG states all pass the weights-only loader."""
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (step + 1))
    model(torch.ones(4, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    rng.seed_everything(5)
    random.gauss(0, 1)  # a cached gaussian is part of Python's state
    captured = rng.capture()
    expected = (random.random(), float(np.random.rand()), torch.rand(3))
    state = {
        "step": 7,
        "position": {"epoch": 1, "batch_in_epoch": 3},
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": [captured],
    }
    store = CheckpointStore(tmp_path, keep_last=1)
    entry = store.save(state, 7)
    raw = torch.load(tmp_path / entry.file, map_location="cpu", weights_only=True)
    assert raw["position"] == {"epoch": 1, "batch_in_epoch": 3}
    json.dumps(raw["rng"])  # the same plain data ranks exchange as JSON
    restored = decode_state(encode_state(raw), "round trip")
    rng.seed_everything(99)
    rng.restore(restored["rng"][0])
    again = (random.random(), float(np.random.rand()), torch.rand(3))
    assert again[:2] == expected[:2] and torch.equal(again[2], expected[2])
