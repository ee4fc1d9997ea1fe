"""playbooks/plan.yml worked out in this process, in one pass: the same `ddp_plan` the play publishes (the
phase's launch, the run id, each node's launcher and files), without Ansible's per-host task machinery.

The play and role ddp_trainer's tasks stay the only description of what is computed: their YAML is read,
and the few kinds of task the plan uses are carried out as Ansible's linear strategy carries them out, in
the play's host order: set_fact and assert (run_once: on the first host; the fact then holds for every
host), meta end_host, set_stats (aggregated as Ansible aggregates), task vars and `when`. Values come
from tooling.job.play_vars in Ansible's precedence and are rendered by tooling.job.ansible_jinja; each
template file is compiled once for all nodes. The launch comes from the function the role's `ddp_launch`
filter calls (tooling.plan.role_launch), evaluated once, as tasks/phase.yml evaluates it.

Anything else (another kind of task or keyword, variables next to the playbook, a role found elsewhere,
an inventory whose values Ansible may not template, a value not mirrored) raises NotExact saying where and
why: the caller then runs the play itself. A task that fails as it fails under Ansible (the run id's
check, the launch's own refusal) raises TaskFailed with the task's message.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import pwd
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jinja2 import pass_context

from ddp.config_errors import ConfigError
from tooling.inventory import inventory_sources
from tooling.inventory_plugins import may_configure_a_plugin
from tooling.job.ansible_jinja import AnsibleJinja, NotExact, Refused, finalized, looks_like_template
from tooling.job.play_vars import Hostvars, HostView, Layer, Templating
from tooling.plan.launch import LaunchError, ansible_groups, run_root
from tooling.plan.phase_file import site_phases_file
from tooling.plan.role_launch import plain, role_launch
from tooling.runner import PROJECT_ROOT

PLAYBOOK = "playbooks/plan.yml"
BUILTIN = "ansible.builtin."
PLAY_KEYS = {"name", "hosts", "gather_facts", "vars_files", "tasks"}
TASK_KEYWORDS = {"name", "run_once", "when", "vars"}
ACTIONS = {"set_fact", "assert", "meta", "set_stats", "import_tasks"}
ASSERT_ARGS = {"that", "fail_msg", "msg", "success_msg", "quiet"}
# Where else Ansible would find variables or the role for this play: none of it is read here.
UNREAD_PLACES = ("group_vars", "host_vars")
# Limits other than `group:!host:!host` (patterns, unions, intersections, IPv6 names) are Ansible's.
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
# Ansible's `ansible_managed` placeholders, as _generate_ansible_managed fills them before strftime.
_MANAGED_FIELDS = {"host": "{{ template_host }}", "uid": "{{ template_uid }}", "file": "{{ template_path }}"}


class TaskFailed(Exception):
    """A task of the plan failed as it fails under Ansible: its host, name and message."""

    def __init__(self, host: str, task: str, message: str) -> None:
        super().__init__(f"{host}: {task}: {message}")
        self.host, self.task, self.message = host, task, message


class _AssertionFailed(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:  # Ansible's own tags (!vault, !unsafe) included
        raise NotExact(f"{path}: not read here: {exc}") from None


def _vars_file(path: Path, source: str) -> Layer:
    data = _yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise NotExact(f"{path}: not a mapping of variables")
    return Layer(source, data)


def _role_file(role: Path, kind: str) -> Layer:
    """defaults/main.yml or vars/main.yml; another of the names Ansible also tries makes it not exact."""
    found = [p for p in (role / kind).glob("main*") if p.name != "main.yml"]
    if found:
        raise NotExact(f"{found[0]}: role files other than {kind}/main.yml are not read here")
    file = role / kind / "main.yml"
    return _vars_file(file, f"role {kind}") if file.is_file() else Layer(f"role {kind}", {})


def _action(task: Any, where: str) -> tuple[str, Any]:
    """The task's action (short name) and arguments; NotExact for a keyword or action not carried out."""
    if not isinstance(task, dict):
        raise NotExact(f"{where}: a task that is not a mapping")
    actions = [key for key in task if key not in TASK_KEYWORDS]
    short = actions[0].removeprefix(BUILTIN) if len(actions) == 1 else ""
    if short not in ACTIONS:
        raise NotExact(f"{where}: task {task.get('name')!r}: {', '.join(map(str, actions))} not carried out")
    return short, task[actions[0]]


