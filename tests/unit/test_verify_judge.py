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
from tooling.verify.profiles import Band, Profile, VersionRule, load_profile

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
        "cpu_throttle": ok(fixture("cpu_thermal_throttle_4cpu.txt")),
        # /sys unreadable here (empty), so the ports come from ibstat: two NDR ports.
        "ib_sysfs": ok(""),
        "ibstat": ok(fixture("ibstat_h20_400g_cut.txt")),
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
        "cpu.thermal_throttle": "PASS",
        "gpu.count": "PASS",
        "gpu.sku": "PASS",
        "cuda.version": "PASS",
        "nccl.busbw": "PASS",
        # No alltoall_perf or dcgmi result in this record (it predates those tasks): nothing to judge.
        "nccl.alltoall_busbw": "SKIP",
        "dcgm.diag": "SKIP",
        "ib.ports": "PASS",
        # Without `nvidia-smi -q -x` the count comes from the CSV and the GPU health was not looked at.
        "cuda.driver": "WARN",
        "gpu.memory_errors": "WARN",
        "gpu.pcie_link": "WARN",
        "gpu.thermal_throttle": "WARN",
        "gpu.modes": "WARN",
    }
    assert by["gpu.modes"].reason == "not checked: nvidia-smi -q -x: no output collected"
    assert by["gpu.count"].measured == "4 x NVIDIA H100 80GB HBM3, 81559 MiB"
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
    # The node's GPUs are H100 SXM5: gpu_skus.yml's band (min 200, target 300) applies, not the profile's.
    text = fixture("all_reduce_perf_4gpu_ok.txt").replace("353.06", "250.00")
    node = cuda_node(nccl_allreduce=ok(text))
    by = rows_for(judge_all(PRODUCTION, ["gpu1"], {"gpu1": node}, None, {}), "gpu1")
    assert by["nccl.busbw"].status == "WARN"
    assert "H100 SXM5 80GB (gpu_skus.yml)" in by["nccl.busbw"].reason
    text = fixture("all_reduce_perf_4gpu_ok.txt").replace("353.06", "150.00")
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


# --- CPU topology, NUMA and throttling on real outputs of other architectures ----------------------------


def judge_one(profile: Profile, **commands: dict[str, Any]) -> dict[str, CheckResult]:
    return rows_for(judge_all(profile, ["n1"], {"n1": cuda_node(**commands)}, None, {}), "n1")


def test_hybrid_cpu_is_counted_from_the_summary_not_lscpu_p() -> None:
    by = judge_one(
        PRODUCTION,
        lscpu_parse=ok(fixture("lscpu_parsable_arm_4_core_types.txt")),
        lscpu=ok(fixture("lscpu_arm_4_core_types.txt")),
    )
    cores = by["cpu.cores"]
    assert (cores.status, cores.measured) == ("FAIL", "8 cores (1 x 3 + 1 x 2 + 1 x 2 + 1 x 1, 1 thr/core)")
    assert cores.reason == (
        "below the minimum 16; Cortex-A510 + Cortex-A710 + Cortex-A715 + Cortex-X3; "
        "3 by lscpu -p, whose core numbers restart for each core type"
    )


def test_s390x_lpar_is_judged_on_its_online_cpus() -> None:
    cores = judge_one(PRODUCTION, lscpu=ok(fixture("lscpu_s390x_lpar_books_offline.txt")))["cpu.cores"]
    assert (cores.status, cores.measured) == (
        "PASS",
        "17 cores (17 online CPUs / 1 thr per core, not the machine's 4 books x 6 sockets x 4, 1 thr/core)",
    )
    assert cores.reason == "within range; unknown model; 3 CPUs offline, not counted"


def test_arm_lscpu_without_socket_count_is_judged_on_its_cores() -> None:
    by = judge_one(PRODUCTION, lscpu=ok(fixture("lscpu_a64fx_clusters.txt")))
    cores = by["cpu.cores"]
    assert (cores.status, cores.measured) == ("WARN", "48 cores (4 clusters x 12, 1 thr/core)")
    assert cores.reason == "above the planned 32; A64FX"
    small = judge_one(PRODUCTION, lscpu=ok(fixture("lscpu_neoverse_n1_cluster.txt")))["cpu.cores"]
    assert (small.status, small.reason) == ("FAIL", "below the minimum 16; Neoverse-N1")
    s390x = judge_one(SANDBOX, lscpu=ok(fixture("lscpu_s390x_drawers.txt")))["cpu.cores"]
    assert (s390x.status, s390x.measured) == (
        "PASS",
        "2 cores (2 drawers x 1 books x 1 sockets x 1, 1 thr/core)",
    )


