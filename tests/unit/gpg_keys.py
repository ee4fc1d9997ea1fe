"""Throw-away OpenPGP keys for the tests of the repository signing-key checks (package_source signing_key):
made with the machine's gpg in a private GNUPGHOME, exported ASCII-armored as vendors publish theirs."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class ThrowawayKey:
    fingerprint: str
    path: Path

    @property
    def url(self) -> str:
        return f"file://{self.path}"


def _gpg(home: Path, *args: str) -> str:
    proc = subprocess.run(
        ["gpg", "--batch", "--quiet", *args],
        env={**os.environ, "GNUPGHOME": str(home)},
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout


def make_keys(directory: Path, *names: str) -> dict[str, ThrowawayKey]:
    """One signing-only ed25519 key per name, each exported to <directory>/<name>.asc."""
    if shutil.which("gpg") is None:
        pytest.skip("gpg is not installed (the Debian package gpg)")
    home = directory / "gnupg"
    home.mkdir(mode=0o700, parents=True)
    try:
        return {name: _make_key(home, directory, name) for name in names}
    finally:
        # Making a secret key starts a gpg-agent for this GNUPGHOME that outlives the test otherwise.
        subprocess.run(
            ["gpgconf", "--kill", "gpg-agent"],
            env={**os.environ, "GNUPGHOME": str(home)},
            capture_output=True,
            check=False,
        )


def _make_key(home: Path, directory: Path, name: str) -> ThrowawayKey:
    _gpg(
        home,
        "--passphrase",
        "",
        "--quick-gen-key",
        f"{name} <{name}@example.invalid>",
        "ed25519",
        "sign",
        "never",
    )
    listing = _gpg(home, "--with-colons", "--fingerprint", f"{name}@example.invalid")
    fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    path = directory / f"{name}.asc"
    path.write_text(_gpg(home, "--armor", "--export", fingerprint))
    return ThrowawayKey(fingerprint, path)
