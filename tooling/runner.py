"""Run a playbook through ansible-runner and hand back a typed result.

One private data dir per run under a caller-chosen runs directory (kept: its artifacts are the post-mortem),
a live per-host progress fed by the event handler, and a result that says per host what was ok, changed,
failed or unreachable and why. Nothing here shells out to ansible-playbook: ansible-runner does, and gives
us structured events instead of text to scrape.
"""

from __future__ import annotations

import configparser
import datetime as dt
import hashlib
import logging
import os
import shlex
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast, get_args

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn

from tooling.home import PROJECT_ROOT, rotate_artifacts
from tooling.plan.phase_file import site_phases_file

log = logging.getLogger(__name__)


RunStatus = Literal["successful", "failed", "timeout", "canceled", "error", "unstarted"]

# Ansible's own exit codes (lib/ansible/cli and TaskQueueManager); used only to phrase explanations.
_RC_MEANING = {
    1: "ansible-playbook reported an error",
    2: "one or more hosts failed",
    3: "one or more hosts were unreachable",
    4: "one or more hosts were unreachable (or the playbook could not be parsed)",
    5: "bad or incomplete command-line options",
    8: "a host failure stopped the play",
    99: "interrupted by the user",
    250: "unexpected error inside ansible-playbook",
}

# ansible-runner points the jsonfile fact cache into each run's artifact dir unless the cache type is
# something other than "jsonfile"; any other value leaves ansible.cfg's shared cache in charge, which the
# roles need (a `-l phase2a` run reads facts a `-l phase1` run cached).
_KEEP_PROJECT_FACT_CACHE = "ansible.cfg"

_HOST_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_unreachable": "unreachable",
    "runner_on_skipped": "skipped",
}


@dataclass
class HostStats:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0


@dataclass(frozen=True)
class HostFailure:
    host: str
    task: str
    message: str
    ignored: bool = False


@dataclass
class RunResult:
    rc: int
    status: RunStatus
    explanation: str
    artifact_dir: Path
    private_data_dir: Path
    stats: dict[str, HostStats] = field(default_factory=dict)
    failures: list[HostFailure] = field(default_factory=list)
    unreachable: dict[str, str] = field(default_factory=dict)
    # `set_stats` data (per_host: false), as the playbook_on_stats event carries it.
    custom_stats: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "successful"

    def task_results(self, task_name: str) -> dict[str, dict[str, Any]]:
        """Host -> module result (`res`) of the task called `task_name`, for hosts where it finished.

        A failed-but-ignored run of the task counts too: verification records failures as data.
        """
        found: dict[str, dict[str, Any]] = {}
        for event in self.events:
            if event.get("event") not in ("runner_on_ok", "runner_on_failed"):
                continue
            data = event.get("event_data", {})
            if data.get("task") == task_name and "host" in data:
                found[str(data["host"])] = dict(data.get("res") or {})
        return found

    def hard_failures(self) -> list[HostFailure]:
        return [f for f in self.failures if not f.ignored]

    def published(self, key: str) -> dict[str, Any]:
        """What the playbook published under `key` with `set_stats` (per_host: false); {} when nothing."""
        value = self.custom_stats.get(key)
        return dict(value) if isinstance(value, Mapping) else {}


def failure_message(res: Mapping[str, Any]) -> str:
    """One line a person can act on from a module result: its msg plus the end of stderr."""
    if "results" in res and isinstance(res["results"], list):
        failed = [r for r in res["results"] if isinstance(r, Mapping) and r.get("failed")]
        if failed:
            return "; ".join(failure_message(r) for r in failed[:3])
    msg = str(res.get("msg") or res.get("reason") or "").strip()
    # ansible-core 2.19 prefixes connection errors with this; the reason after it is what matters.
    msg = msg.removeprefix("Task failed: ")
    stderr = str(res.get("stderr") or res.get("module_stderr") or "").strip()
    tail = stderr.splitlines()[-1].strip() if stderr else ""
    if tail and tail not in msg:
        msg = f"{msg}: {tail}" if msg else tail
    if not msg and "rc" in res:
        msg = f"exit status {res['rc']}"
    return msg or "failed without a message"


