"""Launch the real trainer under torchrun on this machine, the way nodes run it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import torch
import yaml

from ddp.ports import free_port_block  # noqa: F401  (the tests import it from here)
from tooling.job.torchrun import standalone_torchrun, torchrun_env

ROOT = Path(__file__).resolve().parents[2]

BASE_CONFIG: dict[str, Any] = {
    "workload": {"kind": "digits", "hidden_dim": 64},
    "training": {"batch_size": 16, "max_steps": 30, "log_every_steps": 10, "seed": 7},
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "checkpoint": {"every_steps": 10, "keep_last": 3},
    "metrics": {"enabled": False, "sync_check_every_steps": 10, "comm_probe_every_steps": 10},
}


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        out[key] = (
            deep_merge(out[key], value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else value
        )
    return out


def write_config(tmp_path: Path, name: str, changes: dict[str, Any] | None = None) -> Path:
    data = deep_merge(BASE_CONFIG, {"run": {"name": name, "output_dir": str(tmp_path / "runs")}})
    changes = dict(changes or {})
    if "workload" in changes:  # a different kind has different keys: replace, never merge
        data["workload"] = changes.pop("workload")
    data = deep_merge(data, changes)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


MONITOR_INTERVAL_S = 0.5


def trainer_env() -> dict[str, str]:
    env = torchrun_env(disable_shared_tcp_store=True, monitor_interval_s=MONITOR_INTERVAL_S)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = "1"
    return env


def torchrun_command(config: Path, nproc: int, *extra: str, max_restarts: int = 0) -> list[str]:
    return [*standalone_torchrun(config, nproc, max_restarts, MONITOR_INTERVAL_S), *extra]


def run_trainer(
    config: Path, nproc: int, *extra: str, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        torchrun_command(config, nproc, *extra),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=trainer_env(),
        cwd=config.parent,
    )


def run_dir(tmp_path: Path, name: str) -> Path:
    return tmp_path / "runs" / name


def summary(tmp_path: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir(tmp_path, name) / "summary.json").read_text())
    return data


def final_params(tmp_path: Path, name: str) -> dict[str, torch.Tensor]:
    ckpt_dir = run_dir(tmp_path, name) / "checkpoints"
    manifest = json.loads((ckpt_dir / "manifest.json").read_text())
    newest = max(manifest["checkpoints"], key=lambda e: e["step"])
    # weights_only, as the trainer itself loads: the real files must pass it.
    state = torch.load(ckpt_dir / newest["file"], map_location="cpu", weights_only=True)
    model: dict[str, torch.Tensor] = state["model"]
    return model


def explain(proc: subprocess.CompletedProcess[str]) -> str:
    return f"rc={proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-6000:]}"