def test_parsable_lscpu_is_preferred_and_the_summary_names_the_model() -> None:
    by = judge_one(PRODUCTION, lscpu_parse=ok(fixture("lscpu_parsable_2socket.txt")))
    assert by["cpu.cores"].measured == "8 cores (2 x 4, 2 thr/core)"
    assert by["cpu.cores"].reason == "below the minimum 16; Intel(R) Xeon(R) Platinum 8462Y+"


def test_memory_only_numa_nodes_are_named_not_counted() -> None:
    by = judge_one(PRODUCTION, numactl=ok(fixture("numactl_aurora_hbm.txt")))
    numa = by["numa.nodes"]
    assert (numa.status, numa.measured) == ("PASS", "2")
    assert numa.reason.endswith("node2: memory only 64 GiB, node3: memory only 64 GiB")
    no_numactl = judge_one(
        PRODUCTION,
        numactl={"rc": 127, "stdout": "", "stderr": "sh: 1: numactl: not found"},
        lscpu=ok(fixture("lscpu_power9_memory_only_numa.txt")),
    )["numa.nodes"]
    assert (no_numactl.status, no_numactl.measured) == ("WARN", "2")
    assert no_numactl.reason.endswith("(count from lscpu); memory-only nodes 252, 253, 254, 255")
    grace = judge_one(
        PRODUCTION,
        numactl={"rc": 127, "stdout": "", "stderr": "sh: 1: numactl: not found"},
        lscpu_json=ok(fixture("lscpu_json_grace_4x72_null_numa.json")),
    )["numa.nodes"]
    assert (grace.status, grace.measured) == ("WARN", "4")
    assert grace.reason.endswith("memory-only nodes " + ", ".join(map(str, range(4, 36))))


@pytest.mark.parametrize(("count", "status"), [("0", "PASS"), ("1", "WARN"), ("2", "FAIL"), ("37", "FAIL")])
def test_cpu_thermal_throttle_band(count: str, status: str) -> None:
    text = fixture("cpu_thermal_throttle_4cpu.txt").replace(
        "cpu1/thermal_throttle/package_throttle_count:0",
        f"cpu1/thermal_throttle/package_throttle_count:{count}",
    )
    row = judge_one(PRODUCTION, cpu_throttle=ok(text))["cpu.thermal_throttle"]
    assert (row.status, row.measured, row.expected) == (
        status,
        f"{count} (largest counter since boot)",
        "<= 1 events (target <= 0)",
    )
    assert row.reason.endswith("throttled CPUs: 1" if count != "0" else "no CPU throttled since boot")


@pytest.mark.parametrize(
    ("name", "measured", "reason"),
    [
        ("cpu_thermal_throttle_node_exporter.txt", "30", "above the maximum 1; throttled CPUs: 0, 1, 2, 3"),
        ("cpu_thermal_throttle_procfs.txt", "34818", "above the maximum 1; throttled CPUs: 0, 1"),
    ],
)
def test_cpu_thermal_throttle_real_counters_fail(name: str, measured: str, reason: str) -> None:
    row = judge_one(PRODUCTION, cpu_throttle=ok(fixture(name)))["cpu.thermal_throttle"]
    assert (row.status, row.measured, row.reason) == (
        "FAIL",
        f"{measured} (largest counter since boot)",
        reason,
    )


def test_cpu_thermal_throttle_absent_skips() -> None:
    row = judge_one(PRODUCTION, cpu_throttle=ok(""))["cpu.thermal_throttle"]
    assert (row.status, row.reason) == (
        "SKIP",
        "no thermal_throttle counters on this kernel (not Intel, or a VM)",
    )
    node = cuda_node()
    del node["commands"]["cpu_throttle"]
    row = rows_for(judge_all(PRODUCTION, ["n1"], {"n1": node}, None, {}), "n1")["cpu.thermal_throttle"]
    assert (row.status, row.reason) == ("SKIP", "thermal_throttle counters not collected by this run")


# --- GPUs from nvidia-smi -q -x --------------------------------------------------------------------------

ONE_GPU = PRODUCTION.model_copy(update={"gpus_per_node": Band(min=1)})


