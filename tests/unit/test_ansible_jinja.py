"""The one-pass plan's Jinja (tooling/job/ansible_jinja.py, play_vars.py) against ansible-core's own Templar:
the same results, types included, for the templating the role's files rely on and its edges (native single
expressions, None parts, tuples, trailing newlines, lazily templated nested values, Ansible's filters and
tests); and NotExact, never a guess, where it does not mirror Ansible."""

from __future__ import annotations

from typing import Any

import pytest

from tooling.job.ansible_jinja import AnsibleJinja, NotExact, finalized, supported
from tooling.job.play_vars import HostView, Layer, Templating

pytestmark = pytest.mark.skipif(supported() is not None, reason="mirrors ansible-core 2.19 only")

VARIABLES: dict[str, Any] = {
    "a": "x",
    "n": 5,
    "f": 1.5,
    "b": True,
    "s": "yes",
    "e": "",
    "none": None,
    "ws": "a b",
    "path": "/etc/ddp/run.env",
    "t": "{{ n }}",
    "l": ["p", "{{ a }}"],
    "d": {"k": "{{ a }}-v"},
    "z": [[1, 2], [3, 4]],
}
TEMPLATES = [
    "{{ a }}",
    "{{ n }}",
    "{{ t }}",
    "x{{ n }}",
    "{{ f }}",
    "v{{ f }}",
    "{{ none }}",
    "a{{ none }}b",
    "{{ b }} {{ none }}",
    "{{ l }}",
    "{{ d }}",
    "{{ d.k }}",
    "{{ (1, 2) }}",
    "{{ d | dictsort }}",
    "x {{ d | dictsort }}",
    "{{ d.items() | list }}",
    "{{ [1, none] }}",
    "{{ {'a': none} }}",
    "{{ 1 }}",
    "{{ '1' }}",
    "{{ 3 }}\n",
    "line\n\n",
    "{% if b %}yes{% endif %}\n",
    "{% for k, v in d | dictsort %}{{ k }}={{ v }}\n{% endfor %}",
    "{{ l | length }}",
    "{{ e | length > 0 }}",
    "{{ undefined_x | default('z') }}",
    "{{ l[5] | default('no') }}",
    "{{ x is defined }}",
    "{{ b | bool }}",
    "{{ s | bool }}",
    "{{ n | int + 1 }}",
    "{{ n is number }}",
    "{{ path | basename }}",
    "{{ ws | quote }}",
    "{{ none | quote }}",
    "{{ l | select('match', 'p') | list }}",
    "{{ l | map('upper') }}",
    "{{ z | map('first') | list }}",
    "{{ l | join(',') }}",
    "{{ [a, n] | join('') }}",
    "{{ d | to_json }}",
    "{{ a ~ n }}",
    "{{ '%s-%d' | format(a, n) }}",
    "{{ 'A' | lower }}{{ 2 }}",
]


def _trusted(value: Any) -> Any:
    """Data as Ansible loads it from a file: every string trusted as a template."""
    from ansible.template import trust_as_template

    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, list):
        return [_trusted(item) for item in value]
    if isinstance(value, dict):
        return {key: _trusted(item) for key, item in value.items()}
    return value


def _same(ours: Any, theirs: Any) -> bool:
    """Equal, and of the same plain type (Ansible's tagged str, list... count as their plain types)."""
    if isinstance(theirs, bool) or theirs is None:
        return ours is theirs
    for plain in (str, int, float, dict, list, tuple):
        if isinstance(theirs, plain):
            if type(ours) is not plain:
                return False
            if plain is dict:
                return ours.keys() == theirs.keys() and all(_same(ours[k], theirs[k]) for k in theirs)
            if plain in (list, tuple):
                return len(ours) == len(theirs) and all(map(_same, ours, theirs))
            return bool(ours == theirs)
    return False


@pytest.fixture(scope="module")
def view() -> HostView:
    return HostView(Templating(AnsibleJinja()), "gpu-r01-u01", [Layer("vars", VARIABLES)], {})


@pytest.mark.parametrize("template", TEMPLATES)
def test_a_task_argument_is_templated_as_ansible_templates_it(view: HostView, template: str) -> None:
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template

    theirs = Templar(loader=DataLoader(), variables=_trusted(VARIABLES)).template(trust_as_template(template))
    ours = finalized(view.templated(template))
    assert _same(ours, theirs), (ours, theirs)


@pytest.mark.parametrize(
    ("template", "why"),
    [
        ("{{ lookup('env', 'HOME') }}", "'lookup' is undefined"),  # the one-pass plan's own: templates only
        ("{{ now() }}", "Ansible's own names"),
        ("{{ inventory_dir | default('/x') }}", "inventory_dir is one of Ansible's own names"),
        ("{{ omit is defined }}", "omit is one of Ansible's own names"),
        ("{{ inventory_file }}", "inventory_file is one of Ansible's own names"),
        ("{{ a | no_such_filter }}", "cannot compile"),
        ("{{ 'a\\\\b' }}", "backslash"),
        ("#jinja2: trim_blocks: False\n{{ a }}", "#jinja2:"),
        ("{{ undefined_x }}", "undefined"),
        ("{{ range(3) }}", "a range result"),
    ],
)
def test_what_is_not_mirrored_is_refused(view: HostView, template: str, why: str) -> None:
    with pytest.raises(NotExact, match=why):
        finalized(view.templated(template))


def test_an_unused_name_of_ansibles_own_is_harmless(view: HostView) -> None:
    """Jinja looks up every name a template mentions: one not given here only fails when it is used."""
    assert view.templated("{{ a if b else now() }}") == "x"


def test_a_value_that_refers_to_itself_is_refused() -> None:
    loop = HostView(
        Templating(AnsibleJinja()), "h", [Layer("vars", {"x1": "{{ x2 }}", "x2": "{{ x1 }}"})], {}
    )
    with pytest.raises(NotExact, match="x1 refers to itself"):
        loop["x1"]


def test_a_variable_is_templated_in_the_view_that_reads_it() -> None:
    """The same raw value gives each host its own result, even where results are reused between hosts."""
    templating = Templating(AnsibleJinja())
    role = Layer("role vars", {"bind": "{{ address }}", "path": "{{ root }}/bin", "line": "{{ root }}\n"})
    first, second = (
        HostView(templating, host, [role, Layer("inventory", {"address": host, "root": "/opt"})], {})
        for host in ("gpu-a", "gpu-b")
    )
    assert (first["bind"], second["bind"]) == ("gpu-a", "gpu-b")
    assert first["path"] == second["path"] == "/opt/bin"
    assert first["line"] == second["line"] == "/opt\n"  # the trailing newline, reused or not
