"""`dcgmi diag -j`: the parser on DCGM's published documents, the verdicts, and the rows the judge adds."""

from __future__ import annotations

import pytest

from tests.unit.test_verify_judge import PRODUCTION, cuda_node, fixture, ok, rows_for
from tooling.verify.dcgm_diag import parse_dcgmi_diag
from tooling.verify.dcgm_health import check_name, verdicts
from tooling.verify.judge import judge_all
from tooling.verify.parsers import ParseError

PASSING = "dcgmi_diag_3.1.0_8gpu_pass.txt"  # 8 GPUs, every test passes; a line before the JSON, nulls in it
FAILING = "dcgmi_diag_per_gpu_fail_v1.7.json"  # 4 GPUs, per-GPU results: sm_stress fails on 3, skips


def _dcgm_rows(result: dict[str, object], **raw: object) -> dict[str, object]:
    node = cuda_node(dcgm_diag=result)
    node.update(raw)
    return rows_for(judge_all(PRODUCTION, ["gpu1"], {"gpu1": node}, None, {}), "gpu1")


def test_passing_document_with_a_banner_and_nulls() -> None:
    diag = parse_dcgmi_diag(fixture(PASSING))
    assert diag.version == "3.1.0" and diag.runtime_error is None
    assert [t for _, t in diag.tests][:3] == ["Denylist", "NVML Library", "CUDA Main Library"]
    assert diag.tests[-1] == ("Custom", "software")
    # "gpu_ids" is a list in a string for the whole-node tests, a number for the per-GPU ones.
    assert diag.results[0].gpus == tuple(range(8))
    assert {r.gpus for r in diag.results if r.test == "software"} == {(i,) for i in range(8)}
    assert {r.status for r in diag.results} == {"PASS"}


def test_per_gpu_document_keeps_each_gpus_result_and_message() -> None:
    diag = parse_dcgmi_diag(fixture(FAILING))
    stress = {r.gpus: r for r in diag.results if r.test == "sm_stress"}
    assert {g: r.status for g, r in stress.items()} == {
        (0,): "FAIL",
        (1,): "PASS",
        (2,): "FAIL",
        (3,): "FAIL",
    }
    assert stress[(2,)].messages == (
        "Max stress level of 1096.5 did not exceed desired stress level of 3000.0 for GPU 2 (DCGM error 50)",
    )
    memory = {r.gpus: r.status for r in diag.results if r.test == "memory"}
    assert memory == {(0,): "SKIP", (1,): "PASS", (2,): "PASS", (3,): "PASS"}


def test_failing_test_fails_naming_test_gpus_and_message() -> None:
    rows = {row[0]: row for row in verdicts(parse_dcgmi_diag(fixture(FAILING)), 3)}
    _, status, measured, _, reason = rows["dcgm.sm_stress"]
    assert status == "FAIL" and measured == "FAIL on GPU 0,2,3; PASS on GPU 1"
    assert reason.startswith("DCGM test 'sm_stress' failed: GPU 0: Max stress level of 2128.7")
    assert "GPU 3: Max stress level of 1099.7" in reason and "GPU 1" not in reason
    # Skipped on one GPU and passed on the others: a pass that says where it was skipped.
    assert rows["dcgm.memory"][1:3] == ("PASS", "SKIP on GPU 0; PASS on GPU 1,2,3")
    assert "skipped on GPU 0" in rows["dcgm.memory"][4]
    assert rows["dcgm.diagnostic"][1] == "SKIP"
    assert "Unable to find hardware diagnostic" in rows["dcgm.diagnostic"][4]
    assert rows["dcgm.targeted_power"][4].endswith("was skipped: DCGM gave no message")
    summary = rows["dcgm.diag"]
    assert summary[1:3] == ("FAIL", "DCGM 1.7, level 3: 17 tests (12 PASS, 1 FAIL, 4 SKIP)")
    assert summary[4] == "failed: sm_stress"


def test_passing_document_passes_every_row() -> None:
    rows = verdicts(parse_dcgmi_diag(fixture(PASSING)), 1)
    assert rows[0] == (
        "dcgm.diag",
        "PASS",
        "DCGM 3.1.0, level 1: 10 tests (10 PASS)",
        "dcgmi diag -r 1: every test passes",
        "no test failed",
    )
    assert {row[1] for row in rows} == {"PASS"}
    assert check_name("Page Retirement/Row Remap") == "dcgm.page_retirement_row_remap"


