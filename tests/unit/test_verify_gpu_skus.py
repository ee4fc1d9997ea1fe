"""Per GPU model expectations: the table, the choice by nvidia-smi's name, site overrides, the fallback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ddp.config_errors import ConfigError
from tests.unit.test_verify_judge import PRODUCTION, cuda_node, fixture, ok, rows_for
from tooling.console import ToolingError
from tooling.verify import gpu_skus
from tooling.verify.judge import judge_all
from tooling.verify.profiles import PROFILES_DIR, load_profile
from tooling.verify.run import pick_profile

A100_XML = "nvidia_smi_q_x_a100_mig.xml"


def _site_profile(tmp_path: Path, extra: str) -> Path:
    """The production profile plus a site's own lines, as a site would write its profile file."""
    path = tmp_path / "site.yml"
    path.write_text((PROFILES_DIR / "production.yml").read_text() + extra)
    return path


def _gpu_rows(**commands: dict[str, Any]) -> dict[str, Any]:
    return rows_for(judge_all(PRODUCTION, ["gpu1"], {"gpu1": cuda_node(**commands)}, None, {}), "gpu1")


# Names as nvidia-smi prints them in the public outputs of the fixtures (and the issues the table cites).
@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("NVIDIA H100 80GB HBM3", "h100_sxm5_80gb"),  # nvidia_smi_4gpu.csv, all_reduce_perf_4gpu_ok.txt
        ("NVIDIA A100-SXM4-40GB", "a100_sxm4_40gb"),  # nvidia_smi_q_x_a100_mig.xml
        ("NVIDIA A100-SXM4-80GB", "a100_sxm4_80gb"),  # nccl-tests issue 149
        ("NVIDIA A100-SXM-80GB", "a100_sxm4_80gb"),  # nccl-tests issue 100
        ("NVIDIA A100 80GB PCIe", "a100_pcie_80gb"),  # nccl issue 841
        ("NVIDIA H200", "h200_sxm_141gb"),  # all_reduce_perf_8xh200_azure.txt
        ("NVIDIA B200", "b200_180gb"),  # nvidia_smi_default_table_b200_cut.txt
        ("nvidia h100 80gb hbm3 ", "h100_sxm5_80gb"),  # case and stray spaces do not matter
    ],
)
def test_the_gpu_name_chooses_the_model(name: str, key: str) -> None:
    choice = gpu_skus.choose(PRODUCTION, [name, name])
    assert choice.key == key and choice.sku is not None and not choice.site_override


def test_a_longer_name_is_not_taken_for_a_shorter_one() -> None:
    # Whole-name matching: "NVIDIA H200 NVL" is the PCIe card, not the SXM part called "NVIDIA H200".
    assert gpu_skus.choose(PRODUCTION, ["NVIDIA H200 NVL"]).key == "h200_nvl_141gb"
    assert gpu_skus.choose(PRODUCTION, ["NVIDIA H100 80GB HBM3 (engineering sample)"]).key is None


def test_unknown_and_mixed_models_fall_back_to_the_profile() -> None:
    unknown = gpu_skus.choose(PRODUCTION, ["NVIDIA GeForce RTX 4090"])
    band, origin = unknown.nccl_band(PRODUCTION)
    assert band == PRODUCTION.nccl_busbw_gbs
    assert origin == "generic profile threshold: 'NVIDIA GeForce RTX 4090' is not in gpu_skus.yml"
    mixed = gpu_skus.choose(PRODUCTION, ["NVIDIA H200", "NVIDIA H100 80GB HBM3"])
    assert mixed.sku is None and "mixed GPU models" in mixed.why_generic
    # A known model without an NVLink figure (PCIe cards) uses the profile's threshold too, and says why.
    band, origin = gpu_skus.choose(PRODUCTION, ["NVIDIA A100 80GB PCIe"]).nccl_band(PRODUCTION)
    assert band == PRODUCTION.nccl_busbw_gbs and "no NVLink figure for A100 PCIe 80GB" in origin


def test_every_table_entry_has_a_memory_size_and_is_reached_by_its_own_name() -> None:
    table = gpu_skus.load_sku_table()
    assert {"a100_sxm4_40gb", "h100_sxm5_80gb", "h200_sxm_141gb", "b200_180gb"} <= set(table)
    for key, sku in table.items():
        assert sku.gpu_memory_gib is not None, key
        # The name each entry's first pattern spells: no entry earlier in the file may take it.
        sample = sku.match[0].replace("?", "")
        assert gpu_skus.choose(PRODUCTION, [sample]).key == key, sample


