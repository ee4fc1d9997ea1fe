from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Test-only workloads (tests/fixtures) are imported by trainer subprocesses by import path.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(autouse=True)
def _no_site_state(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep tests away from the checkout's own operational state: a production config locked by `tooling
    sweep --lock` or soak records under runs/ would otherwise change what deploy, local runs and the gate do.
    Tests that exercise those features point them at their own directories."""
    state = tmp_path_factory.mktemp("site-state")
    monkeypatch.setattr("tooling.sweep.production.PRODUCTION_DIR", state / "production")
    monkeypatch.setenv("TOOLING_SOAK_DIR", str(state / "soak"))
    # No site phases file from the caller's shell, and none left behind by a test: `tooling --phases`
    # sets os.environ itself. setenv first so that teardown removes whatever value a test left there.
    monkeypatch.setenv("DDP_PHASES_FILE", "")
    monkeypatch.delenv("DDP_PHASES_FILE", raising=False)
