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
    assert (plain.sockets, plain.layout, plain.threads_per_core) == (1, "1 x 2", 1)
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


# --- CPU topology on every architecture lscpu describes (fixtures/verify/README.md cites each output) ---


@pytest.mark.parametrize(
    ("parse", "name", "cores", "threads", "layout", "sockets"),
    [
        # Fujitsu A64FX: "Socket(s): -", the cores hang off 4 clusters (CMGs).
        (p.parse_lscpu, "lscpu_a64fx_clusters.txt", 48, 1, "4 clusters x 12", None),
        # Neoverse-N1 (Ampere Altra class) as Debian's arm64 builders print it.
        (p.parse_lscpu, "lscpu_neoverse_n1_cluster.txt", 12, 1, "1 clusters x 12", None),
        # IBM z: cores per socket, sockets per book, books per drawer, drawers.
        (p.parse_lscpu, "lscpu_s390x_drawers.txt", 2, 1, "2 drawers x 1 books x 1 sockets x 1", 2),
        # POWER9 with 4 threads per core.
        (p.parse_lscpu, "lscpu_power9_memory_only_numa.txt", 32, 4, "2 x 16", 2),
        # POWER9 with SMT off: 96 of its 128 CPUs offline, one thread per core left.
        (p.parse_lscpu, "lscpu_power9_smt_off.txt", 32, 1, "2 x 16", 2),
        # POWER7 LPAR (pHyp): 16 sockets of one core each.
        (p.parse_lscpu, "lscpu_power7_empty_numa_node.txt", 16, 4, "16 x 1", 16),
        # Four ARM core types, one summary section each.
        (p.parse_lscpu, "lscpu_arm_4_core_types.txt", 8, 1, "1 x 3 + 1 x 2 + 1 x 2 + 1 x 1", 1),
        # s390x LPARs print the machine's drawers/books/sockets (192 and 96 "cores"), of which the partition
        # runs 8 and 17 online CPUs: the cores are counted from the CPUs.
        (
            p.parse_lscpu,
            "lscpu_s390x_lpar_drawer_machine_counts.txt",
            8,
            1,
            "8 online CPUs / 1 thr per core, not the machine's 4 drawers x 2 books x 3 sockets x 8",
            None,
        ),
        (
            p.parse_lscpu,
            "lscpu_s390x_lpar_books_offline.txt",
            17,
            1,
            "17 online CPUs / 1 thr per core, not the machine's 4 books x 6 sockets x 4",
            None,
        ),
        # lscpu -J of util-linux 2.37+: sections nested under "children", headings with "data": null.
        (p.parse_lscpu_json, "lscpu_json_i7_8750h_nested.json", 6, 2, "1 x 6", 1),
        # lscpu -J of older releases: one flat list (Grace, 4 x 72 Neoverse-V2).
        (p.parse_lscpu_json, "lscpu_json_grace_4x72_null_numa.json", 288, 1, "4 x 72", 4),
    ],
)
def test_lscpu_counts_cores_on_any_topology(
    parse: Callable[[str], p.CpuInfo], name: str, cores: int, threads: int, layout: str, sockets: int | None
) -> None:
    info = parse(fixture(name))
    assert (info.physical_cores, info.threads_per_core, info.layout, info.sockets) == (
        cores,
        threads,
        layout,
        sockets,
    )
    assert info.logical_cpus - info.offline_cpus == cores * threads


@pytest.mark.parametrize(
    ("parse", "name", "cpu_nodes", "memory_only"),
    [
        (p.parse_lscpu, "lscpu_power9_memory_only_numa.txt", [0, 8], [252, 253, 254, 255]),
        # "NUMA node1 CPU(s):" with nothing after it.
        (p.parse_lscpu, "lscpu_power7_empty_numa_node.txt", [0], [1]),
        # Grace (4 x 72 Neoverse-V2): 32 GPU-memory nodes written as `"data": null` in lscpu -J.
        (p.parse_lscpu_json, "lscpu_json_grace_4x72_null_numa.json", [0, 1, 2, 3], list(range(4, 36))),
    ],
)
def test_lscpu_keeps_memory_only_numa_nodes_apart(
    parse: Callable[[str], p.CpuInfo], name: str, cpu_nodes: list[int], memory_only: list[int]
) -> None:
    info = parse(fixture(name))
    assert (info.cpu_numa_nodes, info.memory_only_numa_nodes) == (cpu_nodes, memory_only)
    assert info.numa_nodes == len(cpu_nodes) + len(memory_only)


