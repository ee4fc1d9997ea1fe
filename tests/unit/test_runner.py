"""tooling.runner: event accounting (pure) and one real ansible-runner run against localhost."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

import ansible_runner
import pytest
from rich.console import Console

from tests.unit.vault_fixtures import VAULT_PASSWORD, encrypt_file, password_file, vaulted
from tooling.runner import (
    EventCollector,
    HostStats,
    _host_key_checking,
    explain,
    fact_cache_dir,
    failure_message,
    get_inventory,
    run_playbook,
)
from tooling.vault import VAULT_IDS_ENV, vault_environment

SECRET = "s3cr3t-token-value-do-not-print"

PLAYBOOK = """\
- name: Runner smoke test
  hosts: all
  gather_facts: false
  tasks:
    - name: Say hello
      ansible.builtin.command: echo hello
      changed_when: false
    - name: Fail but carry on
      ansible.builtin.command: sh -c 'echo disk on fire >&2; exit 3'
      ignore_errors: true
      changed_when: false
    - name: Publish data
      ansible.builtin.set_stats:
        data:
          seen: "{{ {inventory_hostname: 'yes'} }}"
        per_host: false
    - name: Break for real
      ansible.builtin.fail:
        msg: the widget is broken
"""


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _event(kind: str, host: str | None = None, task: str = "t", **data: Any) -> dict[str, Any]:
    event_data: dict[str, Any] = {"task": task, **data}
    if host is not None:
        event_data["host"] = host
    return {"event": kind, "event_data": event_data}


# --- pure accounting -------------------------------------------------------------------------------


def test_collector_counts_outcomes_per_host() -> None:
    c = EventCollector()
    c.feed(_event("runner_on_start", "n1", task="install"))
    c.feed(_event("runner_on_ok", "n1", task="install", res={"changed": True}))
    c.feed(_event("runner_on_ok", "n1", res={"changed": False}))
    c.feed(_event("runner_on_skipped", "n1"))
    c.feed(_event("runner_on_failed", "n2", task="probe", res={"msg": "boom"}))
    c.feed(_event("runner_on_failed", "n2", task="soft", res={"msg": "meh"}, ignore_errors=True))
    assert c.stats["n1"] == HostStats(ok=2, changed=1, skipped=1)
    assert c.stats["n2"] == HostStats(failed=1, ignored=1)
    assert c.current_task["n1"] == "install"
    assert [(f.host, f.task, f.message, f.ignored) for f in c.failures] == [
        ("n2", "probe", "boom", False),
        ("n2", "soft", "meh", True),
    ]


def test_collector_prefers_ansible_recap_when_present() -> None:
    c = EventCollector()
    c.feed(_event("runner_on_ok", "n1", res={}))
    c.feed(
        _event(
            "playbook_on_stats",
            ok={"n1": 5},
            changed={"n1": 2},
            dark={"n2": 1},
            failures={},
            artifact_data={"raw": {"n1": 1}},
        )
    )
    stats = c.host_stats()
    assert stats["n1"].ok == 5 and stats["n1"].changed == 2
    assert stats["n2"].unreachable == 1
    assert c.custom_stats() == {"raw": {"n1": 1}}


def test_failure_message_combines_msg_and_stderr_tail() -> None:
    assert failure_message({"msg": "non-zero return code", "stderr": "a\nb: not found"}) == (
        "non-zero return code: b: not found"
    )
    assert failure_message({"rc": 3}) == "exit status 3"
    assert failure_message({}) == "failed without a message"
    assert failure_message({"msg": "Task failed: Failed to connect"}) == "Failed to connect"
    looped = {"results": [{"failed": False}, {"failed": True, "msg": "item 2 broke"}]}
    assert failure_message(looped) == "item 2 broke"


@pytest.mark.parametrize(
    ("status", "rc", "expected"),
    [
        ("successful", 0, "without failures"),
        ("timeout", 254, "30 s time limit"),
        ("canceled", 254, "canceled"),
        ("failed", 2, "one or more hosts failed"),
    ],
)
def test_explain_maps_runner_status(status: str, rc: int, expected: str) -> None:
    c = EventCollector()
    c.feed(_event("runner_on_ok", "n1", res={}))
    assert expected in explain(status, rc, c, "", 30)


def test_explain_names_unreachable_hosts_and_early_stops() -> None:
    c = EventCollector()
    c.feed(_event("runner_on_unreachable", "n3", res={"msg": "No route to host"}))
    assert explain("failed", 4, c, "", None) == "one or more hosts were unreachable; unreachable: n3"
    empty = EventCollector()
    text = explain("failed", 4, empty, "ERROR! the playbook could not be found", None)
    assert "stopped before running any task: ERROR! the playbook could not be found" in text


def test_host_key_checking_follows_ansible_cfg(tmp_path: Path) -> None:
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text("[defaults]\nhost_key_checking = false\n")
    assert _host_key_checking(cfg) == "False"
    cfg.write_text("[defaults]\nforks = 5\n")
    assert _host_key_checking(cfg) == "True"
    assert _host_key_checking(tmp_path / "missing.cfg") == "True"


def _fact_project(root: Path) -> Path:
    (root / "inventory").mkdir(parents=True)
    (root / "ansible.cfg").write_text(
        "[defaults]\ninventory = inventory/site\ngathering = smart\nfact_caching = jsonfile\n"
        "fact_caching_connection = .ansible/facts\nfact_caching_timeout = 86400\n"
    )
    return root


def test_each_inventory_but_the_default_has_a_fact_cache_of_its_own(tmp_path: Path) -> None:
    project = _fact_project(tmp_path / "project")
    (project / "inventory" / "site").write_text("node1\n")
    shared = project / ".ansible" / "facts"
    assert fact_cache_dir(project, project / "inventory" / "site") == shared
    sandbox = tmp_path / "a" / "inventory"
    other = tmp_path / "b" / "inventory"
    own = fact_cache_dir(project, sandbox)
    assert own.parent == project / ".ansible" / "facts-by-inventory"
    assert own.name.startswith("inventory-")
    assert own != fact_cache_dir(project, other)  # same file name, another cluster
    assert own == fact_cache_dir(project, tmp_path / "a" / ".." / "a" / "inventory")  # the path, resolved


CACHE_FACT = """\
- name: Cache a fact, or read it back
  hosts: all
  gather_facts: false
  tasks:
    - name: Remember which cluster this is
      ansible.builtin.set_fact:
        cluster_name: "{{ cluster_name_to_cache }}"
        cacheable: true
      when: cluster_name_to_cache is defined
    - name: Say which cluster the cache holds
      ansible.builtin.debug:
        msg: "cluster={{ cluster_name | default('none') }}"
