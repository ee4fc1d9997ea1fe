"""`--check` means the run will start: what would stop the trainer at start-up is found by the check,
reported in one line per problem (file, key, expectation), with exit 2 and nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from sklearn.datasets import load_digits
from torch.utils.data import DistributedSampler, TensorDataset

from ddp.data import ShardedBatches, rank_share, shard_problem
from ddp.real_ddp_trainer import main
from ddp.workloads.digits import DIGITS_SAMPLES

FIXTURES = "tests.fixtures.workloads"
ROOT = Path(__file__).resolve().parents[2]


def import_workload(**changes: Any) -> dict[str, Any]:
    return {
        "kind": "import",
        "model": f"{FIXTURES}:tiny_model",
        "dataset": f"{FIXTURES}:dataset_with_nan",
        **changes,
    }


def write_config(tmp_path: Path, changes: dict[str, Any]) -> Path:
    data = {"run": {"output_dir": str(tmp_path / "runs")}, "workload": {"kind": "digits"}, **changes}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def check(path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["--config", str(path), "--check", *args])
    out, err = capsys.readouterr()
    return code, out, err


def written(tmp_path: Path) -> list[str]:
    """Everything under tmp_path but the config and what a case planted."""
    planted = {"config.yaml", "blocker"}
    return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.name not in planted)


NOT_STARTING = [
    pytest.param(
        {"workload": import_workload(model="no_such_package.models:build")},
        [],
        "workload.model: cannot import module 'no_such_package.models'",
        id="missing-module",
    ),
    pytest.param(
        {"workload": import_workload(model=f"{FIXTURES}:tiny_modle")},
        [],
        f"workload.model: module '{FIXTURES}' has no 'tiny_modle' (did you mean 'tiny_model'?)",
        id="missing-attribute",
    ),
    pytest.param(
        {"workload": import_workload(dataset="math:pi")},
        [],
        "workload.dataset: math:pi is float, not callable",
        id="not-callable",
    ),
    pytest.param(
        {"workload": import_workload(model_kwargs={"widht": 32})},
        [],
        f"workload.model_kwargs: {FIXTURES}:tiny_model cannot take these keyword arguments: got an "
        "unexpected keyword argument 'widht'; expected what it takes: input_dim, classes",
        id="unknown-kwarg",
    ),
    pytest.param(
        {"workload": import_workload(loss="builtins:len")},
        [],
        "workload.loss: builtins:len cannot take (output, target): too many positional arguments",
        id="loss-signature",
    ),
    pytest.param(
        {"workload": {"kind": "synthetic", "num_samples": 100}, "training": {"batch_size": 26}},
        ["--world-size", "4"],
        "training.batch_size: 26 is more than one rank's share of the data (100 samples over 4 rank(s) is "
        "25 each); a rank drops its short last batch",
        id="batch-larger-than-shard",
    ),
    pytest.param(
        {"training": {"batch_size": 1000}},
        ["--world-size", "2"],
        "training.batch_size: 1000 is more than one rank's share of the data (1797 samples over 2 rank(s)",
        id="batch-larger-than-digits-shard",
    ),
    pytest.param(
        {"checkpoint": {"dir": "{tmp}/blocker/checkpoints"}},
        [],
        "checkpoint.dir: {tmp}/blocker is a file, so {tmp}/blocker/checkpoints cannot be created; "
        "expected a directory",
        id="checkpoint-dir-not-creatable",
    ),
    pytest.param(
        {"run": {"output_dir": "{tmp}/blocker/runs"}},
        [],
        "run.output_dir: {tmp}/blocker is a file, so {tmp}/blocker/runs/ddp-run cannot be created",
        id="run-dir-not-creatable",
    ),
]


def planted(tmp_path: Path, value: Any) -> Any:
    """`value` with {tmp} standing for the test's directory."""
    return json.loads(json.dumps(value).replace("{tmp}", str(tmp_path)))


@pytest.mark.parametrize(("changes", "args", "expected"), NOT_STARTING)
def test_check_finds_what_would_stop_the_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], changes: dict, args: list[str], expected: str
) -> None:
    (tmp_path / "blocker").write_text("a file where a directory is needed\n")
    path = write_config(tmp_path, planted(tmp_path, changes))
    code, out, err = check(path, capsys, *args)
    assert code == 2, out + err
    assert err.count("\n") == 1 and err.startswith(f"{path}: "), err
    assert planted(tmp_path, expected) in err
    assert written(tmp_path) == [], "a failed check writes nothing"