def test_lscpu_json_model_name_under_its_vendor() -> None:
    # Nested -J puts "Model name" under "Vendor ID"; Grace's flat one names no model at all.
    assert p.parse_lscpu_json(fixture("lscpu_json_i7_8750h_nested.json")).model_name == (
        "Intel(R) Core(TM) i7-8750H CPU @ 2.20GHz"
    )
    assert p.parse_lscpu_json(fixture("lscpu_json_grace_4x72_null_numa.json")).model_name is None


def test_lscpu_sums_core_types_of_a_hybrid_cpu() -> None:
    # An 8-CPU phone SoC with three core types, cut after the second type's section (the copy at hand
    # stops there): each type has its own section; the cores are the sum, wrapped Flags lines are skipped.
    info = p.parse_lscpu(fixture("lscpu_arm_hybrid_cut.txt"))
    assert (info.physical_cores, info.layout) == (5, "1 x 3 + 1 x 2")
    assert info.model_name == "Cortex-A510 + Cortex-A710"


def test_lscpu_without_any_container_count_divides_cpus_by_threads() -> None:
    text = fixture("lscpu_neoverse_n1_cluster.txt").replace(
        "Cluster(s):                              1\n", ""
    )
    info = p.parse_lscpu(text)
    assert (info.physical_cores, info.layout) == (12, "12 online CPUs / 1 thr per core")


def test_lscpu_translated_output_is_a_clear_error() -> None:
    # A German-locale lscpu (a node whose login shell sets LANG=de_DE): the keys are not lscpu's C keys.
    with pytest.raises(p.ParseError, match="LC_ALL=C"):
        p.parse_lscpu(fixture("lscpu_german_locale.txt"))


@pytest.mark.parametrize(
    ("name", "logical", "cores", "threads", "layout", "numa"),
    [
        ("lscpu_parsable_4core_ht.txt", 8, 4, 2, "1 x 4", {0: list(range(8))}),
        (
            "lscpu_parsable_2socket.txt",
            16,
            8,
            2,
            "2 x 4",
            {0: [0, 1, 2, 3, 8, 9, 10, 11], 1: [4, 5, 6, 7, 12, 13, 14, 15]},
        ),
        # s390x LPAR: only the 17 online CPUs have rows, its Node column is empty, 2 to 4 cores a socket.
        ("lscpu_parsable_s390x_lpar_offline.txt", 17, 17, 1, "17 distinct cores over 7 sockets", {}),
        # Four ARM core types: lscpu numbers the cores again from 0 in each type, so the 8 cores read as 3
        # (the judge counts them from the summary instead: test_verify_judge).
        ("lscpu_parsable_arm_4_core_types.txt", 8, 3, 4, "1 x 3", {}),
    ],
)
def test_lscpu_parsable(name: str, logical: int, cores: int, threads: int, layout: str, numa: dict) -> None:
    info = p.parse_lscpu_parsable(fixture(name))
    assert (info.logical_cpus, info.physical_cores, info.threads_per_core, info.layout) == (
        logical,
        cores,
        threads,
        layout,
    )
    assert info.numa_cpus == numa


def test_lscpu_parsable_without_socket_ids_counts_distinct_cores() -> None:
    # The 2-socket table with its Socket column emptied, as lscpu prints it where firmware gives no socket.
    rows = fixture("lscpu_parsable_2socket.txt").splitlines()
    blanked = [
        r if r.startswith("#") else ",".join(c if i != 2 else "" for i, c in enumerate(r.split(",")))
        for r in rows
    ]
    info = p.parse_lscpu_parsable("\n".join(blanked))
    assert (info.physical_cores, info.sockets) == (8, None)
    assert info.layout == "8 distinct cores over unnumbered sockets"


def test_lscpu_parsable_errors() -> None:
    with pytest.raises(p.ParseError, match=r"no '# CPU,Core,\.\.\.' column header"):
        p.parse_lscpu_parsable("0,0,0,0\n")
    with pytest.raises(p.ParseError, match="no CPU rows"):
        p.parse_lscpu_parsable("# CPU,Core,Socket,Node\n")
    with pytest.raises(p.ParseError, match="unreadable row"):
        p.parse_lscpu_parsable("# CPU,Core,Socket,Node\nx,0,0,0\n")