def test_a_status_word_dcgm_never_used_is_not_a_pass() -> None:
    text = fixture(PASSING).replace('"status" : "PASS"', '"status" : "Inconclusive"', 1)
    rows = {row[0]: row for row in verdicts(parse_dcgmi_diag(text), 1)}
    assert rows["dcgm.denylist"][1] == "FAIL"
    assert "reported 'Inconclusive'" in rows["dcgm.denylist"][4]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no output"),
        (fixture("garbage.txt"), "dcgmi diag:"),
        ("Error: unable to establish a connection to the specified host: localhost", "no JSON document"),
        ('{"DCGM GPU Diagnostic": {"test_categories": [', "not JSON"),
        ("[1, 2]", "no JSON document"),
        ('{"version": "3.3.9"}', "expected a 'DCGM Diagnostic' or 'DCGM GPU Diagnostic' object"),
        ('{"DCGM GPU Diagnostic": {"version": "3.1.0"}}', "no test_categories list"),
        ('{"DCGM GPU Diagnostic": {"test_categories": []}}', "lists no test results"),
    ],
)
def test_bad_input_is_a_clear_parse_error(text: str, message: str) -> None:
    with pytest.raises(ParseError, match="dcgmi diag") as info:
        parse_dcgmi_diag(text)
    assert message in str(info.value)


def test_cut_document_is_a_parse_error() -> None:
    text = fixture(FAILING)
    with pytest.raises(ParseError, match="not JSON"):
        parse_dcgmi_diag(text[: len(text) // 2])


# --- rows in the node's verdict --------------------------------------------------------------------------


def test_dcgm_rows_join_the_node_verdict() -> None:
    # dcgmi exits non-zero when a test fails, and the document still says which.
    by = _dcgm_rows({"rc": 226, "stdout": fixture(FAILING), "stderr": ""})
    assert by["dcgm.diag"].status == "FAIL" and by["dcgm.sm_stress"].status == "FAIL"
    assert by["dcgm.diag"].expected == "dcgmi diag -r 2: every test passes"  # production.yml's level
    by = _dcgm_rows(ok(fixture(PASSING)))
    assert by["dcgm.diag"].status == "PASS" and by["dcgm.software"].status == "PASS"


def test_missing_dcgmi_skips_with_the_reason() -> None:
    # What verify.yml's task prints and returns where dcgmi is not on PATH.
    by = _dcgm_rows({"rc": 127, "stdout": "", "stderr": "dcgmi not found on PATH"})
    assert by["dcgm.diag"].status == "SKIP"
    assert by["dcgm.diag"].reason == "DCGM is not installed: dcgmi not found on PATH"
    assert not any(check.startswith("dcgm.") and check != "dcgm.diag" for check in by)


def test_dcgmi_error_without_a_document_fails_with_its_message() -> None:
    said = "Error: unable to establish a connection to the specified host: localhost"
    by = _dcgm_rows({"rc": 255, "stdout": said, "stderr": ""})
    assert by["dcgm.diag"].status == "FAIL"
    assert by["dcgm.diag"].reason == f"dcgmi diag failed (rc 255): {said}"


def test_dcgmi_stopped_by_the_task_timeout_fails_with_ansibles_message() -> None:
    # A task Ansible's `timeout:` ended registers `failed` and its message (ansible-core's TaskTimeoutError
    # wording), with no rc and no output.
    said = (
        "The ansible.builtin.shell action failed to execute in the expected time frame (3600)"
        " and was terminated"
    )
    by = _dcgm_rows({"failed": True, "msg": said})
    assert by["dcgm.diag"].status == "FAIL"
    assert by["dcgm.diag"].reason == f"dcgmi diag: no output: {said}"


def test_quick_level_skips_nccl_tests_and_dcgm() -> None:
    by = _dcgm_rows(ok(fixture(FAILING)), level="quick")
    assert by["dcgm.diag"].status == "SKIP" and "level quick" in by["dcgm.diag"].reason
    assert by["nccl.busbw"].status == "SKIP" and "level quick" in by["nccl.busbw"].reason
    assert "dcgm.sm_stress" not in by


def test_cpu_hosts_skip_the_new_gpu_rows() -> None:
    node = {"accelerator": "cpu", "commands": cuda_node()["commands"]}
    by = rows_for(judge_all(PRODUCTION, ["cpu1"], {"cpu1": node}, None, {}), "cpu1")
    assert by["gpu.sku"].status == by["dcgm.diag"].status == "SKIP"