"""


def test_clusters_with_the_same_host_names_do_not_share_facts(tmp_path: Path) -> None:
    """Two inventories that both name their host node1: each run reads back the facts its own cluster
    cached, never the other's (one cache keyed by host name alone would answer "b" for cluster a)."""
    project = _fact_project(tmp_path / "project")
    book = project / "cache.yml"
    book.write_text(CACHE_FACT)
    inventories = {}
    for name in ("a", "b"):
        inventories[name] = tmp_path / name / "hosts.ini"
        inventories[name].parent.mkdir()
        inventories[name].write_text(
            f"node1 ansible_connection=local ansible_python_interpreter={sys.executable}\n"
        )

    def said(name: str, extravars: dict[str, str]) -> str:
        result = run_playbook(
            book,
            inventory=inventories[name],
            runs_dir=tmp_path / "runs",
            project_dir=project,
            extravars=extravars,
            progress=False,
        )
        assert result.status == "successful", result.explanation
        messages = [
            e["event_data"]["res"].get("msg", "") for e in result.events if e["event"] == "runner_on_ok"
        ]
        return next(m for m in messages if m.startswith("cluster="))

    assert said("a", {"cluster_name_to_cache": "a"}) == "cluster=a"
    assert said("b", {"cluster_name_to_cache": "b"}) == "cluster=b"
    assert said("a", {}) == "cluster=a"
    assert said("b", {}) == "cluster=b"
    assert not (project / ".ansible" / "facts").exists()


def test_missing_inventory_is_refused_before_running(tmp_path: Path) -> None:
    book = tmp_path / "pb.yml"
    book.write_text(PLAYBOOK)
    # ansible-runner would take an unknown path for inventory *text*; we refuse it up front.
    with pytest.raises(FileNotFoundError, match="inventory not found"):
        run_playbook(book, inventory=tmp_path / "nope", runs_dir=tmp_path / "runs", progress=False)
    with pytest.raises(FileNotFoundError, match="playbook not found"):
        run_playbook(tmp_path / "nope.yml", inventory=book, runs_dir=tmp_path / "runs", progress=False)