class EventCollector:
    """Folds ansible-runner events into per-host counts, failures and the task each host is on.

    Kept free of any display so the accounting is testable; `RunProgress` draws from it.
    """

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.stats: dict[str, HostStats] = {}
        self.current_task: dict[str, str] = {}
        self.failures: list[HostFailure] = []
        self.unreachable: dict[str, str] = {}
        self.final_stats: dict[str, Any] | None = None

    def _host(self, host: str) -> HostStats:
        return self.stats.setdefault(host, HostStats())

    def feed(self, event: dict[str, Any]) -> str | None:
        """Record one event; returns the host it concerned, if any."""
        self.events.append(event)
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        if kind == "playbook_on_stats":
            self.final_stats = data
            return None
        host = data.get("host")
        if not host:
            return None
        host = str(host)
        task = str(data.get("task") or "")
        stats = self._host(host)
        if kind == "runner_on_start":
            self.current_task[host] = task
        elif kind in _HOST_EVENTS:
            res = data.get("res") or {}
            outcome = _HOST_EVENTS[kind]
            if outcome == "ok":
                stats.ok += 1
                stats.changed += bool(res.get("changed"))
            elif outcome == "failed":
                ignored = bool(data.get("ignore_errors"))
                if ignored:
                    stats.ignored += 1
                else:
                    stats.failed += 1
                self.failures.append(HostFailure(host, task, failure_message(res), ignored=ignored))
            elif outcome == "unreachable":
                stats.unreachable += 1
                self.unreachable.setdefault(host, failure_message(res))
            else:
                stats.skipped += 1
        return host

    def host_stats(self) -> dict[str, HostStats]:
        """Ansible's final recap when the run got that far (authoritative), else the counts seen so far."""
        if self.final_stats is None:
            return self.stats
        recap: dict[str, HostStats] = {}
        columns = {
            "ok": "ok",
            "changed": "changed",
            "failures": "failed",
            "dark": "unreachable",
            "skipped": "skipped",
            "rescued": "rescued",
            "ignored": "ignored",
        }
        for key, attr in columns.items():
            for host, count in (self.final_stats.get(key) or {}).items():
                setattr(recap.setdefault(str(host), HostStats()), attr, int(count))
        # Hosts that only ever produced events (e.g. unreachable before the recap counted them).
        for host, stats in self.stats.items():
            recap.setdefault(host, stats)
        return recap

    def events_with_hosts(self) -> bool:
        return any((e.get("event_data") or {}).get("host") for e in self.events)

    def custom_stats(self) -> dict[str, Any]:
        if self.final_stats is None:
            return {}
        return dict(self.final_stats.get("artifact_data") or {})


class RunProgress:
    """A live line per host: its current task and ok/changed/failed/unreachable counts."""

    def __init__(self, console: Console, title: str) -> None:
        self._progress = Progress(
            SpinnerColumn(finished_text="[green]done"),
            TextColumn("[bold]{task.fields[host]:<14}"),
            TextColumn("{task.fields[counts]}"),
            TextColumn("[dim]{task.description}"),
            console=console,
            transient=False,
        )
        self._rows: dict[str, TaskID] = {}
        self._title = title

    def __enter__(self) -> RunProgress:
        self._progress.console.print(f"[bold]{self._title}")
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for row in self._rows.values():
            self._progress.update(row, total=1, completed=1)
        self._progress.stop()

    def update(self, host: str, collector: EventCollector) -> None:
        s = collector.stats.get(host, HostStats())
        counts = (
            f"ok={s.ok} [yellow]changed={s.changed}[/] "
            f"[red]failed={s.failed}[/] [magenta]unreachable={s.unreachable}[/] skipped={s.skipped}"
        )
        task = collector.current_task.get(host, "")
        if host not in self._rows:
            self._rows[host] = self._progress.add_task(task, total=None, host=host, counts=counts)
        else:
            self._progress.update(self._rows[host], description=task, counts=counts)


