"""Which Debian mirror the node image uses: the host's own apt configuration, never a hard-coded URL.

Order: an explicit override (option or DDP_SANDBOX_MIRROR), then the host's deb822
`/etc/apt/sources.list.d/debian.sources`, then the one-line `/etc/apt/sources.list`, then any other
file in sources.list.d. Air-gapped sites point their hosts at a local mirror; the nodes follow.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tooling.console import ToolingError

APT_DIR = Path("/etc/apt")
MIRROR_ENV = "DDP_SANDBOX_MIRROR"
SECURITY_MIRROR_ENV = "DDP_SANDBOX_SECURITY_MIRROR"


@dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    origin: str  # the file it came from, for messages


@dataclass(frozen=True)
class Mirrors:
    main: str
    security: str | None
    origin: str

    def deb822(self, suite: str) -> str:
        """The node's /etc/apt/sources.list.d/debian.sources."""
        keyring = "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        text = (
            f"# Written by tooling sandbox from {self.origin}\n"
            f"Types: deb\nURIs: {self.main}\nSuites: {suite} {suite}-updates\nComponents: main\n{keyring}"
        )
        if self.security:
            text += (
                f"\nTypes: deb\nURIs: {self.security}\nSuites: {suite}-security\nComponents: main\n{keyring}"
            )
        return text


def parse_deb822(text: str, origin: str) -> list[AptSource]:
    """Stanzas are separated by blank lines; `#` lines are comments; only `Types: deb` matters here."""
    sources: list[AptSource] = []
    for stanza in _stanzas(text):
        if stanza.get("enabled", "yes").lower() == "no":
            continue
        if "deb" not in stanza.get("types", "").split():
            continue
        suites = tuple(stanza.get("suites", "").split())
        components = tuple(stanza.get("components", "").split())
        sources.extend(AptSource(uri, suites, components, origin) for uri in stanza.get("uris", "").split())
    return sources


def _stanzas(text: str) -> list[dict[str, str]]:
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last_key: str | None = None
    for raw in [*text.splitlines(), ""]:
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if current:
                stanzas.append(current)
            current, last_key = {}, None
            continue
        if raw[0] in " \t" and last_key:  # folded continuation line
            current[last_key] += " " + raw.strip()
            continue
        key, sep, value = raw.partition(":")
        if sep:
            last_key = key.strip().lower()
            current[last_key] = value.strip()
    return stanzas


def parse_one_line(text: str, origin: str) -> list[AptSource]:
    """`deb [options] URI suite component...` lines of a classic sources.list."""
    sources: list[AptSource] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        rest = line[4:].strip()
        if rest.startswith("["):
            rest = rest.partition("]")[2].strip()
        parts = rest.split()
        if len(parts) >= 2:
            sources.append(AptSource(parts[0], (parts[1],), tuple(parts[2:]), origin))
    return sources


def _is_debian(source: AptSource) -> bool:
    # Ubuntu or third-party repositories on the host cannot serve a Debian rootfs.
    return "debian" in source.uri.lower()


def pick_mirrors(sources: list[AptSource], suite: str) -> Mirrors | None:
    main = security = None
    for source in sources:
        if not _is_debian(source):
            continue
        if any(s.endswith("-security") or s.endswith("/updates") for s in source.suites):
            security = security or source
        elif main is None or (suite in source.suites and suite not in main.suites):
            main = source
    if main is None:
        return None
    return Mirrors(main.uri.rstrip("/"), security.uri.rstrip("/") if security else None, main.origin)


def _host_sources(apt_dir: Path) -> list[AptSource]:
    ordered: list[AptSource] = []
    listd = apt_dir / "sources.list.d"
    first = [listd / "debian.sources", apt_dir / "sources.list"]
    rest = sorted(p for p in listd.glob("*") if p not in first) if listd.is_dir() else []
    for path in [*first, *rest]:
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if path.suffix == ".sources":
            ordered += parse_deb822(text, str(path))
        elif path.suffix == ".list" or path.name == "sources.list":
            ordered += parse_one_line(text, str(path))
    return ordered


def detect_mirrors(suite: str, override: str | None = None, apt_dir: Path = APT_DIR) -> Mirrors:
    origin = "the --mirror option" if override else MIRROR_ENV
    override = override or os.environ.get(MIRROR_ENV)
    host = pick_mirrors(_host_sources(apt_dir), suite)
    if override:
        security = os.environ.get(SECURITY_MIRROR_ENV) or (host.security if host else None)
        return Mirrors(override.rstrip("/"), security, origin)
    if host is None:
        raise ToolingError(
            f"no Debian mirror found in {apt_dir}/sources.list.d/debian.sources or {apt_dir}/sources.list",
            hint=f"pass --mirror URL (or set {MIRROR_ENV}), e.g. your site's Debian mirror",
        )
    return host
