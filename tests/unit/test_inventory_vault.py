"""An inventory kept in ansible-vault, made with the real ansible-vault: `!vault` values and a vault-encrypted
group_vars file load with the password, the values tooling reads come out decrypted and the others stay
encrypted, and a missing or wrong password is an error that names the file and the key."""

from __future__ import annotations

import json
import os
import tempfile
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.unit.vault_fixtures import VAULT_PASSWORD, encrypt_file, password_file, vaulted
from tooling.cli import app
from tooling.console import ToolingError
from tooling.inventory import load_inventory, ssh_targets
from tooling.vault import VAULT_IDS_ENV, VaultError, listed_ciphertext, vault_environment

SECRETS = {"ansible_port": "2222", "elasticsearch_password": "es-secret-in-a-vaulted-file"}
GRAFANA_PASSWORD = "grafana-secret-inline"


class Material:
    """Vault texts made once (ansible-vault is slow to start), written into each test's inventory."""

    def __init__(self, directory: Path) -> None:
        self.password = password_file(directory)
        self.wrong = password_file(directory, "not-the-password", name="wrong-pass")
        vault_id = f"prod@{self.password}"
        self.user = vaulted("ansible_user", "deploy", vault_id)
        self.grafana = vaulted("grafana_admin_password", GRAFANA_PASSWORD, vault_id)
        self.node2_address = vaulted("ansible_host", "192.0.2.12", vault_id)
        plain = directory / "secrets.yml"
        plain.write_text("".join(f"{k}: {v}\n" for k, v in SECRETS.items()))
        self.encrypted = encrypt_file(plain, vault_id).read_text()

    def inventory(self, root: Path, *, encrypted_file: bool = True, vaulted_reads: bool = True) -> Path:
        """node1 (plain address; in host_vars a vaulted user and Grafana password) and node2 (a vaulted
        address in hosts.yml); `vaulted_reads=False` leaves only the Grafana password vaulted inline."""
        node2 = self.node2_address if vaulted_reads else "ansible_host: 192.0.2.12\n"
        hosts = (
            "all:\n  children:\n    nodes:\n      hosts:\n"
            "        node1:\n          ansible_host: 192.0.2.11\n"
            "        node2:\n" + textwrap.indent(node2, " " * 10) + "\n"
            "    phase1:\n      hosts:\n        node1:\n"
        )
        files = {
            "hosts.yml": hosts,
            "host_vars/node1.yml": (self.user if vaulted_reads else "") + self.grafana,
            "group_vars/all/plain.yml": "ansible_python_interpreter: /usr/bin/python3\n",
        }
        if encrypted_file:
            files["group_vars/all/vault.yml"] = self.encrypted
        for name, text in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text)
        return root


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    return Material(tmp_path_factory.mktemp("vault"))


@pytest.fixture(autouse=True)
def no_vault_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (VAULT_IDS_ENV, "ANSIBLE_VAULT_PASSWORD_FILE"):
        monkeypatch.delenv(name, raising=False)


def load_error(path: Path) -> ToolingError:
    with pytest.raises(ToolingError) as info:
        load_inventory(path)
    assert info.value.exit_code == 2
    return info.value