def _ansible_cfg(path: Path) -> configparser.ConfigParser:
    """The project's ansible.cfg; empty (Ansible's defaults) where it is missing or cannot be parsed."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error:
        return configparser.ConfigParser(interpolation=None)
    return parser


def _host_key_checking(ansible_cfg: Path) -> str:
    # ansible-runner exports ANSIBLE_HOST_KEY_CHECKING=False unless it is already set, which would silently
    # override the project's ansible.cfg; carry the cfg's own answer (Ansible's default: on).
    try:
        value = _ansible_cfg(ansible_cfg).getboolean("defaults", "host_key_checking", fallback=True)
    except ValueError:
        value = True
    return "True" if value else "False"


def fact_cache_dir(project: Path, inventory: Path) -> Path:
    """Where a run against `inventory` caches its hosts' facts.

    The jsonfile cache is keyed by host name alone. Two clusters driven from one checkout with the same
    host names (node1, ... in a test cluster, a rehearsal sandbox and the site) would read each other's
    facts, and `gathering = smart` does not refresh them for `fact_caching_timeout`. ansible.cfg's default
    inventory keeps ansible.cfg's cache, the one a hand-run `ansible-playbook site.yml` shares; every other
    inventory gets a cache of its own next to it, named after the inventory's resolved path."""
    parser = _ansible_cfg(project / "ansible.cfg")
    shared = project / parser.get("defaults", "fact_caching_connection", fallback=".ansible/facts")
    default_inventory = parser.get("defaults", "inventory", fallback="")
    if default_inventory and (project / default_inventory).resolve() == inventory.resolve():
        return shared
    key = hashlib.sha256(str(inventory.resolve()).encode()).hexdigest()[:12]
    return shared.parent / f"{shared.name}-by-inventory" / f"{inventory.resolve().name}-{key}"