def test_bad_table_entries_name_the_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "skus.yml"
    bad.write_text("skus:\n  x:\n    label: X\n    match: ['NVIDIA (']\n    pcie_gen: 9\n")
    with pytest.raises(ConfigError) as info:
        gpu_skus.load_sku_table(bad)
    problems = "\n".join(info.value.problems)
    assert info.value.source == str(bad)
    assert "skus.x.match" in problems and "not a regular expression" in problems
    assert "skus.x.pcie_gen" in problems


# --- judged rows ------------------------------------------------------------------------------------------


def test_h100_node_meets_its_model() -> None:
    by = _gpu_rows()
    row = by["gpu.sku"]
    assert row.status == "PASS"
    assert row.measured == "NVIDIA H100 80GB HBM3: 79.6 GiB"
    assert row.expected == ">= 77.6 GiB per GPU, PCIe gen 5 x16"
    # The CSV has no link state: said, not guessed.
    assert "PCIe link not checked" in row.reason and "H100 SXM5 80GB (gpu_skus.yml)" in row.reason
    assert by["nccl.busbw"].expected == ">= 200 GB/s (target >= 300)"


def test_a_gpu_short_of_memory_fails_naming_it() -> None:
    # nvidia_smi_4gpu.csv with GPU 2 reporting the 40 GiB of a smaller board.
    csv = fixture("nvidia_smi_4gpu.csv").replace(
        "2, NVIDIA H100 80GB HBM3, 550.54.15, 81559", "2, NVIDIA H100 80GB HBM3, 550.54.15, 40960"
    )
    row = _gpu_rows(nvidia_smi=ok(csv))["gpu.sku"]
    assert row.status == "FAIL"
    assert "GPU 2: 40.0 GiB, below the minimum 77.6" in row.reason


def test_pcie_link_below_the_model_warns_and_mig_memory_is_not_judged() -> None:
    xml = fixture(A100_XML)
    row = _gpu_rows(nvidia_smi_xml=ok(xml))["gpu.sku"]
    # The real A100 output: MIG on (its memory is one instance's), gen 4 x16 as an A100 is built.
    assert row.status == "PASS"
    assert "memory not checked on GPU 0 (00000000:00:04.0) (MIG enabled)" in row.reason
    slower = xml.replace("<max_link_gen>4</max_link_gen>", "<max_link_gen>3</max_link_gen>")
    row = _gpu_rows(nvidia_smi_xml=ok(slower))["gpu.sku"]
    assert row.status == "WARN"
    assert "link at most gen 3, the board is built for gen 4" in row.reason


def test_unknown_model_skips_the_model_row_and_uses_generic_thresholds() -> None:
    xml = fixture("nvidia_smi_q_x_rtx4090_driver535.xml")
    by = _gpu_rows(nvidia_smi_xml=ok(xml))
    assert by["gpu.sku"].status == "SKIP"
    assert (
        "'NVIDIA GeForce RTX 4090' is not in gpu_skus.yml: generic profile thresholds apply"
        in by["gpu.sku"].reason
    )
    assert by["nccl.busbw"].expected == PRODUCTION.nccl_busbw_gbs.describe("GB/s")
    assert (
        "generic profile threshold: 'NVIDIA GeForce RTX 4090' is not in gpu_skus.yml"
        in by["nccl.busbw"].reason
    )


def test_mixed_models_warn() -> None:
    csv = fixture("nvidia_smi_4gpu.csv").replace("3, NVIDIA H100 80GB HBM3", "3, NVIDIA H200")
    row = _gpu_rows(nvidia_smi=ok(csv))["gpu.sku"]
    assert row.status == "WARN" and "mixed GPU models on one node" in row.reason


# --- a site's overrides ------------------------------------------------------------------------------------