def test_vaulted_inventory_loads_with_the_password(
    material: Material, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(VAULT_IDS_ENV, f"prod@{material.password}")
    inventory = load_inventory(material.inventory(tmp_path))
    hostvars = inventory["_meta"]["hostvars"]
    # Inline !vault values tooling reads, in host_vars and in hosts.yml, come out decrypted...
    assert hostvars["node1"]["ansible_user"] == "deploy"
    assert hostvars["node2"]["ansible_host"] == "192.0.2.12"
    # ...as do the values of the vault-encrypted group_vars file (Ansible decrypts a whole file).
    assert hostvars["node1"]["ansible_port"] == 2222
    node1 = ssh_targets(inventory, ["node1"])[0]
    assert (node1.user, node1.address, node1.port) == ("deploy", "192.0.2.11", 2222)
    # An inline secret tooling does not read stays encrypted, as ansible-inventory lists it.
    ciphertext = listed_ciphertext(hostvars["node1"]["grafana_admin_password"])
    assert ciphertext is not None and ciphertext.startswith("$ANSIBLE_VAULT;1.2;AES256;prod")
    assert GRAFANA_PASSWORD not in json.dumps(inventory)


def test_vaulted_values_tooling_does_not_read_need_no_password(material: Material, tmp_path: Path) -> None:
    inventory = load_inventory(material.inventory(tmp_path, encrypted_file=False, vaulted_reads=False))
    hostvars = inventory["_meta"]["hostvars"]
    assert listed_ciphertext(hostvars["node1"]["grafana_admin_password"]) is not None
    assert "ansible_user" not in hostvars["node1"]


def test_a_vaulted_value_tooling_reads_needs_the_password(material: Material, tmp_path: Path) -> None:
    error = load_error(material.inventory(tmp_path, encrypted_file=False))
    message = str(error)
    # The first one met, named by file, key path and host.
    assert (
        f"host 'node1': ansible_user (set in {tmp_path / 'host_vars' / 'node1.yml'}: ansible_user)" in message
    )
    assert "is vault-encrypted, and no vault secret was given" in message
    assert error.hint is not None and "--vault-id" in error.hint and "--vault-password-file" in error.hint


def test_an_encrypted_file_needs_the_password(material: Material, tmp_path: Path) -> None:
    error = load_error(material.inventory(tmp_path))
    assert f"{tmp_path / 'group_vars' / 'all' / 'vault.yml'} (the whole file) is vault-encrypted" in str(
        error
    )
    assert error.hint is not None and "--vault-password-file" in error.hint


def test_a_wrong_password_is_named_with_the_file(
    material: Material, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(VAULT_IDS_ENV, f"prod@{material.wrong}")
    error = load_error(material.inventory(tmp_path / "whole"))
    assert f"{tmp_path / 'whole' / 'group_vars' / 'all' / 'vault.yml'} cannot be decrypted" in str(error)
    error = load_error(material.inventory(tmp_path / "inline", encrypted_file=False))
    message = str(error)
    assert "host 'node1': ansible_user (set in" in message and "host_vars/node1.yml: ansible_user" in message
    assert "cannot be decrypted with the given vault secret(s)" in message
    assert "not-the-password" not in message


def test_ansible_tags_are_read_as_ansible_reads_them(material: Material, tmp_path: Path) -> None:
    """`!unsafe` (Ansible's other tag) loads, listed as ansible-inventory lists it; a `!vault` value where
    a mapping belongs is named as such."""
    (tmp_path / "hosts.yml").write_text(
        "all:\n  children:\n    nodes:\n      hosts:\n        node1:\n"
        "          ansible_host: 192.0.2.11\n          motd: !unsafe '{{ not rendered }}'\n"
    )
    motd = load_inventory(tmp_path)["_meta"]["hostvars"]["node1"]["motd"]
    assert motd == {"__ansible_unsafe": "{{ not rendered }}"}
    (tmp_path / "hosts.yml").write_text("all:\n  vars: " + material.grafana.partition(": ")[2])
    assert "all.vars: expected a mapping of variables, got a vault-encrypted value" in str(
        load_error(tmp_path)
    )


def test_the_decrypted_listing_is_not_left_on_disk(
    material: Material, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ansible-runner keeps ansible-inventory's output as an artifact; with a vault it holds the decrypted
    file, so its data dir must go once the listing is read."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setenv(VAULT_IDS_ENV, f"prod@{material.password}")
    load_inventory(material.inventory(tmp_path / "inventory"))
    assert list(scratch.iterdir()) == []


def test_vault_options_become_the_identity_list(
    material: Material, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(material.password.parent)
    assert vault_environment([f"prod@{material.password.name}"], material.wrong) == {
        VAULT_IDS_ENV: f"prod@{material.password},default@{material.wrong}"
    }
    # What is configured already (here the environment) stays first, as ansible-playbook keeps it.
    monkeypatch.setenv(VAULT_IDS_ENV, "site@/etc/site-vault")
    assert (
        vault_environment([], material.wrong)[VAULT_IDS_ENV]
        == f"site@/etc/site-vault,default@{material.wrong}"
    )
    assert vault_environment([], None) == {}


@pytest.mark.parametrize(
    ("vault_id", "message"),
    [
        ("prod@prompt", "without a terminal, so nobody could answer a prompt"),
        ("prod@/nonexistent/pass", "no such file: /nonexistent/pass"),
    ],
)
def test_vault_ids_that_cannot_work(vault_id: str, message: str) -> None:
    with pytest.raises(VaultError, match=message):
        vault_environment([vault_id], None)


def test_global_options_reach_the_environment(
    material: Material, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tooling --vault-id ...` sets what every Ansible run and load_inventory read (tests above)."""
    monkeypatch.setenv(VAULT_IDS_ENV, "")  # restored after the test; the command line sets it
    home = ["--home", str(tmp_path)]
    result = CliRunner().invoke(app, [*home, "--vault-id", f"prod@{material.password}", "phases", "--json"])
    assert result.exit_code == 0, result.output
    assert os.environ[VAULT_IDS_ENV] == f"prod@{material.password}"
    result = CliRunner().invoke(app, [*home, "--vault-id", "prod@prompt", "phases"])
    assert result.exit_code == 2 and "prompt" in result.output
    assert VAULT_PASSWORD not in result.output