def test_a_config_that_starts_passes_the_check_and_leaves_nothing_behind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "runs").mkdir()  # one directory that exists, one (the run's) that does not yet
    path = write_config(
        tmp_path,
        {
            "workload": import_workload(model_kwargs={"classes": 3}, dataset_kwargs={"size": 100}),
            "training": {"batch_size": 25},
            "checkpoint": {"dir": str(tmp_path / "elsewhere" / "checkpoints")},
        },
    )
    code, out, err = check(path, capsys, "--world-size", "4")
    assert (code, err) == (0, "")
    assert out == f"{path}: valid; ready to start here with 4 rank(s)\n"
    assert written(tmp_path) == ["runs"], "the directory probes leave nothing behind"


def test_check_takes_the_world_size_from_torchrun(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path, {"workload": {"kind": "synthetic", "num_samples": 64}})
    monkeypatch.setenv("WORLD_SIZE", "2")
    code, _, err = check(path, capsys)
    assert code == 2 and "64 samples over 2 rank(s) is 32 each" in err


def test_a_module_that_fails_to_import_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "gpu_only_models.py").write_text("raise RuntimeError('needs the cluster GPUs')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write_config(tmp_path, {"workload": import_workload(model="gpu_only_models:build")})
    code, _, err = check(path, capsys)
    assert code == 2
    assert (
        "workload.model: importing module 'gpu_only_models' failed: RuntimeError: needs the cluster GPUs"
    ) in err


def test_nccl_on_a_node_without_cuda_is_found_by_the_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    path = write_config(tmp_path, {"distributed": {"backend": "nccl"}})
    code, _, err = check(path, capsys)
    assert code == 2
    assert f"{path}: distributed.backend: nccl needs a CUDA device and none is visible" in err


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "[::]"])
def test_check_refuses_wildcard_metrics_addresses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], address: str
) -> None:
    path = write_config(tmp_path, {"metrics": {"bind_address": address}})
    code, _, err = check(path, capsys)
    assert code == 2
    assert f"{path}: metrics.bind_address: a wildcard address listens on every interface" in err


# --- a real start (a process of its own: it imports torch and would join a process group) ------------


def start(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ddp.real_ddp_trainer", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=path.parent,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
        check=False,
    )


def test_a_run_that_cannot_start_prints_one_line_and_leaves_no_run_directory(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"workload": import_workload(model_kwargs={"widht": 32})})
    proc = start(path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"{path}: workload.model_kwargs: ")
    assert not (tmp_path / "runs").exists()


def test_a_dataset_too_small_for_the_batch_found_once_built_marks_the_rank_failed(tmp_path: Path) -> None:
    """A user's dataset is sized only when its factory runs: the rank then says it failed, and why."""
    path = write_config(
        tmp_path,
        {
            "workload": import_workload(dataset_kwargs={"size": 8}),
            "training": {"batch_size": 16},
            "metrics": {"enabled": False},
        },
    )
    proc = start(path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{path}: cannot start: training.batch_size: 16 is more than one rank's share" in proc.stderr
    status = json.loads((tmp_path / "runs" / "ddp-run" / "status" / "rank0.json").read_text())
    assert status["state"] == "failed"
    assert status["error"].startswith("cannot start: training.batch_size: 16 is more than")


# --- the figures the checks rest on --------------------------------------------------------------------


@pytest.mark.parametrize(("samples", "ranks"), [(100, 4), (101, 4), (1797, 8), (5, 8), (7, 1)])
def test_rank_share_is_what_the_sampler_gives_each_rank(samples: int, ranks: int) -> None:
    dataset = TensorDataset(torch.zeros(samples, 1))
    sampler: DistributedSampler[Any] = DistributedSampler(dataset, num_replicas=ranks, rank=0)
    assert rank_share(samples, ranks) == len(sampler)


def test_the_digits_size_the_check_uses_is_the_datasets() -> None:
    assert len(load_digits().target) == DIGITS_SAMPLES


def test_building_the_batches_refuses_a_short_shard_with_the_checks_words() -> None:
    dataset = TensorDataset(torch.zeros(30, 1), torch.zeros(30))
    with pytest.raises(ValueError) as info:
        ShardedBatches(dataset, batch_size=16, rank=0, world_size=2, seed=0)
    assert str(info.value) == shard_problem(30, 2, 16)
    assert ShardedBatches(dataset, batch_size=15, rank=1, world_size=2, seed=0).batches_per_epoch == 1


def test_a_rank_imports_scikit_learn_only_for_the_digits_workload() -> None:
    """Every rank of every (re)start imports the trainer: scikit-learn and scipy (about a second of CPU) come
    in only when the digits workload is built."""
    probe = (
        "import sys; import ddp.real_ddp_trainer; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy')))"
    )
    shown = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert shown.stdout.strip() == "[]", shown.stdout[:500]