@pytest.mark.parametrize(
    ("name", "core", "package", "worst", "throttled"),
    [
        # `grep -r .`: the *_time_ms lines beside the counters are skipped.
        ("cpu_thermal_throttle_4cpu.txt", {0: 0, 1: 0, 2: 0, 3: 0}, {0: 0, 1: 0, 2: 0, 3: 0}, 0, []),
        # Two packages (30 and 6 events), cores 0 and 3 throttled on their own.
        (
            "cpu_thermal_throttle_node_exporter.txt",
            {0: 5, 1: 0, 2: 0, 3: 9},
            {0: 30, 1: 30, 2: 6, 3: 6},
            30,
            [0, 1, 2, 3],
        ),
        ("cpu_thermal_throttle_procfs.txt", {0: 10084, 1: 523}, {0: 34818, 1: 34818}, 34818, [0, 1]),
    ],
)
def test_cpu_throttle_counters(
    name: str, core: dict[int, int], package: dict[int, int], worst: int, throttled: list[int]
) -> None:
    throttle = p.parse_cpu_throttle(fixture(name))
    assert throttle is not None
    assert (throttle.core_counts, throttle.package_counts) == (core, package)
    assert (throttle.worst, throttle.throttled_cpus) == (worst, throttled)


def test_cpu_throttle_errors_and_one_raised_counter() -> None:
    hot = fixture("cpu_thermal_throttle_4cpu.txt").replace(
        "cpu2/thermal_throttle/core_throttle_count:0", "cpu2/thermal_throttle/core_throttle_count:142"
    )
    hot_throttle = p.parse_cpu_throttle(hot)
    assert hot_throttle is not None and (hot_throttle.worst, hot_throttle.throttled_cpus) == (142, [2])
    assert p.parse_cpu_throttle("") is None  # AMD, ARM, VMs: no counters
    with pytest.raises(p.ParseError, match="no \\*_throttle_count lines"):
        p.parse_cpu_throttle("grep: /sys/devices/system/cpu/cpu0/thermal_throttle: Permission denied\n")


def test_numactl_memory_only_hbm_nodes() -> None:
    # Aurora (Sapphire Rapids with HBM in flat mode): nodes 2 and 3 are 64 GiB of HBM without CPUs.
    info = p.parse_numactl_hardware(fixture("numactl_aurora_hbm.txt"))
    assert info.count == 4
    assert [len(n.cpus) for n in info.nodes] == [104, 104, 0, 0]
    assert info.nodes[2].size_mb == 65536


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


@pytest.mark.parametrize(
    ("name", "model", "driver", "memory_mib"),
    [
        # nvidia_gpu_exporter's captures: a 200-column query with a header naming each column and its unit,
        # the playbook's four among them; dozens of [N/A] cells.
        ("nvidia_smi_csv_h200_590_header.csv", "NVIDIA H200", "590.48.01", 143771),
        ("nvidia_smi_csv_l40s_595_header.csv", "NVIDIA L40S", "595.80", 46068),
    ],
)
def test_nvidia_smi_csv_columns_are_read_by_their_header(
    name: str, model: str, driver: str, memory_mib: int
) -> None:
    inv = p.parse_nvidia_smi_csv(fixture(name))
    assert inv.gpus == [p.Gpu(0, model, driver, memory_mib)] and not inv.errors
    # The same output as `--format=csv,nounits` prints it (" MiB" dropped from the value, the header keeps
    # the unit): the memory still reads in MiB.
    header, row = fixture(name).splitlines()
    assert p.parse_nvidia_smi_csv(f"{header}\n{row.replace(' MiB', '')}\n").gpus[0].memory_mib == memory_mib


def test_nvidia_smi_csv_header_without_the_needed_columns() -> None:
    with pytest.raises(p.ParseError, match=r"the CSV header has no 'driver_version', 'memory\.total' column"):
        p.parse_nvidia_smi_csv("index, name\n0, NVIDIA H200\n")


def test_nvidia_smi_failed_gpu_is_reported_not_dropped_silently() -> None:
    inv = p.parse_nvidia_smi_csv(fixture("nvidia_smi_failed_gpu.csv"))
    assert [g.index for g in inv.gpus] == [0, 1, 3]
    assert inv.errors == ["Unable to determine the device handle for GPU0000:4C:00.0: Unknown Error"]
    broken = p.parse_nvidia_smi_csv("0, NVIDIA H100, [Unknown Error], 81559 MiB\n")
    assert broken.errors == ["GPU 0: [Unknown Error]"]


def test_nvidia_smi_without_driver() -> None:
    with pytest.raises(p.ParseError, match="couldn't communicate with the NVIDIA driver"):
        p.parse_nvidia_smi_csv(fixture("nvidia_smi_no_driver.txt"))


def test_nvidia_smi_default_table_is_one_clear_error() -> None:
    for name, version, rows in (
        ("nvidia_smi_default_table_b200_cut.txt", "610.43.02", 2),
        ("nvidia_smi_default_table_titan_xp.txt", "450.57", 1),
    ):
        with pytest.raises(p.ParseError) as info:
            p.parse_nvidia_smi_csv(fixture(name))
        assert info.value.reason.startswith(
            f"got nvidia-smi's default table (version {version}, {rows} GPU row(s))"
        )
        assert p.NVIDIA_SMI_CSV_COMMAND in info.value.reason


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


