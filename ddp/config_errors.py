"""Turn YAML and pydantic failures into lines a user can act on: file, key path, what was expected."""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import yaml

try:
    # libyaml's parser where PyYAML was built with it: the same nodes and marks, several times faster on a
    # large inventory (1,000 hosts) than the pure-Python one.
    from yaml import CSafeLoader as SafeLoader
except ImportError:  # pragma: no cover - PyYAML without libyaml
    from yaml import SafeLoader  # type: ignore[assignment]

if TYPE_CHECKING:
    # Only named in annotations here: ConfigError is raised and caught all over the toolkit (the CLI's
    # error edge among them), and importing it must not cost pydantic's import.
    from pydantic import BaseModel, ValidationError

_MAX_SHOWN = 60
_MERGE_TAG = "tag:yaml.org,2002:merge"
# Values a document may stand for once its aliases are expanded. Trainer configs hold hundreds.
MAX_EXPANDED_NODES = 100_000


class ConfigError(Exception):
    """A user's configuration is wrong. `problems` are complete, printable lines."""

    def __init__(self, source: str | Path, problems: Iterable[str]) -> None:
        self.source = str(source)
        self.problems = list(problems)
        super().__init__("\n".join(f"{self.source}: {p}" for p in self.problems))


class AliasExpansionError(yaml.constructor.ConstructorError):
    """A document whose aliases would expand past MAX_EXPANDED_NODES, or into themselves."""


class _Loader(SafeLoader):
    """SafeLoader that reads `1e-3` as a number (YAML 1.2), as people write learning rates.

    PyYAML follows YAML 1.1, where a float needs a dot; a schema that is strict about types would then
    reject `lr: 1e-3` as a string.
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _duplicate_key(root: yaml.Node) -> yaml.MarkedYAMLError | None:
    """The first mapping key given twice. PyYAML keeps the last silently, so a typo'd copy wins."""
    pending: list[yaml.Node] = [root]
    seen_nodes: set[int] = set()
    while pending:
        node = pending.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], yaml.Node] = {}
            for key, value in node.value:
                pending.extend((key, value))
                if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE_TAG:
                    continue
                ident = (key.tag, key.value)
                if ident in first:
                    line = first[ident].start_mark.line + 1
                    return yaml.constructor.ConstructorError(
                        problem=f"duplicate key {key.value!r} (first given on line {line})",
                        problem_mark=key.start_mark,
                    )
                first[ident] = key
        elif isinstance(node, yaml.SequenceNode):
            pending.extend(node.value)
    return None


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _alias_bomb(root: yaml.Node) -> AliasExpansionError | None:
    """The first collection whose aliases expand past MAX_EXPANDED_NODES, or that an alias puts inside itself.

    An alias (`*a`) repeats the node its anchor names without copying it, so ten lines can stand for a
    billion values ("billion laughs"). Loading shares them, but anything that walks the data later (merging
    layers, the summary's config dump, a factory's kwargs) expands them. The expanded size is counted on the
    composed nodes, each distinct node once, so the bound is found without expanding anything.
    """
    expanded: dict[int, int] = {}
    on_path: set[int] = set()
    pending: list[tuple[yaml.Node, bool]] = [(root, False)]
    while pending:
        node, children_done = pending.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            size = 1 + sum(expanded[id(child)] for child in _children(node))
            if size > MAX_EXPANDED_NODES:
                return AliasExpansionError(
                    problem=(
                        f"aliases here expand to more than {MAX_EXPANDED_NODES} values, far more than any "
                        "trainer config holds (a YAML alias bomb?); expected each anchor reused a few times"
                    ),
                    problem_mark=node.start_mark,
                )
            expanded[key] = size
        elif key in on_path:
            return AliasExpansionError(
                problem="an alias refers to a collection that contains it; expected data without cycles",
                problem_mark=node.start_mark,
            )
        elif key not in expanded:
            on_path.add(key)
            pending.append((node, True))
            pending.extend((child, False) for child in _children(node))
    return None


