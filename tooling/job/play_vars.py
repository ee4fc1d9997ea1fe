"""One host's variables as a task of a play sees them, in Ansible's precedence, each templated when first
read.

Layers, lowest first, as ansible-core's VariableManager.get_vars combines them for a task of an imported role:
role defaults < the inventory's host variables (`_meta.hostvars` of `ansible-inventory --list`: group and
host vars merged, cached facts included) < the play's vars_files < role vars < task vars < set_fact < extra
vars < Ansible's own (magic) variables. A value from a file, the inventory or the extra vars is templated
when read (recursively, in the same host's view, as Ansible's lazy containers do); a set_fact result or a
magic variable is not. Ansible's own variables that are not given here (inventory_dir, vars,
ansible_check_mode, ...) are refused by name rather than read from a lower layer or left undefined.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tooling.job.ansible_jinja import AnsibleJinja, NotExact, NotGiven, looks_like_template

# How ansible-inventory --list writes a tagged value instead of the value: Ansible would not template it
# (unsafe) or would decrypt it (vault); neither is mirrored.
TAGGED_KEYS = frozenset({"__ansible_unsafe", "__ansible_vault"})
# Ansible's template functions and variables besides its internal ones (ansible.constants
# INTERNAL_STATIC_VARS) that no layer here gives.
NOT_GIVEN = frozenset(
    (
        *("ansible_check_mode", "ansible_play_name", "ansible_search_path", "ansible_local", "vars"),
        *("ansible_parent_role_names", "ansible_parent_role_paths", "environment"),
        *("now", "query", "q", "undef", "omit"),  # Jinja functions and constants of Ansible's
    )
)


def ansible_own_names() -> frozenset[str]:
    from ansible.constants import INTERNAL_STATIC_VARS

    return frozenset(INTERNAL_STATIC_VARS) | NOT_GIVEN


@dataclass(frozen=True)
class Layer:
    source: str  # in messages: "role defaults", "inventory", ...
    values: Mapping[str, Any]
    # Raw data Ansible templates when it is read (files, inventory, extra vars), else a finished value.
    templated: bool = True


class Templating:
    """What every host's view shares: the engine, Ansible's own names, and which raw containers hold a
    template (known per object, so a large shared value is walked once, not once per host)."""

    def __init__(self, engine: AnsibleJinja) -> None:
        self.engine = engine
        self.ansible_own = ansible_own_names()
        self._holds_template: dict[int, tuple[Any, bool]] = {}
        self._not_given: dict[str, NotGiven] = {}

    def not_given(self, name: str) -> NotGiven:
        """One stand-in per name (results are reused by their inputs' identity)."""
        return self._not_given.setdefault(name, NotGiven(name))

    def holds_template(self, value: Any) -> bool:
        known = self._holds_template.get(id(value))
        if known is not None and known[0] is value:
            return known[1]
        if isinstance(value, str):
            return looks_like_template(value)
        if isinstance(value, Mapping):
            found = bool(TAGGED_KEYS & value.keys()) or any(
                self.holds_template(k) or self.holds_template(v) for k, v in value.items()
            )
        elif isinstance(value, list):
            found = any(self.holds_template(item) for item in value)
        else:
            return False
        self._holds_template[id(value)] = (value, found)  # the value is kept, so its id stays its own
        return found


class HostView(Mapping[str, Any]):
    """`host`'s variables for one task: Jinja reads it name by name (as Ansible's context does)."""

    def __init__(self, templating: Templating, host: str, layers: Iterable[Layer], magic: Mapping[str, Any]):
        self.templating = templating
        self.host = host
        self._stack = tuple(layers)
        self._layers = self._stack[::-1]  # highest precedence first
        self.magic = magic
        self._done: dict[str, Any] = {}
        self._reading: set[str] = set()

    def _layer_of(self, key: str) -> Layer | None:
        for layer in self._layers:
            if key in layer.values:
                return layer
        return None

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        return (
            key in self.magic
            or key in self.templating.ansible_own
            or self._layer_of(key) is not None
            or key in self.templating.engine.globals
        )

    def __getitem__(self, key: str) -> Any:
        if key in self._done:
            return self._done[key]
        if key in self.magic:
            return self.magic[key]
        if key in self.templating.ansible_own:
            return self.templating.not_given(key)
        layer = self._layer_of(key)
        if layer is None:
            return self.templating.engine.globals[key]
        if not layer.templated:
            return layer.values[key]
        if key in self._reading:
            raise NotExact(f"{key} refers to itself", where=self.host)
        self._reading.add(key)
        try:
            value = self.templated(layer.values[key])
        except NotExact as exc:
            raise exc.located(f"{self.host}: {key} ({layer.source})") from None
        finally:
            self._reading.discard(key)
        self._done[key] = value
        return value

    def stacked(self, layers: Iterable[Layer]) -> HostView:
        """This host's view with `layers` over all of this one's (a fresh view: values are templated again
        there, as Ansible templates them again in a template lookup's own variables)."""
        return HostView(self.templating, self.host, [*self._stack, *layers], self.magic)

    def templated(self, value: Any) -> Any:
        """`value` as Ansible templates raw data read in this view (recursively)."""
        if isinstance(value, str):
            return self.templating.engine.render(value, self) if looks_like_template(value) else value
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, list | dict) and not self.templating.holds_template(value):
            return value
        if isinstance(value, list):
            return [self.templated(item) for item in value]
        if isinstance(value, dict):
            tagged = TAGGED_KEYS & value.keys()
            if tagged:
                raise NotExact(f"a value tagged {min(tagged)} (from ansible-inventory)")
            if any(isinstance(k, str) and looks_like_template(k) for k in value):
                raise NotExact("a template in a mapping's key")
            return {k: self.templated(v) for k, v in value.items()}
        raise NotExact(f"a {type(value).__name__} value, which JSON and Ansible's variables do not hold")

    def __iter__(self) -> Iterator[str]:
        names = dict.fromkeys(self.magic)
        for layer in self._layers:
            names.update(dict.fromkeys(layer.values))
        return iter(names)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __bool__(self) -> bool:
        return True  # Ansible's host variables always hold inventory_hostname; no count needed to say so


class Hostvars(Mapping[str, HostView]):
    """Ansible's `hostvars`: each host's view (made when first asked for) without play or task layers."""

    def __init__(self, hosts: Iterable[str], view: Callable[[str], HostView]) -> None:
        self._hosts = dict.fromkeys(hosts)
        self._view = view
        self._views: dict[str, HostView] = {}

    def __getitem__(self, host: str) -> HostView:
        if host not in self._hosts:
            raise KeyError(host)
        found = self._views.get(host)
        if found is None:
            found = self._views[host] = self._view(host)
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(self._hosts)

    def __len__(self) -> int:
        return len(self._hosts)
