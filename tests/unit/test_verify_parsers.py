"""Parsers for verify-node's raw outputs, on recorded tool outputs (tests/unit/fixtures/verify)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tooling.verify import parsers as p

FIXTURES = Path(__file__).parent / "fixtures" / "verify"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def test_lscpu_plain_and_json_agree_on_this_machine() -> None:
    plain = p.parse_lscpu(fixture("lscpu_vm_1socket.txt"))
    as_json = p.parse_lscpu_json(fixture("lscpu_vm_1socket.json"))
    assert plain == as_json
    assert (plain.sockets, plain.cores_per_socket, plain.threads_per_core) == (1, 2, 1)
    assert plain.physical_cores == 2 and plain.logical_cpus == 2
    assert plain.model_name == "AMD EPYC"
    assert plain.numa_cpus == {0: [0, 1]}


def test_sandbox_node_reports_the_host_resources() -> None:
    # Recorded inside a podman sandbox node: the container sees the host's CPUs, memory and disk.
    info = p.parse_lscpu_json(fixture("lscpu_sandbox_node.json"))
    assert info.logical_cpus == p.parse_lscpu(fixture("lscpu_vm_1socket.txt")).logical_cpus
    assert p.parse_free_bytes(fixture("free_sandbox_node.txt")).total_bytes == (
        p.parse_meminfo(fixture("meminfo_sandbox_node.txt")).total_bytes
    )
    disk = p.parse_df(fixture("df_sandbox_node_overlay.txt"))
    assert (disk.filesystem, disk.mount) == ("overlay", "/")


def test_lscpu_two_sockets_indented_terminal_layout() -> None:
    info = p.parse_lscpu(fixture("lscpu_2socket_example.txt"))
    assert info.physical_cores == 32
    assert info.threads_per_core == 2
    assert info.numa_nodes == 2
    assert info.numa_cpus[1][:2] == [16, 17] and len(info.numa_cpus[1]) == 32


def test_lscpu_json_nested_children_layout() -> None:
    nested = (
        '{"lscpu": [{"field": "CPU(s):", "data": "8", "children": ['
        '{"field": "On-line CPU(s) list:", "data": "0-7"}]},'
        '{"field": "Vendor ID:", "data": "GenuineIntel", "children": ['
        '{"field": "Model name:", "data": "Xeon", "children": ['
        '{"field": "Thread(s) per core:", "data": "2"}, {"field": "Core(s) per socket:", "data": "4"},'
        '{"field": "Socket(s):", "data": "1"}]}]},'
        '{"field": "NUMA:", "data": null, "children": [{"field": "NUMA node0 CPU(s):", "data": "0-7"}]}]}'
    )
    info = p.parse_lscpu_json(nested)
    assert (info.physical_cores, info.model_name, info.numa_cpus) == (4, "Xeon", {0: list(range(8))})


def test_numactl_one_node_recorded() -> None:
    info = p.parse_numactl_hardware(fixture("numactl_vm_1node.txt"))
    assert info.count == 1
    assert info.nodes[0].cpus == [0, 1]
    assert info.nodes[0].size_mb > 0
    assert info.distances == [[10]]


def test_numactl_two_nodes() -> None:
    info = p.parse_numactl_hardware(fixture("numactl_2node_example.txt"))
    assert info.count == 2
    assert info.nodes[1].size_mb == 258036 and info.nodes[1].free_mb == 251866
    assert len(info.nodes[0].cpus) == 32
    assert info.distances == [[10, 21], [21, 10]]


def test_numactl_without_numa_is_a_clear_error() -> None:
    with pytest.raises(p.ParseError, match="no NUMA available"):
        p.parse_numactl_hardware(fixture("numactl_no_numa.txt"))


def test_memory_from_meminfo_and_free_agree() -> None:
    meminfo = p.parse_meminfo(fixture("meminfo_vm.txt"))
    free = p.parse_free_bytes(fixture("free_vm.txt"))
    assert meminfo.total_bytes == free.total_bytes
    assert meminfo.total_bytes > 20 * 2**30
    assert free.available_bytes is not None and free.available_bytes <= free.total_bytes


def test_df_bytes() -> None:
    disk = p.parse_df(fixture("df_vm.txt"))
    assert disk.mount == "/"
    assert disk.avail_bytes == 82861944832
    header = "Filesystem 1B-blocks Used Available Use% Mounted on\n"
    wrapped = header + "/dev/mapper/very-long-name\n  100 40 60 40% /data\n"
    assert p.parse_df(wrapped).avail_bytes == 60


def test_mpirun_versions() -> None:
    assert p.parse_mpirun_version(fixture("mpirun_openmpi_4.1.4.txt")) == p.MpiInfo("Open MPI", "4.1.4")
    mpich = "HYDRA build details:\n    Version:                                 4.0.2\n"
    assert p.parse_mpirun_version(mpich) == p.MpiInfo("MPICH", "4.0.2")


def test_torch_json_with_leading_warning() -> None:
    info = p.parse_torch_json("UserWarning: something\n" + fixture("torch_cpu_2.13.json"))
    assert info.version == "2.13.0+cpu"
    assert info.gloo and not info.nccl and info.cuda is None


def test_nvidia_smi_four_gpus() -> None:
    inv = p.parse_nvidia_smi_csv(fixture("nvidia_smi_4gpu.csv"))
    assert inv.count == 4 and not inv.errors
    assert inv.models == ["NVIDIA H100 80GB HBM3"]
    assert inv.drivers == ["550.54.15"]
    assert inv.gpus[0].memory_mib == 81559


def test_nvidia_smi_failed_gpu_is_reported_not_dropped_silently() -> None:
    inv = p.parse_nvidia_smi_csv(fixture("nvidia_smi_failed_gpu.csv"))
    assert [g.index for g in inv.gpus] == [0, 1, 3]
    assert inv.errors == ["Unable to determine the device handle for GPU0000:4C:00.0: Unknown Error"]
    broken = p.parse_nvidia_smi_csv("0, NVIDIA H100, [Unknown Error], 81559 MiB\n")
    assert broken.errors == ["GPU 0: [Unknown Error]"]


def test_nvidia_smi_without_driver() -> None:
    with pytest.raises(p.ParseError, match="couldn't communicate with the NVIDIA driver"):
        p.parse_nvidia_smi_csv(fixture("nvidia_smi_no_driver.txt"))


def test_nvcc_release() -> None:
    assert p.parse_nvcc_version(fixture("nvcc_12.4.txt")) == "12.4"
    assert p.parse_nvcc_version(fixture("nvcc_11.8.txt")) == "11.8"


def test_all_reduce_perf_ok() -> None:
    result = p.parse_all_reduce_perf(fixture("all_reduce_perf_4gpu_ok.txt"))
    assert result.gpus == 4
    assert len(result.rows) == 26  # 8 B .. 256 MiB, factor 2
    assert result.rows[0].size_bytes == 8 and result.largest is not None
    assert result.largest.size_bytes == 268435456
    assert result.largest.oop_busbw == pytest.approx(353.06)
    assert result.peak_busbw_gbs == pytest.approx(354.83)
    assert result.avg_busbw_gbs == pytest.approx(85.8874)
    assert result.out_of_bounds == 0 and result.out_of_bounds_ok is True
    assert not result.wrong_rows and not result.errors


def test_all_reduce_perf_out_of_bounds() -> None:
    result = p.parse_all_reduce_perf(fixture("all_reduce_perf_4gpu_oob.txt"))
    assert result.out_of_bounds == 3072 and result.out_of_bounds_ok is False
    assert [r.size_bytes for r in result.wrong_rows] == [2**20, 2**22, 2**24]


def test_all_reduce_perf_cuda_failure_keeps_the_reason() -> None:
    result = p.parse_all_reduce_perf(fixture("all_reduce_perf_cuda_failure.txt"))
    assert not result.rows and result.avg_busbw_gbs is None
    assert result.errors[0] == "node1: Test CUDA failure common.cu:1042 'unknown error'"


def test_all_reduce_perf_without_root_column() -> None:
    # Releases before the `root` column; validation off (-c 0) prints N/A for #wrong.
    row = "  1048576   262144  float  sum    26.43   39.67   59.51       0    26.30   39.87   59.81  N/A"
    result = p.parse_all_reduce_perf(row + "\n# Avg bus bandwidth    : 59.5 \n")
    assert result.rows[0].oop_busbw == pytest.approx(59.51)
    assert result.rows[0].ip_wrong is None


def test_iperf3_recorded_loopback_and_refused() -> None:
    ok = p.parse_iperf3_json(fixture("iperf3_loopback.json"))
    assert ok.received_gbps > 0.1
    assert ok.streams == 1
    with pytest.raises(p.ParseError, match="Connection refused"):
        p.parse_iperf3_json(fixture("iperf3_refused.json"))


def test_gloo_probe_recorded() -> None:
    result = p.parse_gloo_probe(fixture("gloo_probe_1node_2proc.txt"))
    assert result.world_size == 2
    assert result.size_bytes == 16777216
    # n=2: busbw = algbw * 2(n-1)/n = algbw
    assert result.busbw_gbs == pytest.approx(result.algbw_gbs)


def test_version_helpers() -> None:
    assert p.version_tuple("2.13.0+cpu") == (2, 13, 0)
    assert p.version_tuple("12.4") == (12, 4)
    assert p.expand_cpu_list("0-3,8,10-11") == [0, 1, 2, 3, 8, 10, 11]
    with pytest.raises(ValueError):
        p.version_tuple("unknown")


ALL_PARSERS: list[Callable[[str], Any]] = [
    p.parse_lscpu,
    p.parse_lscpu_json,
    p.parse_numactl_hardware,
    p.parse_meminfo,
    p.parse_free_bytes,
    p.parse_df,
    p.parse_mpirun_version,
    p.parse_torch_json,
    p.parse_nvidia_smi_csv,
    p.parse_nvcc_version,
    p.parse_all_reduce_perf,
    p.parse_iperf3_json,
    p.parse_gloo_probe,
]


@pytest.mark.parametrize("parser", ALL_PARSERS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("name", ["empty.txt", "garbage.txt"])
def test_empty_or_garbage_gives_a_parse_error_naming_the_tool(
    parser: Callable[[str], Any], name: str
) -> None:
    text = fixture(name)
    if parser is p.parse_all_reduce_perf and name == "garbage.txt":
        # Free text instead of a table is how nccl-tests reports a dead GPU: kept as errors, not raised.
        assert p.parse_all_reduce_perf(text).errors
        return
    if parser is p.parse_nvidia_smi_csv and name == "garbage.txt":
        assert p.parse_nvidia_smi_csv(text).count == 0
        return
    with pytest.raises(p.ParseError) as info:
        parser(text)
    assert info.value.tool and info.value.reason


@pytest.mark.parametrize("parser", ALL_PARSERS, ids=lambda f: f.__name__)
@given(text=st.text(max_size=300))
def test_parsers_never_crash_on_arbitrary_text(parser: Callable[[str], Any], text: str) -> None:
    with contextlib.suppress(p.ParseError):
        parser(text)
