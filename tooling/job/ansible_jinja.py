"""Jinja as ansible-core 2.19 runs it, in this process: templates compiled once and rendered for many hosts.

What is Ansible's here is taken from Ansible: its filter and test plugins (quote, bool, basename, realpath,
match, ...), merged over Jinja's built-ins as Ansible merges them, and its text conversion. What is
Ansible's behaviour is mirrored where the role's files depend on it, and refused (`NotExact`) where it is
not mirrored, so a caller falls back to Ansible itself instead of guessing:

- a template that is a single expression (`"{{ x }}"`) gives the value itself, not its text; several parts
  are joined as text, and a part that is None is left out (ansible-core 2.19's native concat);
- trim_blocks is on; the trailing newlines of a template are kept (Ansible re-appends what Jinja drops);
- an undefined variable used anywhere, an unknown filter, test or function (lookup() is handed in by the
  caller; now(), query(), omit are not here), a `#jinja2:` header and a backslash in a variable's template
  (Ansible escapes those first) all raise NotExact;
- a filter's iterator result becomes a list, as Ansible's filter wrapper makes it.

Other ansible-core versions template differently (2.17/2.18 are not native), so `supported()` is checked
first and the caller falls back there too.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple, cast

from jinja2 import Template, Undefined, meta, nodes, pass_context
from jinja2.defaults import DEFAULT_FILTERS, DEFAULT_TESTS
from jinja2.nativetypes import NativeCodeGenerator
from jinja2.runtime import Context, new_context
from jinja2.sandbox import SandboxedEnvironment

# The only ansible-core series whose templating this mirrors (pyproject allows 2.17 to 2.19).
ANSIBLE_SERIES = "2.19."
OVERRIDE_HEADER = "#jinja2:"  # Ansible's per-template settings line
FQCN = "ansible.builtin."


class NotExact(Exception):
    """Something the in-process renderer would have to guess at: what (`reason`) and where (host and
    variable, once known)."""

    def __init__(self, reason: str, where: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.where = where

    def located(self, where: str) -> NotExact:
        """This, said of `where`, unless a deeper caller already said where (the innermost place counts)."""
        return self if self.where else NotExact(self.reason, where)

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}" if self.where else self.reason


class Refused(Exception):
    """A failure Ansible reports as well (a filter refusing its input): passed through, not a reason to fall
    back."""


class NotGiven:
    """A name Ansible gives a value that is not given here: harmless while unused (Jinja looks up every
    name a template mentions, used or not), NotExact on any use, `default` and `is defined` included."""

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "_name", name)

    def _refuse(self, *_args: Any, **_kwargs: Any) -> Any:
        raise NotExact(
            f"{object.__getattribute__(self, '_name')} is one of Ansible's own names, not given here"
        )

    def __getattr__(self, _attribute: str) -> Any:
        self._refuse()

    __call__ = __str__ = __iter__ = __len__ = __bool__ = __getitem__ = __contains__ = _refuse
    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __hash__ = _refuse  # type: ignore[assignment]
    __add__ = __radd__ = __sub__ = __mul__ = __mod__ = __int__ = __float__ = _refuse


def _refusing_not_given(function: Callable[..., Any]) -> Callable[..., Any]:
    """A filter or test that would otherwise take a NotGiven for a value (default, defined, ...)."""

    @functools.wraps(function)
    def wrapper(value: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(value, NotGiven):
            value._refuse()
        return function(value, *args, **kwargs)

    return wrapper


# Filters and tests that answer for any value, undefined or not: they would not fail on a NotGiven.
_ANY_VALUE_FILTERS = ("default", "d", "mandatory")
_ANY_VALUE_TESTS = ("defined", "undefined", "none", "callable", "string", "mapping", "sequence", "iterable")


def supported() -> str | None:
    """None when this ansible-core templates as mirrored here, else why not."""
    from ansible.release import __version__

    return None if __version__.startswith(ANSIBLE_SERIES) else f"ansible-core {__version__} is not 2.19"


def looks_like_template(value: str) -> bool:
    """Ansible's test for a string it templates (is_possibly_template)."""
    return "{{" in value or "{%" in value or "{#" in value or value.startswith(OVERRIDE_HEADER)


class _CodeGenerator(NativeCodeGenerator):
    """Ansible's code generator: a template of a single constant keeps its type instead of its text."""

    def _output_const_repr(self, group: Any) -> str:
        parts = list(group)
        return repr(parts[0]) if len(parts) == 1 else repr("".join(map(str, parts)))


@pass_context
def _finalize(_context: Any, value: Any) -> Any:
    # Needing the context stops Jinja from folding expressions into constants at compile time, as
    # Ansible's finalize does: the output is grouped, then joined, the same way.
    return value


# The exact types Ansible's variables hold as they are (its _ANSIBLE_ALLOWED_SCALAR_VAR_TYPES, untagged).
_SCALARS = frozenset({str, int, float, bool, type(None), bytes, dt.date, dt.datetime, dt.time})