def explain(status: str, rc: int, collector: EventCollector, stdout_tail: str, timeout: int | None) -> str:
    """Why the run ended as it did, in words, from runner's status, the rc and what the events showed."""
    if status == "successful":
        return "playbook finished without failures"
    if status == "timeout":
        return f"the run was stopped after the {timeout} s time limit" if timeout else "the run timed out"
    if status == "canceled":
        return "the run was canceled (interrupted) before it finished"
    parts: list[str] = []
    hard = [f for f in collector.failures if not f.ignored]
    if collector.unreachable:
        hosts = ", ".join(sorted(collector.unreachable))
        parts.append(f"unreachable: {hosts}")
    if hard:
        hosts = ", ".join(sorted({f.host for f in hard}))
        parts.append(f"failed on: {hosts}")
    if collector.final_stats is None and not collector.events_with_hosts():
        detail = stdout_tail.strip() or "no output"
        parts.append(f"ansible-playbook stopped before running any task: {detail}")
    meaning = _RC_MEANING.get(rc, f"exit status {rc}")
    if rc == 4 and collector.unreachable:
        meaning = "one or more hosts were unreachable"
    if status == "error":
        meaning = f"ansible-runner could not run the playbook ({meaning})"
    return f"{meaning}" + (f"; {'; '.join(parts)}" if parts else "")


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    kept = [line for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def path_with_ansible() -> str:
    """PATH for the child, with this interpreter's bin dir first when ansible-playbook lives there.

    `tooling` is often run as .venv/bin/tooling without activating the venv; ansible-runner looks
    ansible-playbook up on PATH.
    """
    current = os.environ.get("PATH", os.defpath)
    bindir = Path(sys.executable).parent
    if (bindir / "ansible-playbook").exists() and str(bindir) not in current.split(os.pathsep):
        return f"{bindir}{os.pathsep}{current}"
    return current


def _new_ident(label: str) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    return f"{stamp}-{label}"


def run_playbook(
    playbook: str | Path,
    *,
    inventory: str | Path,
    runs_dir: str | Path,
    limit: str | Iterable[str] | None = None,
    extravars: Mapping[str, Any] | None = None,
    cmdline: str | None = None,
    tags: str | None = None,
    check: bool = False,
    diff: bool = False,
    timeout: int | None = None,
    forks: int | None = None,
    project_dir: str | Path = PROJECT_ROOT,
    label: str = "run",
    console: Console | None = None,
    progress: bool = True,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> RunResult:
    """Run `playbook` (relative to `project_dir` or absolute) and return what happened on every host.

    `runs_dir/<timestamp>-<label>/` is the private data dir; it is kept. Raises FileNotFoundError for a
    missing playbook or inventory (ansible-runner would otherwise treat an unknown inventory path as the
    text of an inventory and run against a host named after the path). `check` and `diff` are
    ansible-playbook's --check and --diff: what would change, each file's before and after.

    With DDP_PHASES_FILE set, that site phases file is validated first (ConfigError when it is wrong, before
    Ansible starts) and passed as `-e @<absolute path>`: extra vars beat the playbooks' vars_files, so
    `phases`, `rendezvous` and `metrics` come from it; `extravars` are passed after it and still win.
    """
    project = Path(project_dir).resolve()
    book = Path(playbook)
    book_path = book if book.is_absolute() else project / book
    if not book_path.is_file():
        raise FileNotFoundError(f"playbook not found: {book_path}")
    inventory_path = Path(inventory).resolve()
    if not inventory_path.exists():
        raise FileNotFoundError(f"inventory not found: {inventory_path}")
    site_phases = site_phases_file()
    if site_phases is not None:
        # Imported here: the plan's schema (pydantic) is only needed on this path, and the inventory
        # helpers that import this module are read by `--help` screens.
        from tooling.plan.phases import load_phases

        load_phases()  # the same file; a bad plan stops here, named, instead of half-way through a play

    rotate_artifacts(Path(runs_dir).resolve())  # keep the last TOOLING_KEEP_ARTIFACTS runs' artifacts
    private_data_dir = Path(runs_dir).resolve() / _new_ident(label)
    private_data_dir.mkdir(parents=True, exist_ok=False)
    ansible_cfg = project / "ansible.cfg"
    envvars = {
        "ANSIBLE_CONFIG": str(ansible_cfg),
        "ANSIBLE_ROLES_PATH": str(project / "roles"),
        "ANSIBLE_HOST_KEY_CHECKING": _host_key_checking(ansible_cfg),
        "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(fact_cache_dir(project, inventory_path)),
        "PATH": path_with_ansible(),
        # Counts and results come from events; keep ansible's own stdout free of colour codes for the
        # artifact file a person reads after a failure.
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
    }
    if limit is not None and not isinstance(limit, str):
        limit = ",".join(limit)
    phases_vars = f"-e {shlex.quote('@' + str(site_phases))}" if site_phases is not None else None
    # ansible-runner puts cmdline before its own `-e` of `extravars`, so the caller's extravars win.
    modes = ("--check" if check else None, "--diff" if diff else None)
    extra_cmdline = " ".join(part for part in (phases_vars, cmdline, *modes) if part)

    collector = EventCollector()
    out = console or Console(stderr=True)
    display = RunProgress(
        out, f"{label}: {book_path.relative_to(project) if book_path.is_relative_to(project) else book_path}"
    )

    def event_handler(event: dict[str, Any]) -> bool:
        host = collector.feed(event)
        if host is not None and progress:
            display.update(host, collector)
        if on_event is not None:
            on_event(event)
        return True  # keep the event on disk (job_events/) for post-mortems

    def status_handler(status: Mapping[str, Any], runner_config: object = None) -> None:
        # The 'starting' payload carries the whole environment of the run (tokens, vault passwords in env
        # vars...): log only the state, never the payload.
        log.debug("ansible-runner %s: %s", status.get("runner_ident"), status.get("status"))

    kwargs: dict[str, Any] = {
        "private_data_dir": str(private_data_dir),
        # artifacts/<label>/ inside a data dir that already carries the timestamp.
        "ident": label,
        "project_dir": str(project),
        "playbook": str(book_path),
        "inventory": str(inventory_path),
        "envvars": envvars,
        "extravars": dict(extravars or {}),
        "quiet": True,
        "event_handler": event_handler,
        "status_handler": status_handler,
        "fact_cache_type": _KEEP_PROJECT_FACT_CACHE,
        # Otherwise extravars/envvars are also written as env/ files and kept with the run; keep secrets in
        # vault files the playbook reads rather than in extravars.
        "suppress_env_files": True,
    }
    if limit:
        kwargs["limit"] = limit
    if extra_cmdline:
        kwargs["cmdline"] = extra_cmdline
    if tags:
        kwargs["tags"] = tags
    if timeout:
        kwargs["timeout"] = timeout
    if forks:
        kwargs["forks"] = forks

    # Imported here, not at the top: ansible-runner costs most of a second to import and every command's
    # --help would pay for it. Looked up on the module at each call so tests can patch ansible_runner.run.
    import ansible_runner
    from ansible_runner.exceptions import AnsibleRunnerException

    try:
        if progress:
            with display:
                runner = ansible_runner.run(**kwargs)
        else:
            runner = ansible_runner.run(**kwargs)
    except AnsibleRunnerException as exc:
        # e.g. ansible-playbook not installed: no events, nothing ran; say so instead of a traceback.
        return RunResult(
            rc=254,
            status="error",
            explanation=f"ansible-runner could not start the playbook: {exc}",
            artifact_dir=private_data_dir / "artifacts" / label,
            private_data_dir=private_data_dir,
        )

    status = str(runner.status)
    rc = int(runner.rc) if runner.rc is not None else 254
    artifact_dir = Path(runner.config.artifact_dir)
    explanation = explain(status, rc, collector, _tail(artifact_dir / "stdout"), timeout)
    return RunResult(
        rc=rc,
        status=cast(RunStatus, status if status in get_args(RunStatus) else "error"),
        explanation=explanation,
        artifact_dir=artifact_dir,
        private_data_dir=private_data_dir,
        stats=collector.host_stats(),
        failures=list(collector.failures),
        unreachable=dict(collector.unreachable),
        custom_stats=collector.custom_stats(),
        events=collector.events,
    )


# ansible-inventory with no fact cache to read (the in-memory one starts empty) and no facts as variables.
LISTING_WITHOUT_FACTS = {"ANSIBLE_CACHE_PLUGIN": "memory", "ANSIBLE_INJECT_FACT_VARS": "False"}
_PROMOTED_FACT = "ansible_local"


class InventoryListing:
    """`ansible-inventory --list` of `inventory`, running while the caller does other work: result() waits
    for it and gives groups, their hosts and hostvars as a dict; cancel() stops it. `environment` is added
    to ansible-inventory's (tooling.inventory_plugins).

    ansible-inventory writes its listing to a file read here in one go: through ansible-runner each line
    of it became an event, a JSON file and a callback, most of the cost at a thousand hosts. The vault
    secrets configured for this process (tooling.vault) apply, so a vault-encrypted vars file is listed
    decrypted; the listing therefore goes to a temporary directory, removed when the listing is read or
    cancelled.

    The listing is of the inventory alone: Ansible would add each host's cached facts from the last
    playbook run (ansible.cfg's fact cache) to its hostvars, and clean them per host even where there are
    none, a fifth of the listing at a thousand hosts. Nothing tooling reads is a fact, and a stale fact
    must not pass for an inventory value, so the listing reads no fact cache (LISTING_WITHOUT_FACTS).
    """

    def __init__(
        self,
        inventory: str | Path,
        project_dir: str | Path = PROJECT_ROOT,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        import shutil
        import subprocess

        self.inventory = Path(inventory).resolve()
        if not self.inventory.exists():
            raise FileNotFoundError(f"inventory not found: {self.inventory}")
        project = Path(project_dir).resolve()
        path = path_with_ansible()
        env = {
            **os.environ,
            **(environment or {}),
            **LISTING_WITHOUT_FACTS,
            "ANSIBLE_CONFIG": str(project / "ansible.cfg"),
            "PATH": path,
        }
        self._scratch = tempfile.TemporaryDirectory(prefix="tooling-inventory-")
        self._listing = Path(self._scratch.name) / "inventory.json"
        program = shutil.which("ansible-inventory", path=path) or "ansible-inventory"
        argv = [program, "-i", str(self.inventory), "--list", "--output", str(self._listing)]
        try:
            self._process = subprocess.Popen(
                argv, env=env, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        except OSError as exc:
            self._scratch.cleanup()
            raise ValueError(f"cannot read inventory {self.inventory}: ansible-inventory: {exc}") from None

    def result(self) -> dict[str, Any]:
        import json

        try:
            stdout, stderr = self._process.communicate()
            try:
                data = json.loads(self._listing.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                why = (stderr or stdout or f"ansible-inventory exited {self._process.returncode}").strip()
                raise ValueError(f"cannot read inventory {self.inventory}: {why}") from None
        finally:
            self._scratch.cleanup()
        if not isinstance(data, dict):
            raise ValueError(f"cannot read inventory {self.inventory}: unexpected output")
        for host_vars in (data.get("_meta") or {}).get("hostvars", {}).values():
            # Without facts as variables Ansible still gives every host the facts' `ansible_local`, empty.
            if isinstance(host_vars, dict) and host_vars.get(_PROMOTED_FACT) == {}:
                del host_vars[_PROMOTED_FACT]
        return data

    def cancel(self) -> None:
        self._process.kill()
        self._process.communicate()
        self._scratch.cleanup()


def get_inventory(
    inventory: str | Path,
    project_dir: str | Path = PROJECT_ROOT,
    environment: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """`ansible-inventory --list` of `inventory` (InventoryListing), waited for."""
    return InventoryListing(inventory, project_dir, environment).result()
