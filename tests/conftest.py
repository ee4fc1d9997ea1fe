from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import torch._dynamo  # noqa: F401  (imported first on purpose: see below)

# Any `import ansible...` replaces sys.intern with a wrapper class, and torch._dynamo, when it is imported
# later in the same process, refuses to register its substitute for sys.intern ("substitute_in_graph expects
# a function"). Tests that read vaulted inventories import Ansible in the test process, and trainer tests
# that build an optimizer import dynamo; which comes first in a worker depends on scheduling. Importing
# dynamo here, before any test, makes the order fixed. (Production processes never hold both: the trainer
# does not import Ansible.)

ROOT = Path(__file__).resolve().parents[1]
# The shared sandbox cluster's tests (xdist group "cluster", tests/integration/cluster) are the suite's
# critical path: one worker runs them in order, for most of the run, while the other worker takes every other
# test. The other worker runs at this lower CPU priority (nice), and so does whatever it starts (trainer
# processes, Ansible, molecule's containers): when the cluster needs both cores (provisioning, eight ranks
# starting) it gets them, and the other tests take the CPU the cluster leaves idle while it waits on scrapes,
# alerts and timeouts. Every test still runs, only the order in which the kernel serves them changes. The
# lowest priority (19): at 10 the cluster's tests took about 33 min beside the other worker and 30:52 alone
# (on a machine busy with other work), while the other worker had minutes to spare; at 19 the whole suite
# took 29.0 min.
BESIDE_THE_CLUSTER_NICE = 19
CLUSTER_GROUP = "cluster"  # the xdist group of tests/integration/cluster
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


def _cluster_test(item: pytest.Item) -> bool:
    return any(marker.args[:1] == (CLUSTER_GROUP,) for marker in item.iter_markers("xdist_group"))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Under xdist: the cluster's tests at normal priority, every other test at BESIDE_THE_CLUSTER_NICE.
    Each test's worker goes into the JUnit report (scripts/test_durations.py sums the workers' chains)."""
    item.user_properties.append(("worker", os.environ.get("PYTEST_XDIST_WORKER", "main")))
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return
    wanted = 0 if _cluster_test(item) else BESIDE_THE_CLUSTER_NICE
    if os.getpriority(os.PRIO_PROCESS, 0) == wanted:
        return
    # Raising the priority back needs privileges: without them the worker stays where it is.
    with contextlib.suppress(PermissionError):
        os.setpriority(os.PRIO_PROCESS, 0, wanted)


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """Under `--dist loadgroup`: the worker running the cluster's group takes no other test until the
    group is done. xdist's own scheduler hands a worker more work whenever two or fewer of its tests are
    pending, so the cluster's worker took a couple of tests at the start and more during its last two
    tests, each on the suite's critical path (in one run three of test_web_config's, whose module
    fixture then ran on both workers: 88 s)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class ClusterWorkerApart(LoadGroupScheduling):
        def _reschedule(self, node: Any) -> None:
            cluster = self.assigned_work.get(node, {}).get(CLUSTER_GROUP, {})
            if self.workqueue and not all(cluster.values()):
                return  # still running the cluster's tests: the other worker takes the rest
            super()._reschedule(node)

    return ClusterWorkerApart(config, log)