def test_runner_start_failure_is_an_error_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ansible_runner
    from ansible_runner.exceptions import ConfigurationError

    def broken(**kwargs: Any) -> None:
        raise ConfigurationError("ansible-playbook command not found")

    monkeypatch.setattr(ansible_runner, "run", broken)
    book = tmp_path / "pb.yml"
    book.write_text(PLAYBOOK)
    result = run_playbook(book, inventory=book, runs_dir=tmp_path / "runs", progress=False)
    assert (result.status, result.rc) == ("error", 254)
    assert "ansible-playbook command not found" in result.explanation
    assert not result.events


# --- one real run ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, str, str]:
    root = tmp_path_factory.mktemp("runner")
    book = root / "pb.yml"
    book.write_text(PLAYBOOK)
    inventory = root / "hosts.ini"
    inventory.write_text(
        "[local]\n"
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"
        "[dead]\n"
        f"deadhost ansible_host=127.0.0.1 ansible_port={_closed_port()} ansible_user=nobody\n"
    )
    buffer = io.StringIO()
    console = Console(file=buffer, width=120, force_terminal=False)
    mp = pytest.MonkeyPatch()
    mp.setenv("DDP_TEST_SECRET", SECRET)
    handler_records: list[str] = []

    class _Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            handler_records.append(record.getMessage())

    capture = _Capture(level=logging.DEBUG)
    logger = logging.getLogger("tooling.runner")
    logger.addHandler(capture)
    logger.setLevel(logging.DEBUG)
    try:
        result = run_playbook(
            book, inventory=inventory, runs_dir=root / "runs", label="smoke", console=console
        )
    finally:
        logger.removeHandler(capture)
        mp.undo()
    return result, buffer.getvalue(), "\n".join(handler_records)


def test_real_run_counts_events_and_reports_failure(real_run: tuple[Any, str, str]) -> None:
    result, _, _ = real_run
    assert result.status == "failed"
    assert result.rc != 0
    assert result.stats["localhost"].ok >= 2
    assert result.stats["localhost"].failed == 1
    assert result.stats["localhost"].ignored == 1
    hard = result.hard_failures()
    assert [(f.host, f.task, f.message) for f in hard] == [
        ("localhost", "Break for real", "the widget is broken")
    ]
    soft = [f for f in result.failures if f.ignored]
    assert soft and "disk on fire" in soft[0].message
    kinds = {e["event"] for e in result.events}
    assert {"playbook_on_start", "runner_on_ok", "runner_on_failed", "playbook_on_stats"} <= kinds


def test_real_run_reports_unreachable_host_with_reason(real_run: tuple[Any, str, str]) -> None:
    result, _, _ = real_run
    assert set(result.unreachable) == {"deadhost"}
    reason = result.unreachable["deadhost"]
    assert "Connection refused" in reason and "127.0.0.1" in reason
    assert result.stats["deadhost"].unreachable == 1
    assert "unreachable: deadhost" in result.explanation


def test_real_run_exposes_task_results_and_set_stats(real_run: tuple[Any, str, str]) -> None:
    result, _, _ = real_run
    assert result.task_results("Say hello")["localhost"]["stdout"] == "hello"
    assert result.task_results("Fail but carry on")["localhost"]["rc"] == 3
    assert result.custom_stats == {"seen": {"localhost": "yes"}}
    # What a playbook publishes under one key, as tooling deploy reads launch.yml's `ddp_launch`.
    assert result.published("seen") == {"localhost": "yes"}
    assert result.published("never-published") == {}


def test_real_run_keeps_artifacts(real_run: tuple[Any, str, str]) -> None:
    result, _, _ = real_run
    assert result.artifact_dir.is_dir()
    assert result.artifact_dir.is_relative_to(result.private_data_dir)
    events = list((result.artifact_dir / "job_events").glob("*.json"))
    assert len(events) == len(result.events)
    assert (result.artifact_dir / "status").read_text() == "failed"
    # Extra vars go on the command line: no env/ files with possible secrets in the data dir.
    assert not (result.private_data_dir / "env").exists()


def test_real_run_shows_progress_but_never_the_environment(real_run: tuple[Any, str, str]) -> None:
    result, shown, logged = real_run
    assert "localhost" in shown and "deadhost" in shown
    assert SECRET not in shown
    assert SECRET not in logged
    assert "failed" in logged  # the status itself is logged
    command = json.loads((result.artifact_dir / "command").read_text())
    # The env does reach ansible-runner's own 0600 artifact (its design); it must not reach our output.
    assert command["env"]["ANSIBLE_CONFIG"].endswith("ansible.cfg")