def test_gpu_rows_from_the_xml() -> None:
    by = judge_one(ONE_GPU, nvidia_smi_xml=ok(fixture("nvidia_smi_q_x_a100_mig.xml")))
    assert (by["gpu.count"].status, by["gpu.count"].measured) == (
        "PASS",
        "1 x NVIDIA A100-SXM4-40GB, 40960 MiB",
    )
    assert by["gpu.count"].reason == "within range; driver 510.47.03"
    driver = by["cuda.driver"]
    assert (driver.status, driver.measured, driver.reason) == (
        "FAIL",
        "CUDA 11.6 (driver 510.47.03)",
        "older than the minimum 12.1",
    )
    assert by["gpu.memory_errors"].status == "PASS"
    assert by["gpu.pcie_link"].status == "PASS"
    assert (by["gpu.thermal_throttle"].status, by["gpu.thermal_throttle"].measured) == ("PASS", "0 of 1 GPUs")
    assert by["gpu.modes"].status == "WARN"


@pytest.mark.parametrize(
    ("name", "measured"),
    [
        ("nvidia_smi_q_x_a100_mig_cuda12.2_cut.xml", "CUDA 12.2 (driver 535.54.03)"),
        ("nvidia_smi_q_x_rtx3080_cuda13.2.xml", "CUDA 13.2 (driver 595.58.03)"),
        ("nvidia_smi_q_x_rtx4000_ada_cuda13.2.xml", "CUDA 13.2 (driver 595.84)"),
    ],
)
def test_cuda_12_and_13_drivers_pass_the_cuda_rule(name: str, measured: str) -> None:
    driver = judge_one(ONE_GPU, nvidia_smi_xml=ok(fixture(name)))["cuda.driver"]
    assert (driver.status, driver.measured, driver.reason) == ("PASS", measured, "new enough")


def test_xml_copy_missing_gpus_fails_the_count() -> None:
    count = judge_one(ONE_GPU, nvidia_smi_xml=ok(fixture("nvidia_smi_q_x_a100_mig_cuda12.2_cut.xml")))[
        "gpu.count"
    ]
    assert (count.status, count.measured) == ("FAIL", "1 x NVIDIA A100-SXM4-80GB, 81920 MiB")
    assert count.reason == (
        "nvidia-smi cannot read every GPU: nvidia-smi counts 4 attached GPUs but describes 1; "
        "driver 535.54.03"
    )


def test_gpu_count_from_a_csv_with_its_header() -> None:
    # No XML collected: the CSV fallback, a real header-first output of a wider query.
    count = judge_one(ONE_GPU, nvidia_smi=ok(fixture("nvidia_smi_csv_h200_590_header.csv")))["gpu.count"]
    assert (count.status, count.measured, count.reason) == (
        "PASS",
        "1 x NVIDIA H200, 143771 MiB",
        "within range; driver 590.48.01",
    )


def test_gpu_held_by_heat_warns_then_fails() -> None:
    hot = fixture("nvidia_smi_q_x_rtx4090_driver535.xml").replace(
        "<clocks_event_reason_hw_thermal_slowdown>Not Active<",
        "<clocks_event_reason_hw_thermal_slowdown>Active<",
    )
    row = judge_one(ONE_GPU, nvidia_smi_xml=ok(hot))["gpu.thermal_throttle"]
    assert (row.status, row.measured) == ("WARN", "1 of 1 GPUs")
    assert row.reason == "above the planned 0; GPU 0 (00000000:84:00.0): hw_thermal_slowdown"
    strict = ONE_GPU.model_copy(update={"thermal_throttle_events": Band(max=0)})
    assert judge_one(strict, nvidia_smi_xml=ok(hot))["gpu.thermal_throttle"].status == "FAIL"


def test_default_table_instead_of_csv_and_xml_is_one_clear_fail() -> None:
    table = ok(fixture("nvidia_smi_default_table_b200_cut.txt"))
    rows = judge_all(PRODUCTION, ["n1"], {"n1": cuda_node(nvidia_smi=table, nvidia_smi_xml=table)}, None, {})
    count = rows_for(rows, "n1")["gpu.count"]
    assert count.status == "FAIL" and count.measured == "-"
    assert count.reason.startswith(
        "nvidia-smi -q -x: got nvidia-smi's default table (version 610.43.02, 2 GPU"
    )
    assert [r.check for r in rows].count("gpu.count") == 1


