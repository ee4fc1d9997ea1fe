"""`nvidia-smi -q -x` on real outputs of four drivers (510 to 535), and the GPU health verdicts on them."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tooling.verify import gpu_health
from tooling.verify.nvidia_xml import parse_nvidia_smi_xml
from tooling.verify.parsers import ParseError

FIXTURES = Path(__file__).parent / "fixtures" / "verify"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def test_a100_with_mig_and_the_old_throttle_block() -> None:
    report = parse_nvidia_smi_xml(fixture("nvidia_smi_q_x_a100_mig.xml"))
    assert (report.driver, report.cuda) == ("510.47.03", "11.6")
    (gpu,) = report.gpus
    assert (gpu.name, gpu.memory_mib, gpu.bus_id) == ("NVIDIA A100-SXM4-40GB", 40960, "00000000:00:04.0")
    assert (gpu.persistence, gpu.mig) == ("Disabled", "Enabled")
    # The MIG slices carry their own memory blocks: the board's total is the GPU's direct child.
    assert report.inventory().gpus[0].memory_mib == 40960
    # Volatile counters are N/A in MIG mode; the lifetime ones are read per memory kind.
    assert (gpu.ecc_volatile_uncorrected, gpu.ecc_aggregate_uncorrected, gpu.ecc_aggregate_corrected) == (
        None,
        0,
        0,
    )
    assert (gpu.retired_pages, gpu.remap_pending, gpu.remap_failure) == (None, None, None)
    # A "Not Active" wrapped onto the next line inside its tag is still not active.
    assert gpu.clock_reasons == ()
    assert (gpu.pcie_gen, gpu.pcie_width) == ((4, 4), (16, 16))


def test_driver_535_event_reasons_and_row_remapping() -> None:
    report = parse_nvidia_smi_xml(fixture("nvidia_smi_q_x_rtx4090_driver535.xml"))
    assert (report.driver, report.cuda) == ("535.86.05", "12.2")
    (gpu,) = report.gpus
    assert gpu.clock_reasons == ("gpu_idle",)  # read from <clocks_event_reasons>
    assert (gpu.remap_pending, gpu.remap_failure) == (False, False)
    assert (gpu.pcie_gen, gpu.pcie_width) == ((1, 3), (16, 16))
    assert gpu.persistence == "Enabled" and gpu.mig is None


def test_pascal_bit_class_ecc_and_retired_pages() -> None:
    (gpu,) = parse_nvidia_smi_xml(fixture("nvidia_smi_q_x_tesla_p100.xml")).gpus
    assert (gpu.ecc_volatile_uncorrected, gpu.ecc_aggregate_uncorrected, gpu.ecc_aggregate_corrected) == (
        0,
        0,
        3,
    )
    assert (gpu.retired_pages, gpu.retirement_pending) == (0, False)


def test_a_gpu_counted_but_not_described_is_an_inventory_error() -> None:
    report = parse_nvidia_smi_xml(fixture("nvidia_smi_q_x_a100_mig.xml"))
    assert report.attached == 1 and report.inventory().errors == []
    # The same document with the driver's count raised: one GPU it could not describe.
    text = fixture("nvidia_smi_q_x_a100_mig.xml").replace("<attached_gpus>1<", "<attached_gpus>2<")
    assert parse_nvidia_smi_xml(text).inventory().errors == [
        "nvidia-smi counts 2 attached GPUs but describes 1"
    ]


@pytest.mark.parametrize(
    ("name", "driver", "cuda", "gpu", "persistence", "pcie", "reasons"),
    [
        # DTD v12, 535 driver: an A100 in MIG mode whose copy describes 1 of its 4 attached GPUs.
        (
            "nvidia_smi_q_x_a100_mig_cuda12.2_cut.xml",
            "535.54.03",
            "12.2",
            ("NVIDIA A100-SXM4-80GB", "00000000:01:00.0", 81920),
            "Disabled",
            ((4, 4), (16, 16)),
            (),
        ),
        # DTD v13, 595 drivers (CUDA 13.2): widths printed "16x", event-reason counters beside the reasons.
        (
            "nvidia_smi_q_x_rtx3080_cuda13.2.xml",
            "595.58.03",
            "13.2",
            ("NVIDIA GeForce RTX 3080", "00000000:0C:00.0", 10240),
            "Disabled",
            ((4, 4), (16, 16)),
            (),
        ),
        (
            "nvidia_smi_q_x_rtx4000_ada_cuda13.2.xml",
            "595.84",
            "13.2",
            ("NVIDIA RTX 4000 SFF Ada Generation", "00000000:06:00.0", 20475),
            "Enabled",
            ((1, 4), (16, 16)),
            ("gpu_idle",),
        ),
    ],
)
def test_cuda_12_and_13_drivers(
    name: str,
    driver: str,
    cuda: str,
    gpu: tuple[str, str, int],
    persistence: str,
    pcie: tuple[tuple[int, int], tuple[int, int]],
    reasons: tuple[str, ...],
) -> None:
    report = parse_nvidia_smi_xml(fixture(name))
    assert (report.driver, report.cuda, len(report.gpus)) == (driver, cuda, 1)
    (detail,) = report.gpus
    assert (detail.name, detail.bus_id, detail.memory_mib) == gpu
    assert (detail.persistence, (detail.pcie_gen, detail.pcie_width), detail.clock_reasons) == (
        persistence,
        pcie,
        reasons,
    )


def test_cut_copy_counts_more_gpus_than_it_describes() -> None:
    report = parse_nvidia_smi_xml(fixture("nvidia_smi_q_x_a100_mig_cuda12.2_cut.xml"))
    assert report.inventory().errors == ["nvidia-smi counts 4 attached GPUs but describes 1"]
    (gpu,) = report.gpus
    # Ampere's per-memory-kind ECC counters with MIG on (535 reports them, 510 said N/A); no row remapper.
    assert (gpu.mig, gpu.ecc_volatile_uncorrected, gpu.ecc_aggregate_corrected) == ("Enabled", 0, 0)
    assert (gpu.retired_pages, gpu.remap_pending) == (None, None)


def test_ecc_off_with_the_v13_repair_fields() -> None:
    # ECC disabled: every counter N/A, the new channel/TPC repair and unrepairable-memory fields beside them;
    # the row remapper still answers.
    report = parse_nvidia_smi_xml(fixture("nvidia_smi_q_x_rtx4000_ada_cuda13.2.xml"))
    (gpu,) = report.gpus
    assert (gpu.ecc_volatile_uncorrected, gpu.ecc_aggregate_uncorrected, gpu.ecc_aggregate_corrected) == (
        None,
        None,
        None,
    )
    assert (gpu.remap_pending, gpu.remap_failure) == (False, False)
    assert gpu_health.memory_errors(report)[1:3] == ("WARN", "no ECC counters")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "no output"),
        (
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
            "NVIDIA-SMI has failed",
        ),
        (
            "<nvidia_smi_log><attached_gpus>0</attached_gpus></nvidia_smi_log>",
            "no <gpu> element (attached_gpus: 0)",
        ),
        ("<html/>", "expected an <nvidia_smi_log> document, got <html>"),
        ("<nvidia_smi_log>", "not XML"),
        ('<!DOCTYPE x [<!ENTITY a "b">]><nvidia_smi_log/>', "the XML declares entities"),
    ],
)
def test_unreadable_outputs_are_clear_errors(text: str, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_nvidia_smi_xml(text)
    assert info.value.tool == "nvidia-smi -q -x" and info.value.reason.startswith(reason)


def test_default_table_is_recognised() -> None:
    with pytest.raises(
        ParseError, match=r"default table \(version 610\.43\.02, 2 GPU row\(s\)\), not the XML"
    ):
        parse_nvidia_smi_xml(fixture("nvidia_smi_default_table_b200_cut.txt"))


@given(text=st.text(max_size=300))
def test_never_crashes_on_arbitrary_text(text: str) -> None:
    with contextlib.suppress(ParseError):
        parse_nvidia_smi_xml(text)


# --- verdicts ------------------------------------------------------------------------------------------


def test_memory_errors_pass_warn_fail() -> None:
    p100 = fixture("nvidia_smi_q_x_tesla_p100.xml")
    check, status, measured, expected, reason = gpu_health.memory_errors(parse_nvidia_smi_xml(p100))
    assert (check, status) == ("gpu.memory_errors", "PASS")
    assert (
        measured == "0 uncorrected since boot, 0 uncorrected lifetime, 3 corrected lifetime, 0 retired pages"
    )
    assert expected == "0 uncorrected ECC errors, no pending or failed repair"
    pending = p100.replace("<pending_retirement>No<", "<pending_retirement>Yes<")
    _, status, _, _, reason = gpu_health.memory_errors(parse_nvidia_smi_xml(pending))
    assert (status, reason) == ("WARN", "GPU 0 (00000000:00:04.0): page retirement pending (reset the GPU)")
    # A double-bit error since boot: the fixture's volatile double_bit total raised to 2.
    volatile = p100.split("<volatile>", 1)
    dbe = (
        volatile[0]
        + "<volatile>"
        + volatile[1]
        .replace(
            "<double_bit>\n\t\t\t\t\t<device_memory>0</device_memory>",
            "<double_bit>\n\t\t\t\t\t<device_memory>2</device_memory>",
            1,
        )
        .replace("<total>0</total>\n\t\t\t\t</double_bit>", "<total>2</total>\n\t\t\t\t</double_bit>", 1)
    )
    _, status, _, _, reason = gpu_health.memory_errors(parse_nvidia_smi_xml(dbe))
    assert status == "FAIL" and reason == "GPU 0 (00000000:00:04.0): 2 uncorrected ECC errors since boot"
    failed = fixture("nvidia_smi_q_x_rtx4090_driver535.xml").replace(
        "<remapped_row_failure>No<", "<remapped_row_failure>Yes<"
    )
    _, status, _, _, reason = gpu_health.memory_errors(parse_nvidia_smi_xml(failed))
    assert status == "FAIL" and "row remapping failed" in reason


def test_consumer_board_without_ecc_warns() -> None:
    _, status, measured, _, reason = gpu_health.memory_errors(
        parse_nvidia_smi_xml(fixture("nvidia_smi_q_x_rtx3060_laptop.xml"))
    )
    assert (status, measured) == ("WARN", "no ECC counters")
    assert reason == "no GPU reports ECC counters (ECC off or not supported)"


def test_pcie_link_downgrades_warn() -> None:
    _, status, measured, _, reason = gpu_health.pcie_links(
        parse_nvidia_smi_xml(fixture("nvidia_smi_q_x_a100_mig.xml"))
    )
    assert (status, measured) == ("PASS", "1 x gen 4 x16")
    _, status, measured, _, reason = gpu_health.pcie_links(
        parse_nvidia_smi_xml(fixture("nvidia_smi_q_x_rtx3060_laptop.xml"))
    )
    assert (status, measured) == ("WARN", "0 of 1 at maximum")
    assert reason == "GPU 0 (00000000:01:00.0): gen 1 of 4, x8 of x16"
    # Generation only (an idle 4090): the reason says to look again under load.
    _, status, _, _, reason = gpu_health.pcie_links(
        parse_nvidia_smi_xml(fixture("nvidia_smi_q_x_rtx4090_driver535.xml"))
    )
    assert status == "WARN" and reason.startswith(
        "GPU 0 (00000000:84:00.0): gen 1 of 3 (an idle GPU may lower"
    )


def test_thermal_events_count_gpus_held_by_heat() -> None:
    text = fixture("nvidia_smi_q_x_rtx4090_driver535.xml")
    assert gpu_health.thermal_events(parse_nvidia_smi_xml(text)) == (0, "")
    hot = text.replace(
        "<clocks_event_reason_sw_thermal_slowdown>Not Active<",
        "<clocks_event_reason_sw_thermal_slowdown>Active<",
    ).replace("<clocks_event_reason_sw_power_cap>Not Active<", "<clocks_event_reason_sw_power_cap>Active<")
    count, details = gpu_health.thermal_events(parse_nvidia_smi_xml(hot))
    assert count == 1
    assert details == (
        "GPU 0 (00000000:84:00.0): sw_thermal_slowdown; GPU 0 (00000000:84:00.0) power-limited: sw_power_cap"
    )
    old = fixture("nvidia_smi_q_x_a100_mig.xml").replace(
        "<clocks_throttle_reason_hw_slowdown>Not Active<", "<clocks_throttle_reason_hw_slowdown>Active<"
    )
    assert gpu_health.thermal_events(parse_nvidia_smi_xml(old))[0] == 1


def test_modes() -> None:
    _, status, measured, _, reason = gpu_health.modes(
        parse_nvidia_smi_xml(fixture("nvidia_smi_q_x_a100_mig.xml"))
    )
    assert (status, measured) == ("WARN", "persistence Disabled, MIG Enabled")
    assert "persistence mode off on GPU 0 (00000000:00:04.0)" in reason and "MIG enabled on GPU 0" in reason
    _, status, measured, _, _ = gpu_health.modes(
        parse_nvidia_smi_xml(fixture("nvidia_smi_q_x_rtx4090_driver535.xml"))
    )
    assert (status, measured) == ("PASS", "persistence Enabled, MIG N/A")
