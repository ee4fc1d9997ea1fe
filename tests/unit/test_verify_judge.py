"""The judge: every check's PASS / WARN / FAIL / SKIP on recorded and constructed node outputs."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tooling.findings import counts
from tooling.verify.judge import (
    CLUSTER,
    CheckResult,
    judge_all,
    judge_band,
    judge_version,
    overall,
)
from tooling.verify.profiles import Band, VersionRule, load_profile

FIXTURES = Path(__file__).parent / "fixtures" / "verify"
SANDBOX = load_profile("sandbox")
PRODUCTION = load_profile("production")


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def ok(stdout: str) -> dict[str, Any]:
    return {"rc": 0, "stdout": stdout, "stderr": ""}


def published() -> dict[str, Any]:
    return json.loads(fixture("published_2node_local.json"))


def cuda_node(**overrides: dict[str, Any]) -> dict[str, Any]:
    """A production-like GPU node assembled from the fixtures."""
    commands = {
        "lscpu_json": {"rc": 1, "stdout": "", "stderr": "lscpu: invalid option -- 'J'"},
        "lscpu": ok(fixture("lscpu_2socket_example.txt")),
        "numactl": ok(fixture("numactl_2node_example.txt")),
        "meminfo": ok("MemTotal:       528157544 kB\nMemAvailable:   510000000 kB\n"),
        "free": ok(""),
        "df": ok(
            "Filesystem 1B-blocks Used Available Use% Mounted on\n"
            "/dev/nvme0n1p1 4000000000000 1000 3000000000000 1% /data\n"
        ),
        "mpirun": ok(fixture("mpirun_openmpi_4.1.4.txt")),
        "torch": ok(
            '{"torch": "2.13.0+cu124", "cuda": "12.4", "cuda_available": true, "device_count": 4,'
            ' "gloo": true, "nccl": true}'
        ),
        "nvidia_smi": ok(fixture("nvidia_smi_4gpu.csv")),
        "nvcc": ok(fixture("nvcc_12.4.txt")),
        "nccl_allreduce": ok(fixture("all_reduce_perf_4gpu_ok.txt")),
    }
    commands.update(overrides)
    return {"accelerator": "cuda", "commands": commands}


def rows_for(rows: list[CheckResult], host: str) -> dict[str, CheckResult]:
    return {r.check: r for r in rows if r.host == host}


# --- bands and versions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "status"),
    [(10, "FAIL"), (16, "PASS"), (24, "PASS"), (32, "PASS"), (48, "WARN"), (200, "FAIL")],
)
def test_band_edges(value: float, status: str) -> None:
    band = Band(min=16, warn_above=32, max=128)
    assert judge_band(value, band)[0] == status


def test_band_warn_below_target() -> None:
    band = Band(min=200, warn_below=400)
    assert judge_band(250, band) == ("WARN", "below the target 400")
    assert judge_band(150, band) == ("FAIL", "below the minimum 200")
    assert judge_band(400, band)[0] == "PASS"


def test_versions() -> None:
    assert judge_version("4.1.4", VersionRule(min="4.1"))[0] == "PASS"
    assert judge_version("4.0.7", VersionRule(min="4.1"))[0] == "FAIL"
    assert judge_version("4.1.2", VersionRule(min="4.1", warn_below="5.0"))[0] == "WARN"
    assert judge_version("2.13.0+cpu", VersionRule(exact="2.13.0"))[0] == "PASS"
    assert judge_version("2.12.1", VersionRule(exact="2.13.0")) == ("FAIL", "pinned to 2.13.0")
    assert judge_version("garbage", VersionRule(min="1"))[0] == "FAIL"


# --- a real recorded run ---------------------------------------------------------------------------------


def test_recorded_local_run_passes_sandbox_profile() -> None:
    data = published()
    rows = judge_all(SANDBOX, ["node1", "node2"], data["verify_raw"], data["verify_net"], {})
    assert overall(rows) == "PASS", [r for r in rows if r.status == "FAIL"]
    node1 = rows_for(rows, "node1")
    assert node1["cpu.cores"].measured.startswith("2 cores")
    assert node1["mpi.version"].measured == "Open MPI 4.1.4"
    assert node1["torch.version"].status == "PASS"
    for check in ("torch.nccl", "gpu.count", "cuda.version", "nccl.busbw"):
        assert node1[check].status == "SKIP" and node1[check].reason == "accelerator is cpu"
    assert node1["net.iperf3 -> node2"].status == "PASS"
    cluster = rows_for(rows, CLUSTER)
    assert cluster["net.gloo_allreduce"].status == "PASS"
    assert "2 ranks" in cluster["net.gloo_allreduce"].measured


def test_recorded_local_run_fails_production_with_reasons() -> None:
    data = published()
    rows = judge_all(PRODUCTION, ["node1", "node2"], data["verify_raw"], data["verify_net"], {})
    node2 = rows_for(rows, "node2")
    assert node2["cpu.cores"].status == "FAIL"
    assert node2["cpu.cores"].reason.startswith("below the minimum 16")
    assert node2["memory.total"].status == "FAIL"
    assert node2["mpi.version"].status == "PASS"
    assert overall(rows) == "FAIL"


# --- unreachable, missing data, failed commands ----------------------------------------------------------


def test_unreachable_host_is_one_fail_row_and_others_are_still_judged() -> None:
    data = published()
    reason = (
        "Failed to connect to the host via ssh: ssh: connect to host 10.213.31.13 port 22: No route to host"
    )
    rows = judge_all(
        SANDBOX, ["node1", "node2", "node3"], data["verify_raw"], data["verify_net"], {"node3": reason}
    )
    node3 = [r for r in rows if r.host == "node3"]
    assert node3 == [CheckResult("node3", "ssh", "FAIL", "unreachable", "reachable", reason)]
    assert rows_for(rows, "node1")["cpu.cores"].status == "PASS"
    assert overall(rows) == "FAIL"


def test_host_without_published_data_reports_the_failed_task() -> None:
    rows = judge_all(SANDBOX, ["node1"], {}, None, {}, {"node1": ["task 'Read CPU topology' failed: boom"]})
    assert rows == [
        CheckResult("node1", "verify", "FAIL", "-", "raw outputs", "task 'Read CPU topology' failed: boom")
    ]


def test_task_failure_after_publishing_is_still_a_fail_row() -> None:
    data = published()
    failures = {"node2": ["task 'Make a scratch directory for the probe' failed: No space left on device"]}
    rows = judge_all(SANDBOX, ["node1", "node2"], data["verify_raw"], data["verify_net"], {}, failures)
    playbook = rows_for(rows, "node2")["playbook"]
    assert playbook.status == "FAIL" and "No space left on device" in playbook.reason
    assert "playbook" not in rows_for(rows, "node1")


def test_missing_commands_fail_with_the_command_named() -> None:
    rows = judge_all(SANDBOX, ["n"], {"n": {"accelerator": "cpu", "commands": {}}}, None, {})
    by = rows_for(rows, "n")
    assert by["cpu.cores"].status == "FAIL"
    assert "lscpu_json: no output collected" in by["cpu.cores"].reason
    assert by["mpi.version"].reason == "mpirun: no output collected"
    assert "torch: no output collected" in by["torch.version"].reason
    assert "torch.gloo" not in by  # one row for a dead interpreter, not three


def test_missing_tool_reports_rc_and_message() -> None:
    node = cuda_node(
        mpirun={"rc": 2, "stdout": "", "stderr": "", "msg": "[Errno 2] No such file or directory: b'mpirun'"}
    )
    rows = rows_for(judge_all(PRODUCTION, ["gpu1"], {"gpu1": node}, None, {}), "gpu1")
    assert rows["mpi.version"].status == "FAIL"
    assert (
        rows["mpi.version"].reason == "mpirun failed (rc 2): [Errno 2] No such file or directory: b'mpirun'"
    )


def test_missing_executable_under_ansible_2_19_is_named() -> None:
    # What ansible-core 2.19 registers for `command: mpirun --version` on a node without Open MPI.
    res = {"rc": 2, "stdout": "", "stderr": "", "cmd": "mpirun --version", "msg": "Error executing command."}
    rows = rows_for(judge_all(PRODUCTION, ["gpu1"], {"gpu1": cuda_node(mpirun=res)}, None, {}), "gpu1")
    assert (
        rows["mpi.version"].reason == "mpirun failed (rc 2): mpirun: not found (not installed or not on PATH)"
    )
    argv = {
        "rc": 2,
        "stdout": "",
        "stderr": "",
        "cmd": ["/opt/ddp/venv/bin/python", "-c", "x"],
        "msg": "Error executing command.",
    }
    rows = rows_for(judge_all(PRODUCTION, ["gpu1"], {"gpu1": cuda_node(torch=argv)}, None, {}), "gpu1")
    assert "/opt/ddp/venv/bin/python: not found" in rows["torch.version"].reason


def test_lscpu_json_failure_falls_back_to_plain_lscpu() -> None:
    rows = rows_for(judge_all(PRODUCTION, ["gpu1"], {"gpu1": cuda_node()}, None, {}), "gpu1")
    assert rows["cpu.cores"].status == "PASS"
    assert rows["cpu.cores"].measured.startswith("32 cores (2 x 16, 2 thr/core)")


def test_numactl_missing_warns_with_lscpu_count() -> None:
    node = cuda_node(numactl={"rc": 127, "stdout": "", "stderr": "sh: 1: numactl: not found"})
    rows = rows_for(judge_all(PRODUCTION, ["gpu1"], {"gpu1": node}, None, {}), "gpu1")
    assert rows["numa.nodes"].status == "WARN"
    assert rows["numa.nodes"].measured == "2"
    assert "numactl: not found" in rows["numa.nodes"].reason


def test_skipped_command_is_a_skip_row() -> None:
    node = cuda_node(nvcc={"skipped": True, "skip_reason": "Conditional result was False"})
    rows = rows_for(judge_all(PRODUCTION, ["gpu1"], {"gpu1": node}, None, {}), "gpu1")
    assert rows["cuda.version"].status == "SKIP"


# --- GPU checks ------------------------------------------------------------------------------------------


def test_healthy_gpu_node_passes_production() -> None:
    rows = judge_all(PRODUCTION, ["gpu1"], {"gpu1": cuda_node()}, None, {})
    by = rows_for(rows, "gpu1")
    assert {k: v.status for k, v in by.items()} == {
        "ssh": "PASS",
        "cpu.cores": "PASS",
        "memory.total": "PASS",
        "numa.nodes": "PASS",
        "disk.free": "PASS",
        "mpi.version": "PASS",
        "torch.version": "PASS",
        "torch.gloo": "PASS",
        "torch.nccl": "PASS",
        "gpu.count": "PASS",
        "cuda.version": "PASS",
        "nccl.busbw": "PASS",
    }
    assert by["gpu.count"].measured == "4 x NVIDIA H100 80GB HBM3"
    assert by["nccl.busbw"].measured.startswith("353.1 GB/s @ 256 MiB")


def test_failed_gpu_fails_the_count_with_nvidia_smi_message() -> None:
    node = cuda_node(nvidia_smi=ok(fixture("nvidia_smi_failed_gpu.csv")))
    by = rows_for(judge_all(PRODUCTION, ["gpu1"], {"gpu1": node}, None, {}), "gpu1")
    assert by["gpu.count"].status == "FAIL"
    assert "Unable to determine the device handle for GPU0000:4C:00.0" in by["gpu.count"].reason


def test_no_driver_fails_gpu_count() -> None:
    node = cuda_node(nvidia_smi={"rc": 9, "stdout": fixture("nvidia_smi_no_driver.txt"), "stderr": ""})
    by = rows_for(judge_all(PRODUCTION, ["gpu1"], {"gpu1": node}, None, {}), "gpu1")
    assert by["gpu.count"].status == "FAIL" and "rc 9" in by["gpu.count"].reason


def test_old_cuda_fails() -> None:
    node = cuda_node(nvcc=ok(fixture("nvcc_11.8.txt")))
    by = rows_for(judge_all(PRODUCTION, ["gpu1"], {"gpu1": node}, None, {}), "gpu1")
    assert (by["cuda.version"].status, by["cuda.version"].reason) == ("FAIL", "older than the minimum 12.1")


def test_nccl_out_of_bounds_fails_even_with_good_bandwidth() -> None:
    node = cuda_node(nccl_allreduce=ok(fixture("all_reduce_perf_4gpu_oob.txt")))
    by = rows_for(judge_all(PRODUCTION, ["gpu1"], {"gpu1": node}, None, {}), "gpu1")
    assert by["nccl.busbw"].status == "FAIL"
    assert "3072 out-of-bounds values" in by["nccl.busbw"].reason


def test_nccl_cuda_failure_is_reported() -> None:
    text = fixture("all_reduce_perf_cuda_failure.txt")
    node = cuda_node(nccl_allreduce={"rc": 2, "stdout": text, "stderr": ""})
    by = rows_for(judge_all(PRODUCTION, ["gpu1"], {"gpu1": node}, None, {}), "gpu1")
    assert by["nccl.busbw"].status == "FAIL"
    assert "rc 2" in by["nccl.busbw"].reason


def test_nccl_low_bandwidth_warns_then_fails() -> None:
    text = fixture("all_reduce_perf_4gpu_ok.txt").replace("353.06", "150.00")
    node = cuda_node(nccl_allreduce=ok(text))
    by = rows_for(judge_all(PRODUCTION, ["gpu1"], {"gpu1": node}, None, {}), "gpu1")
    assert by["nccl.busbw"].status == "WARN"
    text = fixture("all_reduce_perf_4gpu_ok.txt").replace("353.06", " 50.00")
    by = rows_for(
        judge_all(PRODUCTION, ["gpu1"], {"gpu1": cuda_node(nccl_allreduce=ok(text))}, None, {}), "gpu1"
    )
    assert by["nccl.busbw"].status == "FAIL"


def test_torch_without_nccl_on_cuda_host_fails() -> None:
    node = cuda_node(torch=ok('{"torch": "2.13.0+cpu", "cuda": null, "gloo": true, "nccl": false}'))
    by = rows_for(judge_all(PRODUCTION, ["gpu1"], {"gpu1": node}, None, {}), "gpu1")
    assert by["torch.nccl"].status == "FAIL"
    assert "NCCL or CUDA unusable" in by["torch.nccl"].reason


def test_wrong_torch_pin_and_no_gloo() -> None:
    node = cuda_node(
        torch=ok('{"torch": "2.12.0", "cuda": "12.4", "cuda_available": true, "gloo": false, "nccl": true}')
    )
    by = rows_for(judge_all(PRODUCTION, ["gpu1"], {"gpu1": node}, None, {}), "gpu1")
    assert by["torch.version"].status == "FAIL"
    assert by["torch.gloo"].status == "FAIL"


# --- network ---------------------------------------------------------------------------------------------


def test_iperf_missing_and_refused() -> None:
    data = published()
    net = copy.deepcopy(data["verify_net"])
    net["iperf_missing"] = {
        "node2": "iperf3 is not installed (allow installing it with verify_install_iperf3=true)"
    }
    net["iperf"]["node1->node2"]["result"] = {"rc": 0, "stdout": fixture("iperf3_refused.json"), "stderr": ""}
    rows = judge_all(SANDBOX, ["node1", "node2"], data["verify_raw"], net, {})
    assert rows_for(rows, "node2")["net.iperf3"].status == "FAIL"
    refused = rows_for(rows, "node1")["net.iperf3 -> node2"]
    assert refused.status == "FAIL" and "Connection refused" in refused.reason


def test_slow_link_warns() -> None:
    data = published()
    profile = SANDBOX.model_copy(update={"inter_node_gbps": Band(min=1, warn_below=1000)})
    rows = judge_all(profile, ["node1", "node2"], data["verify_raw"], data["verify_net"], {})
    assert rows_for(rows, "node1")["net.iperf3 -> node2"].status == "WARN"


def test_gloo_probe_failure_names_host_and_error() -> None:
    data = published()
    net = copy.deepcopy(data["verify_net"])
    net["gloo"]["node2"] = {"rc": 1, "stdout": "", "stderr": "torch.distributed.DistNetworkError: timed out"}
    rows = judge_all(SANDBOX, ["node1", "node2"], data["verify_raw"], net, {})
    gloo = rows_for(rows, CLUSTER)["net.gloo_allreduce"]
    assert gloo.status == "FAIL"
    assert "node2: torchrun failed (rc 1): torch.distributed.DistNetworkError: timed out" in gloo.reason


def test_single_node_skips_network_checks() -> None:
    data = published()
    rows = judge_all(SANDBOX, ["node1"], {"node1": data["verify_raw"]["node1"]}, {"nodes": ["node1"]}, {})
    cluster = rows_for(rows, CLUSTER)
    assert cluster["net.iperf3"].status == "SKIP"
    assert cluster["net.gloo_allreduce"].status == "SKIP"
    assert overall(rows) == "PASS"


def test_overall_and_counts() -> None:
    rows = [
        CheckResult("a", "x", "PASS", "", "", ""),
        CheckResult("a", "y", "SKIP", "", "", ""),
        CheckResult("a", "z", "WARN", "", "", ""),
    ]
    assert overall(rows) == "WARN"
    assert counts(rows) == {"PASS": 1, "WARN": 1, "FAIL": 0, "SKIP": 1}
    assert overall([]) == "PASS"