def parse_yaml(text: str) -> Any:
    """YAML text to data: safe types only, `1e-3` is a float, a key given twice is an error, aliases are
    bounded (MAX_EXPANDED_NODES)."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        problem = _alias_bomb(node) or _duplicate_key(node)
        if problem is not None:
            raise problem
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_yaml(path: str | Path) -> Any:
    """Read and parse a YAML file; every failure is a ConfigError naming the file (and line)."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(file, ["file not found"]) from None
    except IsADirectoryError:
        raise ConfigError(file, ["is a directory; expected a YAML file"]) from None
    except OSError as exc:
        raise ConfigError(file, [f"cannot read: {exc.strerror}"]) from None
    except ValueError as exc:  # a NUL in the path
        raise ConfigError(repr(str(file)), [f"not a usable file name: {exc}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            file, [f"line {line}: not UTF-8 text (byte {raw[exc.start]:#04x}); save the file as UTF-8"]
        ) from None
    try:
        return parse_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(file, [f"{where}invalid YAML: {problem}"]) from None
    except RecursionError:
        raise ConfigError(file, ["invalid YAML: nested too deeply"]) from None
    except (ValueError, TypeError, OverflowError) as exc:
        # A tagged or timestamp-looking scalar PyYAML cannot build (`!!float abc`, `2024-13-01`).
        raise ConfigError(file, [f"invalid YAML value: {exc}"]) from None


def load_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; every failure names the file."""
    file = Path(path)
    data = read_yaml(file)
    if data is None:
        raise ConfigError(file, ["file is empty; expected a mapping of settings"])
    if not isinstance(data, dict):
        raise ConfigError(file, [f"expected a mapping at the top level, got {type(data).__name__}"])
    return data


# --- pydantic errors -------------------------------------------------------------------------------


def _type_name(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    return f"a {type(value).__name__} value"


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _key_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif parts:
            parts.append(f".{item}")
        else:
            parts.append(str(item))
    return "".join(parts) or "(top level)"


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through Annotated, unions and dict values)."""
    from pydantic import BaseModel  # here, not at the top: see the TYPE_CHECKING import

    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _dict_values(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _dict_values(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [v for arg in typing.get_args(annotation) for v in _dict_values(arg)]
    if origin in (dict, Mapping):
        return [typing.get_args(annotation)[1]]
    return []


def _tag_of(model: type[BaseModel]) -> set[str]:
    kind = model.model_fields.get("kind")
    if kind is None:
        return set()
    return {str(a) for a in typing.get_args(kind.annotation)}


def annotations_at(model: type[BaseModel], loc: Iterable[int | str]) -> list[Any]:
    """What the schema expects at `loc` (pydantic's error location, union tags included)."""
    current: list[Any] = [model]
    for part in loc:
        following: list[Any] = []
        for annotation in current:
            for candidate in _models_in(annotation):
                if isinstance(part, str) and part in candidate.model_fields:
                    following.append(candidate.model_fields[part].annotation)
                elif isinstance(part, str) and part in _tag_of(candidate):
                    following.append(candidate)
            following.extend(_dict_values(annotation))
        current = following
    return current


def known_keys(model: type[BaseModel], section: Iterable[int | str]) -> list[str]:
    """The keys the section at `section` accepts, in schema order."""
    keys: list[str] = []
    for annotation in annotations_at(model, section):
        for candidate in _models_in(annotation):
            keys.extend(k for k in candidate.model_fields if k not in keys)
    return keys


def _unknown_key(loc: tuple[int | str, ...], model: type[BaseModel] | None) -> str:
    keys = known_keys(model, loc[:-1]) if model is not None else []
    if not keys:
        return "unknown key (check the spelling)"
    close = difflib.get_close_matches(str(loc[-1]), keys, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key; {hint}expected one of: {', '.join(keys)}"


def _describe(err: dict[str, Any], model: type[BaseModel] | None = None) -> str:
    kind = err["type"]
    got = err.get("input")
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        return _unknown_key(tuple(err["loc"]), model)
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        return f"kind: expected one of {ctx['expected_tags']} (got {_shown(ctx['tag'])})"
    if kind == "union_tag_not_found":
        return "kind: required key is missing (it selects the schema of this section)"
    if kind in ("invalid_key", "string_type") and err["loc"] and err["loc"][-1] == "[key]":
        return f"key {_shown(got)} must be a string, not {_type_name(got)} (quote it)"
    if kind == "invalid_key":
        return f"key {_shown(err['loc'][-1])} must be a string (quote it)"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping of settings (key: value), got {_type_name(got)}"
    if kind == "too_short":
        return f"expected at least {ctx.get('min_length')} entry, got {ctx.get('actual_length')}"
    if kind == "string_pattern_mismatch" and ":" in str(ctx.get("pattern", "")):
        return f"expected an import path like package.module:factory (got {_shown(got)})"
    message = str(err["msg"])
    # Pydantic says "Input should be ..."; say "expected ..." and show what was given.
    if message.startswith("Input should be "):
        message = "expected " + message[len("Input should be ") :]
    elif message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if kind.endswith("_type"):
        message += f", got {_type_name(got)}"
        if got is not None and not isinstance(got, dict | list):
            message += f" {_shown(got)}"
    elif got is not None and not isinstance(got, dict | list) and f"got {_shown(got)}" not in message:
        message += f" (got {_shown(got)})"
    return message


def _strip_union_tags(loc: tuple[int | str, ...], tags: frozenset[str]) -> tuple[int | str, ...]:
    # Discriminated unions add the tag ("synthetic", "digits", ...) to the location; users never typed it.
    return tuple(
        part
        for i, part in enumerate(loc)
        if not (i > 0 and isinstance(part, str) and (part in tags or part == "[key]"))
    )


def _related(path: str, key: str) -> bool:
    return path == key or path.startswith((f"{key}.", f"{key}[")) or key.startswith(f"{path}.")


def format_validation_error(
    source: str | Path,
    exc: ValidationError,
    union_tags: Iterable[str] = (),
    model: type[BaseModel] | None = None,
    origins: Mapping[str, str] | None = None,
) -> ConfigError:
    """One line per error: `key.path: expected ...`.

    `model` lets an unknown key be answered with the keys its section accepts; `origins` maps a key path
    to where its value came from when that is not the file (e.g. a --set override).
    """
    tags = frozenset(union_tags)
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        if err["type"] == "invalid_key":
            # The bad key itself ends the location; name the section it is in.
            loc = loc[:-1]
        elif loc and loc[-1] == "[key]":
            loc = loc[:-2]
        path = _key_path(_strip_union_tags(loc, tags))
        line = f"{path}: {_describe(dict(err), model)}"
        if not loc and err["type"] == "value_error":
            # A check across sections names its own key paths.
            line = _describe(dict(err), model)
        notes = [note for key, note in (origins or {}).items() if _related(path, key)]
        if notes:
            line += f" (from {', '.join(notes)})"
        lines.append(line)
    return ConfigError(source, lines)