def test_unreadable_xml_falls_back_to_the_csv_count() -> None:
    by = judge_one(PRODUCTION, nvidia_smi_xml={"rc": 6, "stdout": "", "stderr": "Unknown Error"})
    assert by["gpu.count"].status == "PASS"
    assert by["gpu.pcie_link"].status == "WARN"
    assert by["gpu.pcie_link"].reason == "not checked: nvidia-smi -q -x failed (rc 6): Unknown Error"


# --- nccl-tests cut off or failed ------------------------------------------------------------------------


def test_nccl_table_without_its_footer_fails() -> None:
    row = judge_one(PRODUCTION, nccl_allreduce=ok(fixture("all_reduce_perf_8xh200_cut.txt")))["nccl.busbw"]
    assert row.status == "FAIL"
    assert row.measured == "stopped after 16384 MiB (1 sizes, 8 ranks on vm)"
    assert row.reason == "incomplete: no 'Avg bus bandwidth' line, the run was cut off or a rank died"


@pytest.mark.parametrize(
    ("name", "measured"),
    [
        ("all_reduce_perf_8xh200_azure.txt", "480.0 GB/s @ 16384 MiB (avg 480.1, 8 ranks on vm)"),
        # Its author cut the small sizes and the rank lines; the footer is there, so the run is complete.
        ("all_reduce_perf_8xb300_small_sizes_cut.txt", "834.8 GB/s @ 8192 MiB (avg 440.6)"),
    ],
)
def test_complete_nccl_run_passes_with_ranks_and_hosts(name: str, measured: str) -> None:
    # Judged on cuda_node's H100 band (>= 200 GB/s): completeness and the figure are what is tested here.
    row = judge_one(PRODUCTION, nccl_allreduce=ok(fixture(name)))["nccl.busbw"]
    assert (row.status, row.measured) == ("PASS", measured)


def test_nccl_failure_keeps_what_nccl_tests_printed() -> None:
    text = fixture("all_reduce_perf_cuda_failure.txt")
    row = judge_one(PRODUCTION, nccl_allreduce={"rc": 1, "stdout": text, "stderr": ""})["nccl.busbw"]
    assert row.status == "FAIL"
    assert row.reason == (
        "all_reduce_perf failed (rc 1): node1: Test CUDA failure common.cu:1042 'unknown error'; "
        ".. node1 pid 41207: Test failure common.cu:891"
    )
    with_stderr = {"rc": 1, "stdout": text, "stderr": "mpirun noticed that process rank 0 exited on signal 6"}
    reason = judge_one(PRODUCTION, nccl_allreduce=with_stderr)["nccl.busbw"].reason
    assert reason.endswith("common.cu:891; mpirun noticed that process rank 0 exited on signal 6")


def test_real_nccl_failures_keep_the_reason_printed_on_stdout() -> None:
    text = fixture("all_reduce_perf_1024rank_cuda_error.txt")
    failed = judge_one(PRODUCTION, nccl_allreduce={"rc": 1, "stdout": text, "stderr": ""})["nccl.busbw"]
    assert (failed.status, failed.measured) == ("FAIL", "-")
    assert failed.reason.startswith(
        "all_reduce_perf failed (rc 1): HCA-128: Test NCCL failure common.cu:1204 'unhandled cuda error"
    )
    # The same output under rc 0 (a launcher that loses the status): the missing footer still fails it.
    cut = judge_one(PRODUCTION, nccl_allreduce=ok(text))["nccl.busbw"]
    assert cut.status == "FAIL" and cut.measured.startswith(
        "stopped after 16384 MiB (5 sizes, 100 ranks on HCA-32,"
    )
    assert "; it printed: HCA-128: Test NCCL failure common.cu:1204" in cut.reason
    # NCCL 1.x: the settings line without "#" is the header, not the reason.
    old = judge_one(PRODUCTION, nccl_allreduce=ok(fixture("all_reduce_perf_nccl1_header_failure.txt")))
    assert (old["nccl.busbw"].status, old["nccl.busbw"].reason) == (
        "FAIL",
        "all_reduce_perf failed: NCCL failure all_reduce.cu:95 'unhandled cuda error'",
    )


def test_nccl_run_cut_before_its_first_row_fails() -> None:
    text = fixture("all_reduce_perf_16xh100_header_cut.txt")
    row = judge_one(PRODUCTION, nccl_allreduce=ok(text))["nccl.busbw"]
    assert (row.status, row.reason) == (
        "FAIL",
        "incomplete: stopped before its first result, 13 ranks on h100-2, h100-4",
    )
