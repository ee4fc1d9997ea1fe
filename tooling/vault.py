"""Ansible-vault for tooling: the secrets Ansible itself would use, and Ansible's own classes to use them.

`--vault-id` and `--vault-password-file` become ANSIBLE_VAULT_IDENTITY_LIST for this process, so every
ansible-runner child (playbooks, ansible-inventory) opens the same vault, and tooling decrypts the few
values it reads itself (tooling.inventory_values) with the same secrets. Only the sources travel (password
files, client scripts), never a password: ansible-runner keeps its child's whole environment in the run's
`command` artifact.

Ansible is imported only when a vault is met, so an inventory without one never loads it here.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ddp.config_errors import ConfigError
from tooling.console import ToolingError
from tooling.home import PROJECT_ROOT

VAULT_IDS_ENV = "ANSIBLE_VAULT_IDENTITY_LIST"
# What ansible-vault writes first in an encrypted file (ansible.parsing.vault.b_HEADER); tested before
# Ansible is imported, so a plain file costs nothing.
VAULT_HEADER = b"$ANSIBLE_VAULT;"
# ansible-runner starts Ansible without a terminal, so a prompt would wait for ever.
_PROMPTS = {"prompt", "prompt_ask_vault_pass"}
_DEFAULT_LABEL = "default"  # Ansible's DEFAULT_VAULT_IDENTITY
_WRONG_SECRET_HINT = "check the password file, and the label of a vault id (--vault-id LABEL@FILE)"
# How `ansible-inventory --list` writes a value it left encrypted.
_LISTED_VAULT_KEY = "__ansible_vault"


class VaultError(ToolingError):
    """A vault secret is missing, unusable or does not open what it should; the message says which."""


def _split(vault_id: str) -> tuple[str, str]:
    """(label, source) of `label@source` or a bare source, as Ansible splits a vault id."""
    label, at, source = vault_id.partition("@")
    return (label or _DEFAULT_LABEL, source) if at else (_DEFAULT_LABEL, vault_id)


def _refuse_prompt(source: str, what: str) -> None:
    if source in _PROMPTS:
        raise VaultError(
            f"{what}: tooling runs Ansible without a terminal, so nobody could answer a prompt",
            hint="give a password file (chmod 600) or a vault password client script with --vault-id",
        )


def _given_id(label: str, source: str, option: str) -> str:
    """`label@source` with the source made absolute (ansible-runner starts its children in the project
    dir); `option` names what the user gave in the errors."""
    _refuse_prompt(source, option)
    if "," in label or "," in source:
        raise VaultError(f"{option}: a vault id cannot hold a comma ({VAULT_IDS_ENV} is a list)")
    path = Path(source).expanduser()
    if not path.is_file():
        raise VaultError(f"{option}: no such file: {path}")
    return f"{label}@{path.resolve()}"


def _configured(ansible_cfg: Path) -> tuple[list[str], str | None]:
    """Ansible's vault_identity_list and vault_password_file, each from the environment or else `ansible_cfg`
    (the file ansible-runner hands its children as ANSIBLE_CONFIG)."""
    from ansible.config.manager import ConfigManager

    config = ConfigManager(str(ansible_cfg))
    ids = [str(v) for v in config.get_config_value("DEFAULT_VAULT_IDENTITY_LIST") or [] if v]
    password_file = config.get_config_value("DEFAULT_VAULT_PASSWORD_FILE")
    return ids, str(password_file) if password_file else None


def configured_sources(ansible_cfg: Path = PROJECT_ROOT / "ansible.cfg") -> list[str]:
    """The vault ids Ansible would use here, its password file last (as the id `default@FILE`)."""
    ids, password_file = _configured(ansible_cfg)
    return ids + ([f"{_DEFAULT_LABEL}@{password_file}"] if password_file else [])


def vault_environment(
    vault_ids: Sequence[str],
    password_file: Path | None,
    ansible_cfg: Path = PROJECT_ROOT / "ansible.cfg",
) -> dict[str, str]:
    """The environment that gives every Ansible run (and tooling) `--vault-id` and `--vault-password-file`.

    Both go into ANSIBLE_VAULT_IDENTITY_LIST (a password file is the vault id `default@FILE`, as
    ansible-playbook treats it), after the ids already configured, which ansible-playbook keeps too.
    """
    given = [_given_id(*_split(v), f"--vault-id {v}") for v in vault_ids]
    if password_file is not None:
        option = f"--vault-password-file {password_file}"
        given.append(_given_id(_DEFAULT_LABEL, str(password_file), option))
    if not given:
        return {}
    configured, _ = _configured(ansible_cfg)
    return {VAULT_IDS_ENV: ",".join(dict.fromkeys([*configured, *given]))}


def listed_ciphertext(value: object) -> str | None:
    """The vault text of a value `ansible-inventory --list` left encrypted (an inline `!vault`), else None."""
    if isinstance(value, dict) and set(value) == {_LISTED_VAULT_KEY}:
        text = value[_LISTED_VAULT_KEY]
        return text if isinstance(text, str) else None
    return None


def is_vaulted(value: object) -> bool:
    """Whether a value read by Ansible's loader (Vault.load_yaml) is an inline `!vault` one."""
    # Only Ansible's loader makes such values, and it has imported the module by then.
    vault_module = sys.modules.get("ansible.parsing.vault")
    return vault_module is not None and isinstance(value, vault_module.EncryptedString)