def finalized(value: Any, top_level: bool = True) -> Any:
    """ansible-core 2.19's finalization of a template's result (_finalize_template_result): mappings become
    dicts and lists or tuples become lists, all the way down; an undefined value fails. Ansible does this to
    a task argument's or a conditional's whole result (`top_level`), where a value of another type is
    converted or refused (not mirrored: NotExact), and to each part of a template joined as text, where
    such a value is left as it is."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict:
        return {finalized(k, top_level): finalized(v, top_level) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [finalized(item, top_level) for item in value]
    if isinstance(value, Undefined | NotGiven):
        raise NotExact(f"an undefined value ({kind.__name__}) in a result")
    if top_level:
        raise NotExact(f"a {kind.__name__} result, which Ansible converts or refuses")
    return value


def _concat(nodes: Any) -> Any:
    """ansible-core 2.19's AnsibleEnvironment.concat: None parts dropped, one part kept as it is, several
    finalized and joined as text."""
    from ansible.module_utils.common.text.converters import to_text

    parts = [node for node in nodes if node is not None]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    return "".join(part if type(part) is str else to_text(finalized(part, False)) for part in parts)


def _undefined_class() -> type:
    """Ansible's UndefinedMarker, which its filters and tests recognise (`default` coalesces only it), made
    without the templating context it otherwise records its source from."""
    from ansible._internal._templating._jinja_common import UndefinedMarker

    class Undefined(UndefinedMarker):  # type: ignore[misc]
        __slots__ = ()

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, _no_template_source=True, **kwargs)

    return Undefined


class _Environment(SandboxedEnvironment):
    code_generator_class = _CodeGenerator
    concat = staticmethod(_concat)  # type: ignore[assignment]


def _as_list(function: Callable[..., Any]) -> Callable[..., Any]:
    """A filter whose iterator result is made a list, as Ansible wraps every filter."""

    @functools.wraps(function)  # keeps Jinja's pass_context/pass_environment marker
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = function(*args, **kwargs)
        return list(result) if isinstance(result, Iterator) else result

    return wrapper


# ansible.builtin's filter and test plugins (ansible/plugins/filter/*.py, test/*.py but for the vault ones).
FILTER_MODULES = ("core", "mathstuff", "urls", "urlsplit")
TEST_MODULES = ("core", "files", "mathstuff", "uri")


def _ansible_plugins() -> tuple[dict[str, Callable[..., Any]], dict[str, Callable[..., Any]]]:
    """Jinja's filters and tests with ansible.builtin's over them (Ansible looks its plugins up first),
    each under its short name and its ansible.builtin. name."""
    filters: dict[str, Callable[..., Any]] = {**DEFAULT_FILTERS}
    for module in FILTER_MODULES:
        filters.update(importlib.import_module(f"ansible.plugins.filter.{module}").FilterModule().filters())
    tests = dict(cast(Mapping[str, Callable[..., Any]], DEFAULT_TESTS))
    for module in TEST_MODULES:
        tests.update(importlib.import_module(f"ansible.plugins.test.{module}").TestModule().tests())
    filters = {name: _as_list(function) for name, function in filters.items()}
    for name in _ANY_VALUE_FILTERS:
        filters[name] = _refusing_not_given(filters[name])
    for name in _ANY_VALUE_TESTS:
        tests[name] = _refusing_not_given(tests[name])
    return filters | {FQCN + k: v for k, v in filters.items()}, tests | {
        FQCN + k: v for k, v in tests.items()
    }


# Results that cannot change once made, so one may serve every host whose variables give the same inputs.
_IMMUTABLE = (str, int, float, bool, type(None))
_UNDEFINED = object()


class _Compiled(NamedTuple):
    template: Template
    # The variables it reads, when they are all it depends on (no function such as lookup()): its result
    # is then a function of their values.
    inputs: tuple[str, ...] | None


class AnsibleJinja:
    """One environment; each distinct template source is compiled once and reused for every host.

    Variables are any Mapping (a lazy one is consulted name by name, as Ansible's own context does); it
    must answer for the environment's globals too (`globals`). A variable's template whose result is a
    string or number is worked out once for each distinct set of inputs (the role's paths are the same on
    every node): the inputs are looked up first, which Jinja does at a template's start anyway."""

    def __init__(self, filters: Mapping[str, Callable[..., Any]] | None = None) -> None:
        why = supported()
        if why:
            raise NotExact(why)
        self.env = _Environment(trim_blocks=True, undefined=_undefined_class(), finalize=_finalize)
        self.env.optimized = False  # no constant folding, as in Ansible
        ansible_filters, ansible_tests = _ansible_plugins()
        self.env.filters.update(ansible_filters)
        self.env.filters.update(filters or {})
        self.env.tests.update(ansible_tests)
        # Ansible's sandbox leaves range unlimited; lookup() is added by the caller that supports it.
        self.env.globals["range"] = range
        self._templates: dict[str, _Compiled] = {}
        self._expressions: dict[str, Template] = {}
        self._results: dict[tuple[Any, ...], tuple[Any, tuple[Any, ...]]] = {}

    @property
    def globals(self) -> Mapping[str, Any]:
        return self.env.globals

    def _compiled(self, source: str, cache: dict[str, Any], make: Callable[[], Any]) -> Any:
        found = cache.get(source)
        if found is None:
            try:
                with warnings.catch_warnings():
                    # Jinja's lexer warns of a backslash escape Python does not know, such as `\.` in a
                    # regular expression of the role's; Ansible compiles the same text.
                    warnings.simplefilter("ignore", DeprecationWarning)
                    found = cache[source] = make()
            except Exception as exc:  # Jinja's syntax errors, unknown filters and tests
                raise NotExact(f"cannot compile {source[:80]!r}: {exc}") from None
        return found

    def _compile(self, source: str) -> _Compiled:
        tree = self.env.parse(source)
        # find_undeclared_variables leaves the environment's globals out: they are looked for apart.
        read = {name.name for name in tree.find_all(nodes.Name) if name.ctx == "load"}
        pure = not read & self.env.globals.keys()
        names = tuple(sorted(meta.find_undeclared_variables(tree)))
        return _Compiled(self.env.from_string(source), names if pure else None)

    def _inputs(self, names: tuple[str, ...], variables: Mapping[str, Any]) -> tuple[Any, ...]:
        values = []
        for name in names:
            try:
                values.append(variables[name])
            except KeyError:
                values.append(_UNDEFINED)
        return tuple(values)

    def _context(self, template: Template, variables: Mapping[str, Any]) -> Context:
        # Without the template's globals: Jinja would copy their names for every render, and `variables`
        # answers for them (see the class's docstring).
        return new_context(self.env, template.name, template.blocks, variables, shared=True)  # type: ignore[arg-type]

    def _run(self, template: Template, variables: Mapping[str, Any]) -> Any:
        context = self._context(template, variables)
        try:
            return self.env.concat(template.root_render_func(context))  # type: ignore[attr-defined]
        except (NotExact, Refused):
            raise
        except Exception as exc:
            raise NotExact(f"{type(exc).__name__}: {exc}") from None

    def render(self, source: str, variables: Mapping[str, Any], *, escaped: bool = True) -> Any:
        """`source` templated as Ansible templates a string (a variable's value, a task argument, a file's
        text). `escaped`: Ansible escapes backslashes in it first (everything but template files), which
        is not mirrored: a backslash there raises NotExact."""
        if not looks_like_template(source):
            return source
        if source.startswith(OVERRIDE_HEADER):
            raise NotExact(f"{OVERRIDE_HEADER} settings lines are not mirrored")
        if escaped and "\\" in source:
            raise NotExact("a backslash in a template (Ansible escapes it first)")
        compiled = self._compiled(source, self._templates, lambda: self._compile(source))
        if not escaped or compiled.inputs is None:
            return self._rendered(source, compiled.template, variables)
        inputs = self._inputs(compiled.inputs, variables)
        # Scalars by value (and type: 1, 1.0 and True differ), anything else by identity; the inputs are
        # kept with the result, so an identity is never reused while it is a key here.
        key = (source, *((type(v), v) if type(v) in _IMMUTABLE else id(v) for v in inputs))
        known = self._results.get(key)
        if known is not None:
            return known[0]
        result = self._rendered(source, compiled.template, variables)
        if type(result) in _IMMUTABLE:
            self._results[key] = (result, inputs)
        return result

    def _rendered(self, source: str, template: Template, variables: Mapping[str, Any]) -> Any:
        result = self._run(template, variables)
        if isinstance(result, NotGiven):
            result._refuse()  # the value of one of Ansible's own names is not known here
        if isinstance(result, str):
            # Jinja drops the source's trailing newlines; Ansible puts them back.
            missing = (len(source) - len(source.rstrip("\n"))) - (len(result) - len(result.rstrip("\n")))
            result += "\n" * max(missing, 0)
        return result

    def compile_ahead(self, source: str) -> None:
        """Compile `source` now (for render(source, ..., escaped=False) later)."""
        if looks_like_template(source):
            self._compiled(source, self._templates, lambda: self._compile(source))

    def evaluate(self, expression: str, variables: Mapping[str, Any]) -> Any:
        """A bare expression (a `when` or an assert's `that`), unescaped as Ansible evaluates conditionals."""
        template = self._compiled(
            expression,
            self._expressions,
            lambda: self.env.compile_expression(expression, undefined_to_none=False)._template,
        )
        context = self._context(template, variables)
        try:
            for _ in template.root_render_func(context):  # type: ignore[attr-defined]
                pass
        except (NotExact, Refused):
            raise
        except Exception as exc:
            raise NotExact(f"{type(exc).__name__}: {exc}") from None
        return context.vars["result"]

    def condition(self, expression: str, variables: Mapping[str, Any]) -> bool:
        """A conditional: Ansible 2.19 wants a boolean result and refuses anything else."""
        if not isinstance(expression, str) or looks_like_template(expression):
            raise NotExact(f"conditional {expression!r} is not a bare expression")
        result = self.evaluate(expression.strip(), variables)
        if not isinstance(result, bool):
            raise NotExact(f"conditional {expression!r} gave {type(result).__name__}, not a boolean")
        return result
