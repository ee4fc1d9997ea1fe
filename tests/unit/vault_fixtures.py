"""Real ansible-vault fixtures for tests: a password file, `!vault` values and vault-encrypted files made
by the ansible-vault command itself, as an operator makes them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ANSIBLE_VAULT = Path(sys.executable).with_name("ansible-vault")
VAULT_PASSWORD = "opal-walrus-tuesday"  # tests look for it in every output and artifact


def password_file(directory: Path, password: str = VAULT_PASSWORD, name: str = "vault-pass") -> Path:
    path = directory / name
    path.write_text(password + "\n")
    path.chmod(0o600)
    return path


def _vault(*args: str) -> str:
    done = subprocess.run(
        [str(ANSIBLE_VAULT), *args], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def vaulted(name: str, value: str, vault_id: str) -> str:
    """`name: !vault |` YAML for `value` (ansible-vault encrypt_string), e.g. vault_id `prod@FILE`."""
    return _vault("encrypt_string", "--vault-id", vault_id, "--name", name, value)


def encrypt_file(path: Path, vault_id: str) -> Path:
    """`path` encrypted in place (ansible-vault encrypt), as a whole group_vars file is kept."""
    _vault("encrypt", "--vault-id", vault_id, str(path))
    assert path.read_text().startswith("$ANSIBLE_VAULT;")
    return path