def test_site_profile_overrides_only_what_it_writes(tmp_path: Path) -> None:
    site = load_profile(
        _site_profile(tmp_path, "gpu_skus:\n  h100_sxm5_80gb:\n    nccl_busbw_gbs: {min: 360}\n")
    )
    choice = gpu_skus.choose(site, ["NVIDIA H100 80GB HBM3"])
    assert choice.site_override and choice.sku is not None
    assert choice.sku.nccl_busbw_gbs is not None and choice.sku.nccl_busbw_gbs.min == 360
    assert choice.sku.gpu_memory_gib == gpu_skus.load_sku_table()["h100_sxm5_80gb"].gpu_memory_gib
    by = rows_for(judge_all(site, ["gpu1"], {"gpu1": cuda_node()}, None, {}), "gpu1")
    # The recorded H100 run (353 GB/s) passes the table's band but not the site's.
    assert by["nccl.busbw"].status == "FAIL"
    assert "H100 SXM5 80GB (the site profile's gpu_skus)" in by["nccl.busbw"].reason


def test_unknown_model_key_in_a_site_profile_is_a_usage_error(tmp_path: Path) -> None:
    path = _site_profile(tmp_path, "gpu_skus:\n  h100_sxm:\n    nccl_busbw_gbs: {min: 360}\n")
    with pytest.raises(ToolingError) as info:
        pick_profile(str(path), sandbox=False)
    assert info.value.exit_code == 2
    assert f"{path}: gpu_skus.h100_sxm: not a GPU model of gpu_skus.yml" in str(info.value)
    assert "h100_sxm5_80gb" in str(info.value)  # the known keys are listed


def test_unknown_field_in_a_site_override_names_the_key(tmp_path: Path) -> None:
    path = _site_profile(tmp_path, "gpu_skus:\n  h100_sxm5_80gb:\n    nvlink_gbs: 900\n")
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    assert info.value.source == str(path)
    assert any("gpu_skus.h100_sxm5_80gb.nvlink_gbs" in p for p in info.value.problems)


# --- the fabric port rate of the model's reference system ---------------------------------------------------


def test_an_a100_node_is_held_to_its_hdr_ports_not_the_profiles_ndr() -> None:
    # The real A100 XML and the real ibstat of an A100 machine (nccl-tests #128: one 200 Gb/s port, one Down).
    by = _gpu_rows(
        nvidia_smi_xml=ok(fixture(A100_XML)), ibstat=ok(fixture("ibstat_a100_200g_port_down_cut.txt"))
    )
    row = by["ib.ports"]
    assert row.expected == ">= 1 ports, each Active/LinkUp >= 200 Gb/s InfiniBand"
    assert row.status == "FAIL" and "mlx5_0" not in row.reason.split(" (rate of")[0]
    assert "mlx5_1 port 1: state Down" in row.reason
    assert row.reason.endswith("(rate of A100 SXM4 40GB (gpu_skus.yml))")


def test_an_h100_node_passes_on_its_ndr_ports() -> None:
    row = _gpu_rows()["ib.ports"]
    assert row.status == "PASS" and ">= 400 Gb/s InfiniBand" in row.expected
    assert row.reason == "every port up at the fabric's rate (rate of H100 SXM5 80GB (gpu_skus.yml))"


def test_a_model_without_a_rate_and_an_unknown_model_use_the_profiles_rate(tmp_path: Path) -> None:
    pcie = fixture("nvidia_smi_4gpu.csv").replace("NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe")
    assert gpu_skus.choose(PRODUCTION, ["NVIDIA H100 PCIe"]).ib_rate(123.0) == (
        123.0,
        "the profile's rate: gpu_skus.yml gives no port rate for H100 PCIe 80GB",
    )
    row = _gpu_rows(nvidia_smi=ok(pcie))["ib.ports"]
    assert row.status == "PASS", row.reason
    assert row.reason == (
        "every port up at the fabric's rate "
        "(the profile's rate: gpu_skus.yml gives no port rate for H100 PCIe 80GB)"
    )
    rtx = _gpu_rows(nvidia_smi_xml=ok(fixture("nvidia_smi_q_x_rtx4090_driver535.xml")))["ib.ports"]
    assert ">= 400 Gb/s" in rtx.expected and "rate of" not in rtx.reason


def test_a_site_sets_its_own_rate_for_a_model(tmp_path: Path) -> None:
    site = load_profile(_site_profile(tmp_path, "gpu_skus:\n  a100_sxm4_40gb:\n    ib_port_rate_gbps: 100\n"))
    node = cuda_node(nvidia_smi_xml=ok(fixture(A100_XML)))
    row = rows_for(judge_all(site, ["gpu1"], {"gpu1": node}, None, {}), "gpu1")["ib.ports"]
    assert ">= 100 Gb/s" in row.expected
    assert row.reason.endswith("(rate of A100 SXM4 40GB (the site profile's gpu_skus))")