def _tasks(file: Path) -> list[tuple[str, dict[str, Any]]]:
    """The tasks of `file`, imports expanded (static, relative to the file): (where, task)."""
    found = _yaml(file) or []
    if not isinstance(found, list):
        raise NotExact(f"{file}: not a list of tasks")
    tasks: list[tuple[str, dict[str, Any]]] = []
    for task in found:
        action, argument = _action(task, str(file))
        if action != "import_tasks":
            tasks.append((str(file), task))
            continue
        if len(task) > 1 + ("name" in task):
            raise NotExact(f"{file}: keywords on an import_tasks are not carried out")
        if not isinstance(argument, str) or looks_like_template(argument):
            raise NotExact(f"{file}: import_tasks {argument!r} is not a plain file name")
        tasks += _tasks(file.parent / argument)
    return tasks


@dataclass(frozen=True)
class _Play:
    hosts: str  # the play's host pattern: one group
    vars_files: list[Layer]
    role: Path
    defaults: Layer
    role_vars: Layer
    tasks: list[tuple[str, dict[str, Any]]]


def _read_play(project: Path) -> _Play:
    book = project / PLAYBOOK
    plays = _yaml(book)
    play = plays[0] if isinstance(plays, list) and len(plays) == 1 else None
    if not isinstance(play, dict) or set(play) - PLAY_KEYS or play.get("gather_facts") is not False:
        raise NotExact(f"{book}: not one play of {', '.join(sorted(PLAY_KEYS))} without facts")
    for place in (book.parent, project):
        unread = [place / d for d in UNREAD_PLACES if (place / d).exists()]
        if unread:
            raise NotExact(f"{unread[0]}: variables next to the playbook are not read here")
    vars_files = []
    for name in play.get("vars_files") or []:
        if not isinstance(name, str) or looks_like_template(name) or (book.parent / "vars" / name).exists():
            raise NotExact(f"{book}: vars_files entry {name!r} is not a plain path next to the playbook")
        vars_files.append(_vars_file(book.parent / name, f"vars_files {name}"))
    imports = play.get("tasks") or []
    target = imports[0].get(f"{BUILTIN}import_role") if len(imports) == 1 else None
    if not isinstance(target, dict) or set(imports[0]) - {"name", f"{BUILTIN}import_role"}:
        raise NotExact(f"{book}: its tasks are not one import_role")
    role_name, tasks_from = str(target.get("name")), str(target.get("tasks_from") or "main.yml")
    if set(target) - {"name", "tasks_from"} or not _PLAIN_NAME.match(role_name):
        raise NotExact(f"{book}: import_role {target} is not carried out here")
    role = project / "roles" / role_name
    elsewhere = [p for p in (book.parent / "roles" / role_name, book.parent / role_name) if p.exists()]
    meta = _yaml(role / "meta" / "main.yml") if (role / "meta" / "main.yml").is_file() else {}
    if elsewhere or not role.is_dir() or (meta or {}).get("dependencies"):
        raise NotExact(
            f"role {role_name}: not the role at {role} alone (found elsewhere or has dependencies)"
        )
    return _Play(
        hosts=str(play.get("hosts")),
        vars_files=vars_files,
        role=role,
        defaults=_role_file(role, "defaults"),
        role_vars=_role_file(role, "vars"),
        tasks=_tasks(role / "tasks" / tasks_from),
    )


def play_hosts(groups: Mapping[str, Sequence[str]], pattern: str, limit: str) -> list[str]:
    """The play's hosts in Ansible's order: group `pattern`'s, within a limit `group:!host:!host`."""
    first, *rest = limit.split(":")
    excluded = {part[1:] for part in rest if part.startswith("!")}
    names = [pattern, first, *excluded]
    if len(excluded) != len(rest) or not all(_PLAIN_NAME.match(n) for n in names) or excluded & groups.keys():
        raise NotExact(f"play hosts {pattern!r} limited to {limit!r}: not a group less some hosts")
    if pattern not in groups or first not in groups:
        raise NotExact(f"no group {pattern if pattern not in groups else first!r} in the inventory")
    members = set(groups[first]) - excluded
    return [host for host in groups[pattern] if host in members]


