"""Which checks each schedule runs, and a site file laid over the package's settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from ddp.config_errors import ConfigError
from tooling.check.probes import CHECK_FUNCTIONS
from tooling.check.schedules import CHECKS, DEFAULT_SETTINGS_FILE, load_settings


def test_every_check_has_a_probe_in_run_order() -> None:
    assert tuple(CHECK_FUNCTIONS) == CHECKS


def test_packaged_schedules() -> None:
    settings = load_settings()
    assert set(settings.schedules) == {"morning", "afternoon", "evening", "nightly"}
    assert settings.select(None) == list(CHECKS)
    assert settings.select("nightly") == list(CHECKS)
    # Run order follows CHECKS, whatever order the file lists them in.
    assert settings.select("morning") == ["job", "ranks", "alerts", "disk"]
    assert "checkpoint" in settings.select("afternoon") and "network" in settings.select("evening")
    covered = {check for checks in settings.schedules.values() for check in checks}
    assert covered == set(CHECKS)
    assert settings.thresholds.balance_warn_ratio == 1.2


def test_unknown_schedule_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown schedule 'noon'; expected one of: morning, afternoon"):
        load_settings().select("noon")


def test_site_file_replaces_adds_and_merges(tmp_path: Path) -> None:
    site = tmp_path / "site.yml"
    site.write_text(
        "schedules:\n"
        "  morning: [disk, job]\n"
        "  shift_change: [ranks, thermal]\n"
        "thresholds:\n"
        "  balance_warn_ratio: 1.1\n"
    )
    settings = load_settings(site)
    assert settings.select("morning") == ["job", "disk"]
    assert settings.select("shift_change") == ["ranks", "thermal"]
    assert settings.select("evening") == load_settings().select("evening")  # untouched schedules stay
    assert settings.thresholds.balance_warn_ratio == 1.1
    assert settings.thresholds.balance_fail_ratio == 1.5  # merged key by key


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("schedules:\n  morning: [job, coffee]\n", "unknown check(s) coffee"),
        ("thresholds:\n  balance_warn: 2\n", "thresholds.balance_warn: unknown key"),
        ("thresholds:\n  disk_free_warn_ratio: 2\n", "thresholds.disk_free_warn_ratio: expected less than 1"),
        (
            "thresholds:\n  balance_warn_ratio: 1.6\n",
            "balance_warn_ratio (1.6) must not exceed balance_fail_ratio",
        ),
        ("schedules:\n  morning: []\n", "lists no check"),
    ],
)
def test_bad_site_files_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    site = tmp_path / "site.yml"
    site.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(site)
    assert str(site) in str(info.value) and message in str(info.value)


def test_missing_site_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yml: file not found"):
        load_settings(tmp_path / "nope.yml")
    assert DEFAULT_SETTINGS_FILE.is_file()
