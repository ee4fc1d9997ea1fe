"""A pip requirements file that pins every wheel of a wheelhouse by its sha256, for `pip install
--require-hashes`: a wheel changed between the control machine and the node (or on the node) is refused.

    {{ (find_result.files) | wheel_requirements }}
    {{ (find_result.files) | wheel_requirements(pins={'torch': pytorch_version}) }}

The input is `ansible.builtin.find`'s file list taken with `get_checksum: true, checksum_algorithm:
sha256` (each item has `path` and `checksum`). One line per project, `name==version --hash=sha256:...`, with
one hash per wheel of that version (builds for several platforms). Where the wheelhouse holds several versions
of a project, the pinned one (`pins`, by project name) or else the newest is listed, as pip itself would pick
from `--find-links`; the others can then not be installed.

Registered through ansible.cfg's `filter_plugins` (and ANSIBLE_FILTER_PLUGINS where molecule or a test runs
Ansible with another configuration).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import PurePath
from typing import Any

from ansible.errors import AnsibleFilterError
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _wheels(files: Iterable[Mapping[str, Any]]) -> dict[str, dict[Version, list[tuple[str, str]]]]:
    """project -> version -> [(file name, sha256)]"""
    found: dict[str, dict[Version, list[tuple[str, str]]]] = {}
    for item in files:
        name = PurePath(str(item.get("path", ""))).name
        checksum = str(item.get("checksum", "")).lower()
        if not _SHA256.match(checksum):
            raise AnsibleFilterError(
                f"wheel_requirements: {name or item!r} has no sha256 (got {checksum!r}); "
                "list the wheelhouse with get_checksum: true and checksum_algorithm: sha256"
            )
        try:
            project, version, _, _ = parse_wheel_filename(name)
        except InvalidWheelFilename as exc:
            raise AnsibleFilterError(f"wheel_requirements: {name} is not a wheel file name: {exc}") from None
        found.setdefault(project, {}).setdefault(version, []).append((name, checksum))
    return found


def wheel_requirements(files: Iterable[Mapping[str, Any]], pins: Mapping[str, str] | None = None) -> str:
    pinned: dict[str, Version] = {
        canonicalize_name(name): Version(str(version)) for name, version in (pins or {}).items()
    }
    lines = []
    for project, versions in sorted(_wheels(files).items()):
        wanted = pinned.get(project)
        # A pin matches a local build too (torch 2.13.0 is the wheel 2.13.0+cpu).
        chosen = [v for v in versions if wanted is not None and (v == wanted or v.public == str(wanted))]
        version = max(chosen or versions)
        hashes = sorted({checksum for _, checksum in versions[version]})
        lines.append(f"{project}=={version} " + " ".join(f"--hash=sha256:{h}" for h in hashes))
    return "\n".join(lines) + ("\n" if lines else "")


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"wheel_requirements": wheel_requirements}