class Vault:
    """Decrypts with the secrets Ansible would use here, loaded when first needed."""

    def __init__(self, ansible_cfg: Path = PROJECT_ROOT / "ansible.cfg") -> None:
        self._ansible_cfg = ansible_cfg
        self._secrets: list[tuple[str, Any]] | None = None

    def secrets(self) -> list[tuple[str, Any]]:
        """(label, secret) for each configured source, read once; an unusable source is a VaultError."""
        if self._secrets is None:
            from ansible.errors import AnsibleError
            from ansible.parsing.dataloader import DataLoader
            from ansible.parsing.vault import get_file_vault_secret

            secrets = []
            for vault_id in configured_sources(self._ansible_cfg):
                label, source = _split(vault_id)
                _refuse_prompt(source, f"vault id {vault_id}")
                try:
                    secret = get_file_vault_secret(filename=source, vault_id=label, loader=DataLoader())
                    secret.load()
                except AnsibleError as exc:
                    raise VaultError(f"vault id {vault_id}: {exc.message}") from None
                secrets.append((label, secret))
            self._secrets = secrets
        return self._secrets

    def _require_secrets(self, what: str) -> list[tuple[str, Any]]:
        secrets = self.secrets()
        if not secrets:
            raise VaultError(
                f"{what} is vault-encrypted, and no vault secret was given",
                hint="pass --vault-id [LABEL@]FILE or --vault-password-file FILE before the command, "
                "e.g. tooling --vault-password-file ~/.vault-pass deploy ...",
            )
        return secrets

    def decrypt(self, ciphertext: str, what: str) -> str:
        """The plain text of one vaulted value; `what` names it (file, key) in the errors."""
        from ansible.errors import AnsibleError
        from ansible.parsing.vault import VaultLib

        secrets = self._require_secrets(what)
        try:
            plain = VaultLib(secrets).decrypt(ciphertext)
        except AnsibleError as exc:
            raise VaultError(
                f"{what} cannot be decrypted with the given vault secret(s): {exc.message}",
                hint=_WRONG_SECRET_HINT,
            ) from None
        return plain.decode("utf-8")

    def load_yaml(self, file: Path) -> Any:
        """`file` read by Ansible's own loader: decrypted when vault-encrypted, `!vault` values left
        encrypted (is_vaulted), `!unsafe` ones as plain values. ConfigError for a file it cannot parse."""
        from ansible.errors import AnsibleError
        from ansible.parsing.dataloader import DataLoader
        from ansible.parsing.vault import AnsibleVaultError

        loader = DataLoader()
        if file.read_bytes().startswith(VAULT_HEADER):
            loader.set_vault_secrets(self._require_secrets(f"{file} (the whole file)"))
        try:
            return loader.load_from_file(str(file))
        except AnsibleVaultError as exc:
            raise VaultError(
                f"{file} cannot be decrypted with the given vault secret(s): {exc.message}",
                hint=_WRONG_SECRET_HINT,
            ) from None
        except AnsibleError as exc:
            origin = exc.obj
            line = getattr(origin, "line_num", None)
            where = f"line {line}, column {getattr(origin, 'col_num', None) or 1}: " if line else ""
            raise ConfigError(file, [f"{where}{exc.message}"]) from None
