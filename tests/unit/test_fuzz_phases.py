"""Bad phase files, generated and hand-picked: each is a ConfigError naming the file and the key, and the
port and link rules hold exactly (checked against an oracle written independently of tooling/plan/phases.py).

`load_phases(path)` is how another phase file is read; the CLI and the playbooks always use
tooling/phases.yml.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ddp.config_errors import ConfigError, parse_yaml
from tests.unit.fuzz_documents import key_paths, with_value
from tooling.plan.phases import DEFAULT_PHASES_FILE, load_phases

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PLAN: dict[str, Any] = parse_yaml(DEFAULT_PHASES_FILE.read_text())
# The other services' ports (tests/unit/test_elk_ports.py reads them from the roles).
TAKEN = {3000, 5044, 5601, 9090, 9093, 9100, 9200, 9300, 9400, 9600}


LEAVES = sorted(key_paths(PLAN))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-phases")


def write(directory: Path, data: object) -> Path:
    path = directory / "phases.yml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def phase_error(path: Path) -> str | None:
    """The message of load_phases, None when the file is valid; any other exception fails the test."""
    try:
        load_phases(path)
    except ConfigError as exc:
        assert str(path) in str(exc), f"the message does not name the file: {exc}"
        return str(exc)
    return None


text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


# --- generated ---------------------------------------------------------------------------------------


@FUZZ
@given(path=st.sampled_from(LEAVES), value=values)
def test_any_value_anywhere_is_accepted_or_named(workdir: Path, path: tuple[str, ...], value: Any) -> None:
    message = phase_error(write(workdir, with_value(PLAN, path, value)))
    dotted = ".".join(path)
    # Checks across phases name the phase they find wrong, which may be another one (a link to this).
    across = ("ports", "groups nest", "fewer nodes", "already the group")
    if message is not None and not any(word in message for word in across):
        keys = [".".join(path[:n]) for n in range(len(path), 1, -1)]
        assert any(f": {key}:" in message or f": {key}." in message for key in keys), (dotted, message)
    numeric = path[-1] in ("nodes", "nproc_per_node", "min_nodes", "port", "base_port", "join_timeout_s")
    if numeric and isinstance(value, bool | str | float | list | dict):
        assert message is not None, f"{dotted} accepted {value!r}"
    if numeric and isinstance(value, int) and not isinstance(value, bool) and value <= 0:
        assert message is not None, f"{dotted} accepted {value!r}"


@FUZZ
@given(
    section=st.sampled_from(["", "rendezvous", "metrics", "phases.1", "phases.2c"]),
    key=st.from_regex(r"[a-z][a-z_]{0,10}", fullmatch=True),
)
def test_unknown_keys_are_named(workdir: Path, section: str, key: str) -> None:
    data = copy.deepcopy(PLAN)
    node = data
    for part in filter(None, section.split(".")):
        node = node[part]
    assume(key not in node and not (section == "" and key in ("rendezvous", "metrics", "phases")))
    node[key] = 1
    message = phase_error(write(workdir, data))
    dotted = f"{section}.{key}" if section else key
    assert message is not None and f"{dotted}: unknown key" in message


@FUZZ
@given(document=text)
def test_any_text_is_accepted_or_named(workdir: Path, document: str) -> None:
    phase_error(write(workdir, document))


def port_oracle(rendezvous: int, base: int, widest: int) -> str | None:
    """Which key must be refused, from the rules as the design states them."""
    if not 1024 <= rendezvous <= 65535:
        return "rendezvous.port"
    if not 1024 <= base <= 65535:
        return "metrics.base_port"
    ranks = range(base, base + widest)
    if ranks[-1] > 65535 or any(port in ranks for port in TAKEN):
        return "metrics.base_port"
    if rendezvous in TAKEN or rendezvous in ranks:
        return "rendezvous.port"
    return None


@FUZZ
@given(
    rendezvous=st.one_of(st.integers(0, 70000), st.sampled_from(sorted(TAKEN)), st.integers(9490, 9510)),
    base=st.one_of(st.integers(0, 70000), st.integers(9180, 9610), st.integers(65520, 65535)),
    widest=st.integers(1, 32),
)
def test_ports_are_refused_exactly_when_they_clash(
    workdir: Path, rendezvous: int, base: int, widest: int
) -> None:
    data = copy.deepcopy(PLAN)
    data["rendezvous"]["port"] = rendezvous
    data["metrics"]["base_port"] = base
    data["phases"]["2b"]["nproc_per_node"] = widest
    message = phase_error(write(workdir, data))
    expected = port_oracle(rendezvous, base, max(widest, 4))
    if expected is None:
        assert message is None, message
    else:
        assert message is not None, f"accepted rendezvous {rendezvous}, ranks from {base} x {widest}"
        assert f": {expected}: " in message, message


NAMES = ["1", "2a", "2b", "2c"]


def link_oracle(
    nodes: dict[str, int], previous: dict[str, str | None], fallback: dict[str, str | None]
) -> bool:
    for name in NAMES:
        for target in (previous[name], fallback[name]):
            if target is not None and (target not in nodes or target == name or nodes[target] >= nodes[name]):
                return False
    return True


@FUZZ
@given(
    nodes=st.fixed_dictionaries({name: st.integers(1, 5) for name in NAMES}),
    previous=st.fixed_dictionaries(
        {name: st.one_of(st.none(), st.sampled_from([*NAMES, "3"])) for name in NAMES}
    ),
    fallback=st.fixed_dictionaries(
        {name: st.one_of(st.none(), st.sampled_from([*NAMES, "x"])) for name in NAMES}
    ),
)
def test_previous_and_fallback_links(
    workdir: Path, nodes: dict[str, int], previous: dict[str, str | None], fallback: dict[str, str | None]
) -> None:
    data = copy.deepcopy(PLAN)
    for name in NAMES:
        data["phases"][name].update(
            nodes=nodes[name], min_nodes=1, previous=previous[name], fallback=fallback[name]
        )
    message = phase_error(write(workdir, data))
    if link_oracle(nodes, previous, fallback):
        assert message is None, message
    else:
        assert message is not None
        assert any(f": phases.{name}" in message for name in NAMES), message


# --- hand-picked ---------------------------------------------------------------------------------------

BAD_EDITS = [
    ({"phases": {"2a": {"nproc_per_node": 0}}}, "phases.2a.nproc_per_node: expected greater than 0 (got 0)"),
    ({"phases": {"2a": {"nproc_per_node": -4}}}, "phases.2a.nproc_per_node: expected greater than 0"),
    ({"phases": {"2a": {"nodes": True}}}, "phases.2a.nodes: expected a valid integer, got a boolean True"),
    ({"phases": {"2a": {"nodes": "2"}}}, "phases.2a.nodes: expected a valid integer, got a string '2'"),
    ({"phases": {"2a": {"min_nodes": 3}}}, "phases.2a: min_nodes (3) must not exceed nodes (2)"),
    ({"phases": {"2a": {"group": None}}}, "phases.2a.group: expected a valid string"),
    ({"phases": {"2a": {"group": "phase 2a"}}}, "phases.2a.group: String should match pattern"),
    ({"phases": {"2a": {"group": "phase1"}}}, "phases.2a.group: 'phase1' is already the group of phase '1'"),
    ({"phases": {"2a": {"group": "all"}}}, "phases.2a: group: 'all' is Ansible's own group"),
    (
        {"phases": {"2b": {"previous": "9"}}},
        "phases.2b: previous '9' is not a defined phase; expected one of",
    ),
    ({"phases": {"2b": {"previous": "2b"}}}, "phases.2b: previous '2b' is the phase itself"),
    ({"phases": {"2b": {"previous": "2c"}}}, "phases.2b: groups nest, so it cannot be smaller than '2c'"),
    ({"phases": {"2c": {"fallback": "nope"}}}, "phases.2c: fallback 'nope' is not a defined phase"),
    ({"phases": {"2b": {"fallback": "2c"}}}, "phases.2b: fallback '2c' must have fewer nodes"),
    ({"phases": {"1": {"config": "ddp/configs/missing.yaml"}}}, "phases.1.config: "),
    ({"phases": {"1": {"config": "/etc/passwd"}}}, "phases.1.config: expected a path inside the project"),
    (
        {"phases": {"1": {"config": "ddp/configs/phase1.json"}}},
        "phases.1.config: expected a .yaml trainer config",
    ),
    ({"phases": {"1": {"colour": "red"}}}, "phases.1.colour: unknown key"),
    ({"phases": {"1": {"gate": {"thruput": {"target": ">= 1"}}}}}, "phases.1.gate.thruput: unknown key"),
    ({"rendezvous": {"port": 9200}}, "rendezvous.port: 9200 is the port of Elasticsearch (HTTP)"),
    ({"rendezvous": {"port": 5601}}, "rendezvous.port: 5601 is the port of Kibana"),
    ({"rendezvous": {"port": 9502}}, "rendezvous.port: 9502 is one of the ranks' metrics ports 9500..9503"),
    ({"rendezvous": {"port": 80}}, "rendezvous.port: expected a port from 1024 to 65535 (got 80)"),
    ({"rendezvous": {"port": 65536}}, "rendezvous.port: expected less than or equal to 65535"),
    ({"rendezvous": {"join_timeout_s": 0}}, "rendezvous.join_timeout_s: expected greater than 0"),
    ({"rendezvous": {"read_timeout_s": -1}}, "rendezvous.read_timeout_s: expected greater than 0"),
    ({"rendezvous": {"max_restarts": -1}}, "rendezvous.max_restarts: expected greater than or equal to 0"),
    (
        {"rendezvous": {"monitor_interval_s": 0.01}},
        "rendezvous.monitor_interval_s: expected greater than or equal to 0.05",
    ),
    (
        {"metrics": {"base_port": 9597}},
        "the ranks' ports 9597..9600 (base_port + local rank; phase 1 runs 4 a node)",
    ),
    ({"metrics": {"base_port": 9400}}, "take 9400, the port of the NVIDIA DCGM exporter"),
    ({"metrics": {"base_port": 5042}}, "take 5044, the port of Logstash (beats input)"),
    ({"metrics": {"base_port": 65533}}, "metrics.base_port: the ranks' ports 65533..65536"),
    ({"metrics": {"base_port": "9500"}}, "metrics.base_port: expected a valid integer, got a string"),
]


def merged(base: dict[str, Any], edit: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in edit.items():
        out[key] = merged(out.get(key) or {}, value) if isinstance(value, dict) and value else value
    return out


@pytest.mark.parametrize(("edit", "expected"), BAD_EDITS, ids=[e[:45] for _, e in BAD_EDITS])
def test_hand_picked_bad_plans(tmp_path: Path, edit: dict[str, Any], expected: str) -> None:
    message = phase_error(write(tmp_path, merged(PLAN, edit)))
    assert message is not None and expected in message, message


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            "phases:\n  1: {group: p1, nodes: 1, nproc_per_node: 1, min_nodes: 1, config: a.yaml}\n",
            "phases: key 1",
        ),
        ("phases: {}\n", "phases: expected at least 1 entry, got 0"),
        ("phases: [1]\n", "phases: expected a mapping of settings"),
        ("rendezvous: {port: 29400}\n", "phases: required key is missing"),
        (
            "phases:\n  '1':\n    group: a\n    group: b\n",
            "line 4, column 5: invalid YAML: duplicate key 'group'",
        ),
        ("phases:\n  '1': {group: p\n", "invalid YAML"),
        ("", "file is empty"),
    ],
)
def test_hand_picked_bad_documents(tmp_path: Path, document: str, expected: str) -> None:
    message = phase_error(write(tmp_path, document))
    assert message is not None and expected in message, message


def test_missing_phase_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"phases\.yml: file not found"):
        load_phases(tmp_path / "phases.yml")


def test_the_shipped_plan_and_the_optional_timeouts_load(tmp_path: Path) -> None:
    assert phase_error(DEFAULT_PHASES_FILE) is None
    data = merged(PLAN, {"rendezvous": {"last_call_timeout_s": 45, "read_timeout_s": 90}})
    plan = load_phases(write(tmp_path, data))
    assert (plan.rendezvous.last_call_timeout_s, plan.rendezvous.read_timeout_s) == (45, 90)