def test_all_reduce_perf_complete_run_names_ranks_and_hosts() -> None:
    result = p.parse_all_reduce_perf(fixture("all_reduce_perf_8xh200_azure.txt"))
    assert result.complete and result.avg_busbw_gbs == pytest.approx(480.11)
    assert (result.ranks, result.hosts, result.gpus) == (8, ("vm",), 8)
    assert result.largest is not None and result.largest.oop_busbw == pytest.approx(479.97)


def test_all_reduce_perf_cut_before_the_footer_is_incomplete() -> None:
    # The same run cut after its last row: the rows are there, the verdict lines are not.
    result = p.parse_all_reduce_perf(fixture("all_reduce_perf_8xh200_cut.txt"))
    assert len(result.rows) == 1 and not result.complete
    assert result.avg_busbw_gbs is None and result.out_of_bounds is None
    ok = p.parse_all_reduce_perf(fixture("all_reduce_perf_4gpu_ok.txt"))
    cut = "\n".join(fixture("all_reduce_perf_4gpu_ok.txt").splitlines()[:20])
    assert ok.complete and not p.parse_all_reduce_perf(cut).complete


def test_all_reduce_perf_cut_in_its_header() -> None:
    # 16 ranks on two H100 nodes (PCI domains 0002/0003), the copy ending inside rank 12's line.
    result = p.parse_all_reduce_perf(fixture("all_reduce_perf_16xh100_header_cut.txt"))
    assert (result.ranks, result.hosts) == (13, ("h100-2", "h100-4"))
    assert not result.rows and not result.errors and not result.complete


def test_all_reduce_perf_failure_after_five_sizes_on_1024_ranks() -> None:
    # 1024 ranks on 128 H100 nodes; its poster kept the first 100 rank lines. Every rank printed its
    # failure after the 16 GiB row, then mpirun its own message.
    result = p.parse_all_reduce_perf(fixture("all_reduce_perf_1024rank_cuda_error.txt"))
    assert (len(result.rows), result.complete, result.gpus, result.ranks, len(result.hosts)) == (
        5,
        False,
        1,
        100,
        13,
    )
    assert result.largest is not None and result.largest.size_bytes == 16 * 2**30
    assert result.peak_busbw_gbs == pytest.approx(367.44)
    assert result.reasons[0] == (
        "HCA-128: Test NCCL failure common.cu:1204 "
        "'unhandled cuda error (run with NCCL_DEBUG=INFO for details) / '"
    )
    assert len(result.reasons) == 77 and "Exit code:    3" in result.errors


def test_all_reduce_perf_nccl_1_failure_after_its_header() -> None:
    # An NCCL 1.0 build: the settings line has no "#", the rank lines no Group/Pid.
    result = p.parse_all_reduce_perf(fixture("all_reduce_perf_nccl1_header_failure.txt"))
    assert (result.gpus, result.ranks, result.hosts, result.rows) == (8, 8, ("node03",), [])
    assert result.errors == result.reasons == ["NCCL failure all_reduce.cu:95 'unhandled cuda error'"]


def test_all_reduce_perf_complete_with_its_small_sizes_cut_out() -> None:
    # 8 x B300, NCCL 2.28: a "NCCL version" line inside the header, the small sizes cut by the author, and the
    # closing "# Collective test concluded" line.
    result = p.parse_all_reduce_perf(fixture("all_reduce_perf_8xb300_small_sizes_cut.txt"))
    assert (result.complete, result.avg_busbw_gbs, result.gpus, len(result.rows)) == (True, 440.608, 8, 1)
    assert result.largest is not None and result.largest.oop_busbw == pytest.approx(834.84)
    assert result.out_of_bounds_ok is True and result.errors == ["NCCL version 2.28.9+cuda13.1"]


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
    p.parse_lscpu_parsable,
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
    p.parse_gloo_all_to_all,
    p.parse_cpu_throttle,
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
    if parser is p.parse_cpu_throttle and name == "empty.txt":
        assert p.parse_cpu_throttle(text) is None  # no counters on this kernel: a SKIP, not an error
        return
    with pytest.raises(p.ParseError) as info:
        parser(text)
    assert info.value.tool and info.value.reason


@pytest.mark.parametrize("parser", ALL_PARSERS, ids=lambda f: f.__name__)
@given(text=st.text(max_size=300))
def test_parsers_never_crash_on_arbitrary_text(parser: Callable[[str], Any], text: str) -> None:
    with contextlib.suppress(p.ParseError):
        parser(text)
