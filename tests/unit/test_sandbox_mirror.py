from __future__ import annotations

from pathlib import Path

import pytest

from tooling.console import ToolingError
from tooling.sandbox.mirror import detect_mirrors, parse_deb822, parse_one_line, pick_mirrors

HOST_DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example.org/debian-security/
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def _apt_dir(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_deb822_stanzas_are_parsed_and_comments_skipped() -> None:
    sources = parse_deb822(HOST_DEB822, "debian.sources")
    assert [s.uri for s in sources] == [
        "http://mirror.example.org/debian",
        "http://mirror.example.org/debian-security/",
    ]
    assert sources[0].suites == ("bookworm", "bookworm-updates")


def test_deb822_skips_disabled_and_deb_src_and_reads_folded_lines() -> None:
    text = (
        "Types: deb-src\nURIs: http://src.example.org/debian\nSuites: bookworm\n\n"
        "Enabled: no\nTypes: deb\nURIs: http://off.example.org/debian\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://a.example.org/debian\n http://b.example.org/debian\nSuites: bookworm\n"
    )
    assert [s.uri for s in parse_deb822(text, "x")] == [
        "http://a.example.org/debian",
        "http://b.example.org/debian",
    ]


def test_main_and_security_mirrors_come_from_the_host_file(tmp_path: Path) -> None:
    apt = _apt_dir(tmp_path, {"sources.list.d/debian.sources": HOST_DEB822})
    mirrors = detect_mirrors("bookworm", apt_dir=apt)
    assert mirrors.main == "http://mirror.example.org/debian"
    assert mirrors.security == "http://mirror.example.org/debian-security"
    assert mirrors.origin.endswith("debian.sources")
    written = mirrors.deb822("bookworm")
    assert "URIs: http://mirror.example.org/debian\nSuites: bookworm bookworm-updates" in written
    assert "Suites: bookworm-security" in written


def test_one_line_sources_list_is_the_fallback(tmp_path: Path) -> None:
    apt = _apt_dir(
        tmp_path,
        {
            "sources.list": "# comment\n"
            "deb [signed-by=/k.gpg arch=amd64] http://old.example.org/debian bookworm main\n"
            "deb http://old.example.org/debian-security bookworm-security main\n"
        },
    )
    mirrors = detect_mirrors("bookworm", apt_dir=apt)
    assert (mirrors.main, mirrors.security) == (
        "http://old.example.org/debian",
        "http://old.example.org/debian-security",
    )


def test_one_line_parser_keeps_components() -> None:
    [source] = parse_one_line("deb http://x/debian bookworm main contrib  # tail", "f")
    assert source.components == ("main", "contrib")


def test_override_wins_over_the_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DDP_SANDBOX_MIRROR", raising=False)
    apt = _apt_dir(tmp_path, {"sources.list.d/debian.sources": HOST_DEB822})
    mirrors = detect_mirrors("bookworm", "http://local/debian/", apt_dir=apt)
    assert mirrors.main == "http://local/debian"
    assert mirrors.origin == "the --mirror option"
    monkeypatch.setenv("DDP_SANDBOX_MIRROR", "http://env/debian")
    assert detect_mirrors("bookworm", apt_dir=apt).main == "http://env/debian"


def test_a_host_without_a_debian_mirror_gets_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DDP_SANDBOX_MIRROR", raising=False)
    apt = _apt_dir(tmp_path, {"sources.list": "deb http://archive.ubuntu.com/ubuntu jammy main\n"})
    with pytest.raises(ToolingError) as err:
        detect_mirrors("bookworm", apt_dir=apt)
    assert "no Debian mirror" in str(err.value)
    assert err.value.hint and "--mirror" in err.value.hint


def test_the_entry_naming_the_suite_is_preferred() -> None:
    sources = parse_one_line("deb http://a/debian trixie main\ndeb http://b/debian bookworm main\n", "f")
    mirrors = pick_mirrors(sources, "bookworm")
    assert mirrors is not None and mirrors.main == "http://b/debian"