def _trusted_inventory(path: Path) -> bool:
    """Whether Ansible templates this inventory's strings as it templates a file's: plain YAML/INI files
    (an inventory script's or plugin's values may be untrusted, which is not mirrored)."""
    return not any(os.access(f, os.X_OK) or may_configure_a_plugin(f) for f in inventory_sources(path))


def _managed_default(config: Path) -> str:
    """DEFAULT_MANAGED_STR as the play's ansible.cfg (tooling.runner's ANSIBLE_CONFIG) sets it."""
    import ansible.constants as C

    if C.CONFIG_FILE and Path(C.CONFIG_FILE).resolve() == config.resolve():
        return str(C.config.get_config_value("DEFAULT_MANAGED_STR"))
    from ansible.config.manager import ConfigManager

    return str(ConfigManager(conf_file=str(config)).get_config_value("DEFAULT_MANAGED_STR"))


class _TemplateLookup:
    """lookup('ansible.builtin.template', NAME, template_vars=...) as ansible-core 2.19's lookup: the role's
    templates/NAME rendered with the task's variables, the template_* variables, `ansible_managed` where
    no variable sets it, then template_vars over everything."""

    def __init__(self, engine: AnsibleJinja, templates: Path, managed: str) -> None:
        self.engine, self.templates, self.managed = engine, templates, managed
        self._files: dict[str, tuple[str, dict[str, Any], str]] = {}

    def text(self, name: str) -> str:
        return self._file(name)[0]

    def _file(self, name: str) -> tuple[str, dict[str, Any], str]:
        known = self._files.get(name)
        if known is None:
            path = self.templates / name
            if Path(name).is_absolute() or not path.is_file():
                raise NotExact(f"template {name!r}: not a file of {self.templates}")
            stat = path.stat()
            try:
                owner: str | int = pwd.getpwuid(stat.st_uid).pw_name
            except KeyError:
                owner = stat.st_uid
            about = {
                "template_host": os.uname()[1],
                "template_path": name,
                "template_mtime": dt.datetime.fromtimestamp(stat.st_mtime),
                "template_uid": owner,
                "template_run_date": dt.datetime.now(),
                "template_destpath": None,
                "template_fullpath": str(path),
            }
            managed = time.strftime(self.managed.format(**_MANAGED_FIELDS), time.localtime(stat.st_mtime))
            known = self._files[name] = (path.read_text(encoding="utf-8"), about, managed)
        return known

    def __call__(self, view: HostView, plugin: str, *terms: Any, **options: Any) -> str:
        if plugin.removeprefix(BUILTIN) != "template" or len(terms) != 1 or set(options) - {"template_vars"}:
            raise NotExact(f"lookup({plugin!r}, {len(terms)} term(s), {sorted(options)}) is not carried out")
        text, about, managed = self._file(str(terms[0]))
        given = dict(options.get("template_vars") or {})
        if any(name in view.magic or name in view.templating.ansible_own for name in given):
            raise NotExact(f"template_vars {sorted(given)} name one of Ansible's own variables")
        layers = [Layer("template lookup", about, templated=False)]
        if "ansible_managed" not in view:
            layers.append(Layer("ansible.cfg ansible_managed", {"ansible_managed": managed}))
        layers.append(Layer("template_vars", given, templated=False))
        return str(self.engine.render(text, view.stacked(layers), escaped=False))


