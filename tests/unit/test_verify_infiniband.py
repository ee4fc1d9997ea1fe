"""InfiniBand/RoCE ports: the three sources parsed from real outputs, and the ib.ports verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_verify_judge import PRODUCTION, SANDBOX, fixture, ok
from tooling.verify import infiniband as ib
from tooling.verify.judge import IB_SOURCES, CheckResult, judge_all
from tooling.verify.parsers import ParseError
from tooling.verify.profiles import Band, InfinibandExpectation, Profile

NOT_FOUND = {"rc": 2, "stdout": "", "stderr": "", "msg": "Error executing command.", "cmd": ["ibstat"]}


def ib_row(profile: Any = PRODUCTION, **commands: dict[str, Any]) -> CheckResult:
    """The ib.ports row of a node whose only outputs are the given port sources."""
    raw = {"n1": {"accelerator": "cpu", "commands": commands}}
    rows = judge_all(profile, ["n1"], raw, None, {})
    return next(r for r in rows if r.check == "ib.ports")


def fabric(ports_min: int, rate_gbps: float, link_layer: str, devices: list[str] | None = None) -> Profile:
    """The production profile on another fabric (only `devices`' ports, when given)."""
    want = InfinibandExpectation.model_validate(
        {
            "ports_per_node": {"min": ports_min},
            "port_rate_gbps": rate_gbps,
            "link_layer": link_layer,
            "devices": devices,
        }
    )
    return PRODUCTION.model_copy(update={"infiniband": want})


def triples(
    ports: list[ib.IbPort],
) -> list[tuple[str, int, str | None, str | None, float | None, str | None]]:
    return [(p.device, p.port, p.state, p.phys_state, p.rate_gbps, p.link_layer) for p in ports]


# --- parsers ---------------------------------------------------------------------------------------------


def test_ibstat_ndr_ports() -> None:
    assert triples(ib.parse_ibstat(fixture("ibstat_h20_400g_cut.txt"))) == [
        ("mlx5_0", 1, "Active", "LinkUp", 400.0, "InfiniBand"),
        ("mlx5_1", 1, "Active", "LinkUp", 400.0, "InfiniBand"),
    ]


def test_ibstat_with_ibwarn_lines_tabs_and_a_cut_port() -> None:
    assert triples(ib.parse_ibstat(fixture("ibstat_mlx4_ibwarn_cut.txt"))) == [
        ("mlx4_0", 1, "Down", "Disabled", 10.0, "InfiniBand"),
        ("mlx4_0", 2, "Active", "LinkUp", 56.0, None),  # the copy stops at "Base lid:"
    ]


def test_ibstat_roce_ports_and_a_cut_disabled_one() -> None:
    ports = ib.parse_ibstat(fixture("ibstat_roce_200g_disabled_cut.txt"))
    assert [p.link_layer for p in ports] == ["Ethernet", "Ethernet", None]
    assert triples(ports)[2] == ("mlx5_10", 1, "Down", "Disabled", None, None)


def test_ibstat_polling_port_with_redacted_guids() -> None:
    assert triples(ib.parse_ibstat(fixture("ibstat_polling_redacted.txt"))) == [
        ("mlx5_10", 1, "Down", "Polling", 10.0, "InfiniBand")
    ]


def test_ibv_devinfo_has_state_and_link_layer_but_no_rate() -> None:
    assert triples(ib.parse_ibv_devinfo(fixture("ibv_devinfo_h100_port_down_cut.txt"))) == [
        ("mlx5_0", 1, "Down", None, None, "InfiniBand")
    ]
    assert triples(ib.parse_ibv_devinfo(fixture("ibv_devinfo_roce_port_down_cut.txt"))) == [
        ("mlx5_12", 1, "Down", None, None, "Ethernet")
    ]


@pytest.mark.parametrize(
    ("name", "ports"),
    [
        ("ibv_devinfo_v_mlx4_port2_polling.txt", [("mlx4_1", 2, "Down", "Polling", 10.0, "InfiniBand")]),
        # -vv on two ConnectX-6: an HDR port (4X x 50 Gbps) up, the other disabled with "invalid speed (0)".
        (
            "ibv_devinfo_vv_cx6_hdr_port_disabled.txt",
            [
                ("mlx5_0", 1, "Active", "LinkUp", 200.0, "InfiniBand"),
                ("mlx5_1", 1, "Down", "Disabled", None, "InfiniBand"),
            ],
        ),
    ],
)
def test_ibv_devinfo_verbose_gives_the_rate_and_physical_state(name: str, ports: list[Any]) -> None:
    """-v on real cards: the device's capability lists (continued on tab-indented lines, `key = value`, no
    colon at all) are skipped; the port's width x per-lane speed is its rate."""
    assert triples(ib.parse_ibv_devinfo(fixture(name))) == ports


def test_sys_ports_from_the_exporter_fixtures() -> None:
    assert triples(ib.parse_sys_ports(fixture("sys_infiniband_node_exporter.txt"))) == [
        ("i40iw0", 1, "Active", "LinkUp", 10.0, "InfiniBand"),  # "10 Gb/sec (4X)": no speed name
        ("mlx4_0", 1, "Active", "LinkUp", 40.0, "InfiniBand"),
        ("mlx4_0", 2, "Active", "LinkUp", 40.0, "InfiniBand"),
    ]
    procfs = ib.parse_sys_ports(fixture("sys_infiniband_procfs.txt"))
    assert triples(procfs)[0] == ("hfi1_0", 1, "Active", "LinkUp", 100.0, "InfiniBand")
    # This fixture's mlx5_0 has "4: ACTIVE" in phys_state: an unknown physical state is kept as printed.
    assert triples(procfs)[3] == ("mlx5_0", 1, "Active", "ACTIVE", 25.0, "InfiniBand")


def test_sys_vpi_card_with_an_ib_and_an_ethernet_port() -> None:
    assert triples(ib.parse_sys_ports(fixture("sys_infiniband_mlnx_ofed_vpi.txt"))) == [
        ("mlx4_0", 1, "Initializing", None, None, "InfiniBand"),
        ("mlx4_0", 2, "Active", None, None, "Ethernet"),
    ]


def test_no_rdma_devices() -> None:
    assert ib.parse_sys_ports("") == []
    assert ib.parse_ibv_devinfo("No IB devices found\n") == []


@pytest.mark.parametrize(
    ("parse", "tool"),
    [
        (ib.parse_sys_ports, "/sys/class/infiniband"),
        (ib.parse_ibstat, "ibstat"),
        (ib.parse_ibv_devinfo, "ibv_devinfo"),
    ],
)
def test_garbage_is_a_parse_error_naming_the_tool(parse: Any, tool: str) -> None:
    with pytest.raises(ParseError) as err:
        parse(fixture("garbage.txt"))
    assert err.value.tool == tool
    assert fixture("garbage.txt").strip().splitlines()[0][:20] in err.value.reason


def test_empty_ibstat_and_ibv_devinfo_are_errors() -> None:
    for parse in (ib.parse_ibstat, ib.parse_ibv_devinfo):
        with pytest.raises(ParseError, match="no output"):
            parse(fixture("empty.txt"))


# --- verdict ---------------------------------------------------------------------------------------------


def test_ndr_node_passes_production() -> None:
    row = ib_row(ib_sysfs=ok(""), ibstat=ok(fixture("ibstat_h20_400g_cut.txt")), ibv_devinfo=NOT_FOUND)
    assert row.status == "PASS", row.reason
    assert row.measured.startswith("2 ports: mlx5_0/1 Active LinkUp 400 Gb/s InfiniBand")
    assert row.measured.endswith("(from ibstat)")
    assert row.expected == ">= 1 ports, each Active/LinkUp >= 400 Gb/s InfiniBand"


def test_sys_is_read_first() -> None:
    row = ib_row(
        ib_sysfs=ok(fixture("sys_infiniband_node_exporter.txt")),
        ibstat=ok(fixture("ibstat_h20_400g_cut.txt")),
    )
    assert row.measured.endswith("(from ib_sysfs)")


def test_hdr_port_and_a_disabled_port_fail_by_name() -> None:
    row = ib_row(ibstat=ok(fixture("ibstat_a100_200g_port_down_cut.txt")))
    assert row.status == "FAIL"
    assert "mlx5_0 port 1: rate 200 Gb/s below 400" in row.reason
    assert "mlx5_1 port 1: state Down" in row.reason
    assert "mlx5_1 port 1: physical state Disabled" in row.reason


def test_polling_port_fails() -> None:
    row = ib_row(ibstat=ok(fixture("ibstat_polling_redacted.txt")))
    assert row.status == "FAIL" and "mlx5_10 port 1: physical state Polling" in row.reason


def test_roce_ports_on_an_infiniband_profile_fail_on_link_layer() -> None:
    row = ib_row(ibstat=ok(fixture("ibstat_roce_200g_disabled_cut.txt")))
    assert row.status == "FAIL"
    assert "mlx5_0 port 1: link layer Ethernet, expected InfiniBand" in row.reason


def test_roce_profile_accepts_ethernet_ports_at_their_rate() -> None:
    roce = fabric(2, 200, "Ethernet")
    row = ib_row(roce, ibstat=ok(fixture("ibstat_roce_200g_disabled_cut.txt")))
    # The two 200G RoCE ports are fine; only the cut, disabled mlx5_10 is named.
    assert row.status == "FAIL"
    assert "mlx5_0" not in row.reason and "mlx5_1 " not in row.reason
    assert "mlx5_10 port 1: state Down" in row.reason


def test_ports_outside_the_fabrics_devices_are_listed_not_judged() -> None:
    # The same node as above, on a site whose fabric is mlx5_0 and mlx5_1 (one character after the
    # underscore): the disabled mlx5_10 is another network's port, shown but not judged.
    roce = fabric(2, 200, "Ethernet", ["mlx5_[0-9]"])
    row = ib_row(roce, ibstat=ok(fixture("ibstat_roce_200g_disabled_cut.txt")))
    assert row.status == "PASS", row.reason
    assert row.measured.startswith("2 ports: mlx5_0/1 ") and "mlx5_10" not in row.measured
    left_out = "not judged (not in infiniband.devices): 1 port: mlx5_10/1 Down Disabled ? Gb/s ?"
    assert row.reason == f"every port up at the fabric's rate; {left_out}"
    assert row.expected == ">= 2 ports of mlx5_[0-9], each Active/LinkUp >= 200 Gb/s Ethernet"


def test_a_vpi_cards_ports_are_chosen_by_device_and_port() -> None:
    # One ConnectX-3 with an InfiniBand port 1 and an Ethernet port 2: the fabric is port 1 only.
    only_ib = fabric(1, 40, "InfiniBand", ["mlx4_0/1"])
    row = ib_row(only_ib, ib_sysfs=ok(fixture("sys_infiniband_mlnx_ofed_vpi.txt")))
    assert row.status == "FAIL"
    assert "mlx4_0 port 1: state Initializing" in row.reason and "mlx4_0 port 2:" not in row.reason
    assert "not judged (not in infiniband.devices): 1 port: mlx4_0/2 Active" in row.reason
    # Unfiltered, the Ethernet port fails on its link layer too.
    every = ib_row(fabric(1, 40, "InfiniBand"), ib_sysfs=ok(fixture("sys_infiniband_mlnx_ofed_vpi.txt")))
    assert "mlx4_0 port 2: link layer Ethernet, expected InfiniBand" in every.reason


def test_devices_that_match_no_port_fail_naming_the_ports_found() -> None:
    row = ib_row(fabric(1, 400, "InfiniBand", ["mlx5_ib*"]), ibstat=ok(fixture("ibstat_h20_400g_cut.txt")))
    assert row.status == "FAIL" and row.measured == "0 ports of mlx5_ib* (from ibstat)"
    assert row.reason == (
        "no port matches infiniband.devices ['mlx5_ib*']; the node has mlx5_0 port 1, mlx5_1 port 1"
    )


def test_an_empty_device_list_is_refused() -> None:
    with pytest.raises(ValueError, match="devices"):
        fabric(1, 400, "InfiniBand", [])


def test_too_few_ports_fails_with_the_count() -> None:
    eight = fabric(8, 400, "InfiniBand")
    row = ib_row(eight, ibstat=ok(fixture("ibstat_h20_400g_cut.txt")))
    assert row.status == "FAIL" and row.reason == "2 ports: below the minimum 8"


def test_rate_unknown_from_ibv_devinfo_warns_but_a_down_port_fails() -> None:
    row = ib_row(
        ib_sysfs=ok(""), ibstat=NOT_FOUND, ibv_devinfo=ok(fixture("ibv_devinfo_h100_port_down_cut.txt"))
    )
    assert row.status == "FAIL"
    assert "mlx5_0 port 1: state Down" in row.reason and "mlx5_0 port 1: rate not reported" in row.reason
    assert row.measured.endswith("(from ibv_devinfo)")
    verbose = ib_row(
        ib_sysfs=ok(""), ibstat=NOT_FOUND, ibv_devinfo=ok(fixture("ibv_devinfo_v_mlx4_port2_polling.txt"))
    )
    assert verbose.status == "FAIL" and "mlx4_1 port 2: state Down" in verbose.reason
    assert "rate not reported" not in verbose.reason  # -v gives it: 10 Gb/s, far below the profile's
    hdr = ib_row(
        ib_sysfs=ok(""), ibstat=NOT_FOUND, ibv_devinfo=ok(fixture("ibv_devinfo_vv_cx6_hdr_port_disabled.txt"))
    )
    assert hdr.status == "FAIL" and hdr.reason.startswith(
        "mlx5_0 port 1: rate 200 Gb/s below 400; mlx5_1 port 1: state Down; mlx5_1 port 1: physical state "
        "Disabled; mlx5_1 port 1: rate not reported"
    )


def test_node_without_hcas_fails_where_the_profile_expects_some() -> None:
    row = ib_row(ib_sysfs=ok(""), ibstat=NOT_FOUND, ibv_devinfo=ok("No IB devices found\n"))
    assert row.status == "FAIL" and row.measured == "0 ports"
    assert row.reason.startswith("no InfiniBand/RoCE ports (ib_sysfs lists none)")
    assert "ibstat: not found (not installed or not on PATH)" in row.reason


def test_sandbox_expects_no_fabric_and_skips() -> None:
    assert SANDBOX.infiniband is None
    row = ib_row(SANDBOX, ib_sysfs=ok(""))
    assert (row.status, row.measured) == ("SKIP", "none")
    # Whatever the host's /sys shows is listed, not judged.
    row = ib_row(SANDBOX, ib_sysfs=ok(fixture("sys_infiniband_procfs.txt")))
    assert row.status == "SKIP" and row.measured.startswith("4 ports: hfi1_0/1")


def test_unreadable_sources_fail_naming_each() -> None:
    row = ib_row(ib_sysfs=ok(fixture("garbage.txt")), ibstat=ok(fixture("garbage.txt")))
    assert row.status == "FAIL"
    assert row.reason.startswith("no port source readable; /sys/class/infiniband: unreadable line")
    assert "ibstat: no \"CA '<device>'\" block" in row.reason
    assert "ibv_devinfo: no output collected" in row.reason
    assert row.host == "n1"


def test_production_profile_names_the_ndr_rate() -> None:
    assert PRODUCTION.infiniband == InfinibandExpectation(
        ports_per_node=Band(min=1), port_rate_gbps=400, link_layer="InfiniBand"
    )


def test_playbook_publishes_every_port_source_the_judge_reads() -> None:
    plays = yaml.safe_load((Path(__file__).resolve().parents[2] / "playbooks" / "verify.yml").read_text())
    tasks = plays[0]["tasks"]
    publish = next(t for t in tasks if t["name"] == "Publish the raw outputs")
    published = publish["vars"]["_verify_record"]["commands"]
    assert {name for name, _ in IB_SOURCES} <= set(published)
    sysfs = next(t for t in tasks if t["name"] == "Read InfiniBand/RoCE port state from /sys")
    # A node without the directory must give an empty output, not a failed task.
    assert sysfs["ansible.builtin.shell"]["cmd"].endswith("2>/dev/null || true")


# --- the level -------------------------------------------------------------------------------------------


def test_quick_level_still_judges_the_ports() -> None:
    # Reading the ports takes well under a second, so deploy's pre-flight checks them too.
    raw = {
        "n1": {
            "accelerator": "cpu",
            "level": "quick",
            "commands": {"ibstat": ok(fixture("ibstat_polling_redacted.txt"))},
        }
    }
    row = next(r for r in judge_all(PRODUCTION, ["n1"], raw, None, {}) if r.check == "ib.ports")
    assert row.status == "FAIL" and "mlx5_10 port 1: physical state Polling" in row.reason


def test_playbook_reads_the_ports_at_every_level() -> None:
    plays = yaml.safe_load((Path(__file__).resolve().parents[2] / "playbooks" / "verify.yml").read_text())
    readers = [t for t in plays[0]["tasks"] if t["name"].startswith("Read InfiniBand/RoCE ports")]
    readers += [t for t in plays[0]["tasks"] if t["name"] == "Read InfiniBand/RoCE port state from /sys"]
    by_register = {t["register"]: t for t in readers}
    assert set(by_register) == {"_v_ib_sysfs", "_v_ibstat", "_v_ibv_devinfo"}
    # No reader depends on the level; /sys always runs, each fallback only where the sources before it
    # listed nothing.
    assert "when" not in by_register["_v_ib_sysfs"]
    fallbacks = (("_v_ibstat", ["_v_ib_sysfs"]), ("_v_ibv_devinfo", ["_v_ib_sysfs", "_v_ibstat"]))
    for fallback, before in fallbacks:
        when = by_register[fallback]["when"]
        conditions = " ".join(when if isinstance(when, list) else [when])
        assert "verify_level" not in conditions, conditions
        assert all(source in conditions for source in before), conditions
