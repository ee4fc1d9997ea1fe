from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch._dynamo  # noqa: F401  (imported first on purpose: see below)

# Any `import ansible...` replaces sys.intern with a wrapper class, and torch._dynamo, when it is imported
# later in the same process, refuses to register its substitute for sys.intern ("substitute_in_graph expects
# a function"). Tests that read vaulted inventories import Ansible in the test process, and trainer tests
# that build an optimizer import dynamo; which comes first in a worker depends on scheduling. Importing
# dynamo here, before any test, makes the order fixed. (Production processes never hold both: the trainer
# does not import Ansible.)

ROOT = Path(__file__).resolve().parents[1]
# Test-only workloads (tests/fixtures) are imported by trainer subprocesses by import path.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(autouse=True)
def _no_site_state(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets a state root of its own (TOOLING_HOME): nothing the operator or an earlier test
    recorded (deployments, decisions, a production config locked by `tooling sweep --lock`, soaks) can
    change what deploy, local runs and the gate do, and nothing a test writes lands in the user's home.
    Tests that exercise those features point the commands at their own directories."""
    monkeypatch.setenv("TOOLING_HOME", str(tmp_path_factory.mktemp("tooling-home")))
    # No site phases file from the caller's shell, and none left behind by a test: `tooling --phases`
    # and `tooling --home` set os.environ themselves. setenv first so that teardown removes whatever value
    # a test left there.
    monkeypatch.setenv("DDP_PHASES_FILE", "")
    monkeypatch.delenv("DDP_PHASES_FILE", raising=False)
    monkeypatch.delenv("TOOLING_KEEP_ARTIFACTS", raising=False)