def _launch_filter(plan_file: str, **arguments: Any) -> dict[str, Any]:
    """The role's `ddp_launch` filter, whose refusals Ansible reports too."""
    try:
        return role_launch(plan_file, **arguments)
    except (ConfigError, LaunchError) as exc:
        raise Refused(str(exc)) from None


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _aggregate(stats: dict[str, Any], which: str, what: Any, aggregate: bool) -> None:
    """ansible.executor.stats AggregateStats.update_custom_stats / set_custom_stats, for per_host: false."""
    from ansible.utils.vars import merge_hash

    if not aggregate or which not in stats:
        stats[which] = what
    elif isinstance(what, type(stats[which])):
        stats[which] = merge_hash(stats[which], what) if isinstance(what, dict) else stats[which] + what


@dataclass(frozen=True)
class Prepared:
    """What a pass needs besides the inventory: the play and its role read, the engine with the role's
    filters and template lookup, the role's templates compiled. A tenth of a second, which tooling spends
    while ansible-inventory lists the inventory (tooling.job.plan_source)."""

    project: Path
    play: _Play
    engine: AnsibleJinja
    templating: Templating


def prepare(project: Path = PROJECT_ROOT) -> Prepared:
    """The play of `project` ready for a pass; NotExact where it is not one a pass carries out."""
    play = _read_play(project)
    engine = AnsibleJinja(filters={"ddp_launch": _launch_filter, "ddp_run_root": run_root})
    lookup = _TemplateLookup(engine, play.role / "templates", _managed_default(project / "ansible.cfg"))
    engine.env.globals["lookup"] = pass_context(lambda context, *a, **k: lookup(context.parent, *a, **k))
    for template in sorted((play.role / "templates").glob("*.j2")):
        # Compiled now, rendered per node later; one Jinja cannot compile is left to fail when it is used.
        with contextlib.suppress(NotExact):
            engine.compile_ahead(lookup.text(template.name))
    return Prepared(project, play, engine, Templating(engine))