def test_get_inventory_lists_groups(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("[phase1]\nn1 ansible_host=127.0.0.1\n[phase2a:children]\nphase1\n[phase2a]\nn2\n")
    data = get_inventory(inventory)
    assert data["phase1"]["hosts"] == ["n1"]
    assert set(data["phase2a"]["children"]) == {"phase1"}
    assert data["_meta"]["hostvars"]["n1"]["ansible_host"] == "127.0.0.1"


def test_inventory_listing_leaves_cached_facts_out(tmp_path: Path) -> None:
    """A fact cached by the last run (here one `set_fact cacheable=true` of Ansible's own) is not an
    inventory value: Ansible's own listing mixes it into the host's vars (checked, so the test can tell),
    tooling's leaves it out."""
    import subprocess

    config = tmp_path / "ansible.cfg"
    config.write_text(
        f"[defaults]\nfact_caching = jsonfile\nfact_caching_connection = {tmp_path / 'facts'}\n",
        encoding="utf-8",
    )
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("[phase1]\nn1 ansible_connection=local rack=r03\n", encoding="utf-8")
    env = {**os.environ, "ANSIBLE_CONFIG": str(config)}

    def ansible(*argv: str) -> str:
        done = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, check=True)
        return done.stdout

    cache_a_fact = ("-m", "ansible.builtin.set_fact", "-a", "row=r03 cacheable=true")
    ansible("ansible", "n1", "-i", str(inventory), *cache_a_fact)
    ansible_own = json.loads(ansible("ansible-inventory", "-i", str(inventory), "--list"))
    assert ansible_own["_meta"]["hostvars"]["n1"]["row"] == "r03"
    listed = get_inventory(inventory, project_dir=tmp_path)["_meta"]["hostvars"]["n1"]
    assert listed == {"ansible_connection": "local", "rack": "r03"}


VAULT_PLAYBOOK = """\
- name: Vault reaches the play
  hosts: local
  gather_facts: false
  vars_files:
    - vaulted_file.yml
    - inline_values.yml
  tasks:
    - name: Compare the decrypted values
      ansible.builtin.assert:
        that:
          - file_token == 'token-from-a-vaulted-file'
          - inline_token == 'token-from-an-inline-value'
        quiet: true
"""


def test_vault_options_reach_the_run_and_no_artifact_keeps_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tooling --vault-id` sets ANSIBLE_VAULT_IDENTITY_LIST (vault_environment); the run's command carries
    it, the play decrypts both kinds of vault, and neither the password nor a plain value is kept."""
    secret_dir = tmp_path / "secrets"
    secret_dir.mkdir()
    password = password_file(secret_dir)
    vault_id = f"prod@{password}"
    root = tmp_path / "project"
    root.mkdir()
    (root / "pb.yml").write_text(VAULT_PLAYBOOK)
    file_vars = root / "vaulted_file.yml"
    file_vars.write_text("file_token: token-from-a-vaulted-file\n")
    encrypt_file(file_vars, vault_id)
    (root / "inline_values.yml").write_text(vaulted("inline_token", "token-from-an-inline-value", vault_id))
    inventory = root / "hosts.ini"
    inventory.write_text(
        f"[local]\nlocalhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"
    )
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
    monkeypatch.delenv(VAULT_IDS_ENV, raising=False)
    for name, value in vault_environment([vault_id], None).items():
        monkeypatch.setenv(name, value)
    runner_kwargs: list[dict[str, Any]] = []
    real_run = ansible_runner.run

    def recording_run(**kwargs: Any) -> Any:
        runner_kwargs.append(kwargs)
        return real_run(**kwargs)

    monkeypatch.setattr(ansible_runner, "run", recording_run)
    result = run_playbook(root / "pb.yml", inventory=inventory, runs_dir=tmp_path / "runs", progress=False)
    assert result.ok, result.explanation
    # The vault's sources reach ansible-playbook in the environment ansible-runner builds for it (its
    # `command` artifact); the password is in neither that nor the runner call.
    command = json.loads((result.artifact_dir / "command").read_text())
    assert command["env"][VAULT_IDS_ENV] == vault_id
    assert command["command"][0].endswith("ansible-playbook")
    assert len(runner_kwargs) == 1 and VAULT_PASSWORD not in repr(runner_kwargs)
    kept = [path for path in result.private_data_dir.rglob("*") if path.is_file()]
    assert kept, "the run keeps its artifacts"
    for path in kept:
        text = path.read_text(errors="replace")
        for secret in (VAULT_PASSWORD, "token-from-a-vaulted-file", "token-from-an-inline-value"):
            assert secret not in text, f"{secret!r} in {path}"
