"""A rank's status file: its last word (the orphan guard's "failed", written from another thread) is not
replaced by a training step's "running" that comes after it."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import torch

from ddp.dist import DistEnv
from ddp.status import RankStatus

ENV = DistEnv(1, 1, 2, 2, "node1", 0, "gloo", torch.device("cpu"))


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def test_writes_replace_each_other_until_the_last_word(tmp_path: Path) -> None:
    status = RankStatus(tmp_path, ENV, "run")
    status.write("running", step=5)
    assert read(status.path)["step"] == 5
    status.write("failed", final=True, error="the torchrun agent (pid 7) is gone")
    status.write("running", step=10)
    written = read(status.path)
    assert (written["state"], written["error"]) == ("failed", "the torchrun agent (pid 7) is gone")
    assert "step" not in written and written["rank"] == 1


def test_the_last_word_from_another_thread_stays_whatever_the_order(tmp_path: Path) -> None:
    status = RankStatus(tmp_path, ENV, "run")
    sealed = threading.Event()

    def training() -> None:
        for step in range(2000):
            status.write("running", step=step)
            if sealed.is_set():
                status.write("running", step=-1)  # one more after the last word, as a step would
                return

    thread = threading.Thread(target=training)
    thread.start()
    status.write("failed", final=True, error="gone")
    sealed.set()
    thread.join()
    assert read(status.path)["state"] == "failed"


def test_launcher_pid_is_the_one_torchrun_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from ddp.orphan_guard import LIFELINE_ENV

    monkeypatch.delenv(LIFELINE_ENV, raising=False)
    status = RankStatus(tmp_path, ENV, "run")
    status.write("running")
    assert read(status.path)["launcher_pid"] == read(status.path)["pid"] == os.getpid()
    monkeypatch.setenv(LIFELINE_ENV, "7:4353")  # forked by the warm pool for launcher 4353
    status = RankStatus(tmp_path, ENV, "run")
    status.write("running")
    assert (read(status.path)["pid"], read(status.path)["launcher_pid"]) == (os.getpid(), 4353)