class _Run:
    """One pass of the play's tasks over its hosts."""

    def __init__(
        self, prepared: Prepared, inventory: Mapping[str, Any], limit: str, extra: list[Layer]
    ) -> None:
        play = self.play = prepared.play
        self.project, self.engine, self.templating = prepared.project, prepared.engine, prepared.templating
        self.raw = (inventory.get("_meta") or {}).get("hostvars") or {}
        self.groups = {"ungrouped": [], **ansible_groups(inventory)}
        self.hosts = play_hosts(self.groups, play.hosts, limit)
        self.extra = extra
        self.facts: dict[str, dict[str, Any]] = {host: {} for host in [*self.raw, *self.hosts]}
        self.group_names: dict[str, list[str]] = {host: [] for host in self.raw}
        for group, members in self.groups.items():
            for host in members if group != "all" else ():
                self.group_names.setdefault(host, []).append(group)
        own = self.templating.ansible_own
        for layer in extra:
            if own & layer.values.keys():
                raise NotExact(
                    f"{layer.source} set {sorted(own & layer.values.keys())}: Ansible's own variables"
                )

    def _magic(self, host: str) -> dict[str, Any]:
        return {
            "inventory_hostname": host,
            "inventory_hostname_short": host.split(".")[0],
            "group_names": sorted(self.group_names.get(host, [])),
            "groups": self.groups,
            "playbook_dir": str((self.project / PLAYBOOK).parent),
        }

    def _inventory(self, host: str) -> Layer:
        return Layer("inventory", self.raw.get(host) or {})

    def _hostvars(self) -> Hostvars:
        def view(host: str) -> HostView:
            layers = [self._inventory(host), Layer("set_fact", self.facts.get(host, {}), False), *self.extra]
            return HostView(self.templating, host, layers, self._magic(host))

        return Hostvars(self.raw, view)

    def _view(self, host: str, task: Mapping[str, Any], hostvars: Hostvars) -> HostView:
        play = self.play
        layers = [play.defaults, self._inventory(host), *play.vars_files, play.role_vars]
        if task.get("vars"):
            layers.append(Layer("task vars", task["vars"]))
        layers += [Layer("set_fact", self.facts[host], templated=False), *self.extra]
        magic = self._magic(host) | {
            "hostvars": hostvars,
            "role_path": str(play.role),
            "role_name": play.role.name,
            "ansible_play_hosts_all": list(self.hosts),
        }
        return HostView(self.templating, host, layers, magic)

    def run(self) -> dict[str, Any]:
        active, stats = list(self.hosts), dict[str, Any]()
        for where, task in self.play.tasks:
            action, arguments = _action(task, where)
            name = str(task.get("name") or action)
            once = task.get("run_once", False)
            if not isinstance(once, bool):
                raise NotExact(f"{where}: task {name!r}: run_once {once!r} is not a plain boolean")
            hostvars, ended = self._hostvars(), set()
            for host in active[:1] if once else active:
                view = self._view(host, task, hostvars)
                try:
                    if all(self.engine.condition(c, view) for c in _listed(task.get("when", []))):
                        ended |= self._carry_out(action, arguments, view, stats, once)
                except NotExact as exc:
                    raise exc.located(f"{host}: task {name!r}") from None
                except Refused as exc:
                    raise TaskFailed(host, name, str(exc)) from None
                except _AssertionFailed as exc:
                    raise TaskFailed(host, name, exc.message) from None
            active = [host for host in active if host not in ended]
        return plain(stats)  # type: ignore[no-any-return]

    def _carry_out(
        self, action: str, arguments: Any, view: HostView, stats: dict[str, Any], once: bool
    ) -> set[str]:
        """One task on one host; the hosts it ends (meta end_host)."""
        if action == "meta":
            if arguments != "end_host":
                raise NotExact(f"meta {arguments!r} is not carried out")
            return {view.host}
        if not isinstance(arguments, dict):
            raise NotExact(f"{action} arguments {arguments!r} are not a mapping")
        if action == "set_fact":
            if "cacheable" in arguments or any(looks_like_template(str(k)) for k in arguments):
                raise NotExact("a cacheable or templated set_fact is not carried out")
            values = {key: finalized(view.templated(value)) for key, value in arguments.items()}
            for host in self.hosts if once else [view.host]:
                self.facts[host].update(values)
        elif action == "assert":
            if set(arguments) - ASSERT_ARGS:
                raise NotExact(f"assert arguments {sorted(arguments)} are not carried out")
            message = arguments.get("fail_msg", arguments.get("msg"))
            message = "Assertion failed" if message is None else finalized(view.templated(message))
            if not all(self.engine.condition(c, view) for c in _listed(arguments.get("that"))):
                raise _AssertionFailed(str(message))
        else:  # set_stats
            if set(arguments) - {"data", "per_host", "aggregate"} or view.templated(
                arguments.get("per_host")
            ):
                raise NotExact(f"set_stats {sorted(arguments)} per host is not carried out")
            aggregate = view.templated(arguments.get("aggregate", True))
            data = finalized(view.templated(arguments.get("data") or {}))
            if not isinstance(aggregate, bool) or not isinstance(data, dict):
                raise NotExact("set_stats data or aggregate is not what Ansible takes without coercion")
            for which, what in data.items():
                _aggregate(stats, str(which), what, aggregate)
        return set()


def one_pass_plan(
    inventory: Mapping[str, Any],
    inventory_path: Path,
    limit: str,
    extravars: Mapping[str, Any],
    prepared: Prepared | None = None,
) -> dict[str, Any]:
    """What `ansible-playbook playbooks/plan.yml -i INVENTORY -l LIMIT -e EXTRAVARS` publishes with set_stats
    (tooling.runner passes the site's phases file first, as `-e @file`). `inventory` is the inventory's
    `ansible-inventory --list`; `prepared`, prepare() (made here when not given; it serves one pass).
    Raises NotExact (run the play instead) or TaskFailed."""
    site = site_phases_file()
    extra = [_vars_file(site, f"extra vars @{site}")] if site is not None else []
    extra.append(Layer("extra vars", dict(extravars)))
    run = _Run(prepared or prepare(), inventory, limit, extra)
    if not run.hosts:
        raise NotExact(f"no host of {run.play.hosts!r} within {limit!r}")
    if not _trusted_inventory(inventory_path):
        templated = [h for h, values in run.raw.items() if run.templating.holds_template(values)]
        if templated:
            raise NotExact(f"{templated[0]}: a template in an inventory script's or plugin's values")
    return run.run()
