"""Bad trainer configs, generated and hand-picked: every one ends as a ConfigError naming the file and the
key, never as another exception; through the trainer's CLI, exit 2 without a traceback or a written file."""

from __future__ import annotations

import copy
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ddp.config import TrainerConfig, load_config
from ddp.config_errors import ConfigError
from tests.unit.fuzz_documents import key_paths, value_at, with_value

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Every section written out, so a mutation can reach every key of the schema.
FULL: dict[str, Any] = TrainerConfig.model_validate({"workload": {"kind": "synthetic"}}).model_dump(
    mode="json"
)
SECTIONS = [key for key, value in FULL.items() if isinstance(value, dict)]

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(st.text(max_size=6), scalars, max_size=3),
)


LEAVES = sorted((path, value_at(FULL, path)) for path in key_paths(FULL))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-config")


def write(directory: Path, data: object, name: str = "config.yaml") -> Path:
    path = directory / name
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def config_error(path: Path, overrides: list[str] | None = None) -> ConfigError | None:
    """The ConfigError of loading `path`, None when it is valid; any other exception fails the test."""
    try:
        load_config(path, overrides)
    except ConfigError as exc:
        assert str(path) in str(exc), f"the message does not name the file: {exc}"
        return exc
    return None


def names_key(error: ConfigError, path: tuple[str, ...]) -> bool:
    """Some line names `path` or a section above it (a whole-section check such as checkpoint's)."""
    dotted = [".".join(path[:n]) for n in range(len(path), 0, -1)]
    return any(
        f": {key}" in line or f": {key}." in line for line in str(error).splitlines() for key in dotted
    )


# --- generated ---------------------------------------------------------------------------------------


@FUZZ
@given(leaf=st.sampled_from(LEAVES), value=values)
def test_any_value_anywhere_is_accepted_or_named(workdir: Path, leaf: tuple, value: Any) -> None:
    path, original = leaf
    error = config_error(write(workdir, with_value(FULL, path, value)))
    if error is not None:
        assert names_key(error, path), f"{'.'.join(path)} not named in: {error}"
    free_form = path[-1].endswith("_kwargs")
    if isinstance(value, list | dict) and not free_form and not isinstance(original, dict):
        assert error is not None, f"{'.'.join(path)} accepted a {type(value).__name__}"
    if isinstance(original, int | float) and not isinstance(original, bool) and isinstance(value, bool):
        assert error is not None, f"{'.'.join(path)} took the boolean {value} as a number"
    if isinstance(value, float) and not math.isfinite(value) and isinstance(original, int | float):
        assert error is not None, f"{'.'.join(path)} accepted {value}"


@FUZZ
@given(section=st.sampled_from(["", *SECTIONS]), key=st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True))
def test_unknown_keys_are_named(workdir: Path, section: str, key: str) -> None:
    known = FULL.keys() if not section else FULL[section].keys()
    assume(key not in known and key != "base")
    data = copy.deepcopy(FULL)
    (data[section] if section else data)[key] = 1
    error = config_error(write(workdir, data))
    assert error is not None
    dotted = f"{section}.{key}" if section else key
    assert f"{dotted}: unknown key" in str(error)


@FUZZ
@given(
    document=st.one_of(
        text,
        st.builds(
            lambda cut, junk: (lambda s: s[:cut] + junk + s[cut:])(yaml.safe_dump(FULL)),
            st.integers(min_value=0, max_value=len(yaml.safe_dump(FULL))),
            st.sampled_from(
                ["\t", ":", "- ", "{", "}", "[", "&a", "*b", "!!python/object:os.system", '"', "\n  "]
            ),
        ),
    )
)
def test_broken_yaml_is_a_config_error(workdir: Path, document: str) -> None:
    config_error(write(workdir, document))


@FUZZ
@given(raw=st.binary(max_size=80))
def test_arbitrary_bytes_are_a_config_error(workdir: Path, raw: bytes) -> None:
    config_error(write(workdir, raw))


@FUZZ
@given(items=st.lists(text, min_size=1, max_size=3))
def test_arbitrary_set_strings_are_a_config_error(workdir: Path, items: list[str]) -> None:
    config_error(write(workdir, FULL), items)


@FUZZ
@given(leaf=st.sampled_from(LEAVES), value=text)
def test_set_errors_name_the_key_and_the_override(workdir: Path, leaf: tuple, value: str) -> None:
    path, _ = leaf
    item = f"{'.'.join(path)}={value}"
    error = config_error(write(workdir, FULL), [item])
    if error is not None and "override" not in str(error):
        assert names_key(error, path)
        assert f"--set {item}" in str(error)


@FUZZ
@given(base=st.one_of(text, st.integers(), st.lists(text, max_size=2), st.booleans()))
def test_bad_base_references_name_the_file_and_key(workdir: Path, base: Any) -> None:
    child = write(workdir, {"base": base, "workload": {"kind": "digits"}}, "child.yaml")
    try:
        load_config(child)
    except ConfigError as exc:
        message = str(exc)
        target = str(child.parent / base) if isinstance(base, str) and "\0" not in base else None
        if str(child) not in message:
            # The base file itself could not be read (bad YAML...): that file is named.
            assert target is not None and message.startswith(target), message
        elif "base:" not in message:
            # It was read, and what is wrong came from it (say base: /proc/meminfo).
            assert target is not None and f"(from {target})" in message, message


# --- hand-picked ---------------------------------------------------------------------------------------

WORKLOAD = "workload: {kind: digits}\n"
BAD_FILES = [
    (
        WORKLOAD + "training: {batch_size: true}\n",
        "training.batch_size: expected a valid integer, got a boolean",
    ),
    (WORKLOAD + "optimizer: {lr: .inf}\n", "optimizer.lr: expected a finite number"),
    (WORKLOAD + "checkpoint: {every_minutes: .nan}\n", "checkpoint.every_minutes: expected a finite number"),
    (WORKLOAD + "training: {seed: 99999999999999999999}\n", "training.seed: expected less than or equal to"),
    (
        WORKLOAD + "metrics: {window_steps: 10000000000000}\n",
        "metrics.window_steps: expected less than or equal",
    ),
    (WORKLOAD + "distributed: {timeout_s: 100000000000000}\n", "distributed.timeout_s: expected less than"),
    (
        WORKLOAD + "training:\n  batch_size: 8\n  batch_size: 9\n",
        "line 4, column 3: invalid YAML: duplicate key",
    ),
    (WORKLOAD + "training: {1: 2}\n", "training: key 1 must be a string"),
    (WORKLOAD + "training: [1, 2]\n", "training: expected a mapping of settings"),
    ("workload: digits\n", "workload: expected a mapping of settings (key: value), got a string"),
    (WORKLOAD + "trainig: {}\n", "trainig: unknown key; did you mean 'training'?"),
    (WORKLOAD + "run: {output_dir: ''}\n", "run.output_dir: expected a path"),
    (WORKLOAD + 'checkpoint: {dir: "a\\0b"}\n', "checkpoint.dir: a path cannot contain NUL"),
    (WORKLOAD + "when: 2024-13-01\n", "invalid YAML value"),
    # libyaml: "exceeded maximum nesting depth" (with the line); pure-Python PyYAML: "nested too deeply".
    ("[" * 2000, "nest"),
    (WORKLOAD + "base: ''\n", "base: expected the file name of another config"),
    (WORKLOAD + "base: .\n", "is a directory, not a config file"),
    (WORKLOAD + "base: missing.yaml\n", "base: "),
    (WORKLOAD + "base: [a.yaml]\n", "base: expected the file name"),
]


@pytest.mark.parametrize(("document", "expected"), BAD_FILES, ids=[e[:40] for _, e in BAD_FILES])
def test_hand_picked_bad_files(tmp_path: Path, document: str, expected: str) -> None:
    error = config_error(write(tmp_path, document))
    assert error is not None and expected in str(error), error


def test_missing_base_names_the_referring_file_and_the_target(tmp_path: Path) -> None:
    child = write(tmp_path, WORKLOAD + "base: missing.yaml\n")
    error = config_error(child)
    assert error is not None
    assert str(error) == f"{child}: base: {tmp_path / 'missing.yaml'}: file not found"


def test_errors_from_a_base_file_name_that_file(tmp_path: Path) -> None:
    base = write(tmp_path, {"workload": {"kind": "digits"}, "trainig": {"batch_size": 8}}, "base.yaml")
    child = write(tmp_path, {"base": "base.yaml", "training": {"batch_size": "big"}}, "child.yaml")
    error = config_error(child)
    assert error is not None
    lines = str(error).splitlines()
    assert f"{child}: trainig: unknown key; did you mean 'training'?" in lines[1]
    assert lines[1].endswith(f"(from {base})")
    assert lines[0].startswith(f"{child}: training.batch_size: expected a valid integer")
    assert "(from" not in lines[0], "the child's own value is not the base file's"


def test_circular_base_shows_the_chain(tmp_path: Path) -> None:
    write(tmp_path, {"base": "b.yaml"}, "a.yaml")
    write(tmp_path, {"base": "a.yaml", "workload": {"kind": "digits"}}, "b.yaml")
    with pytest.raises(ConfigError, match=r"circular reference \(a\.yaml -> b\.yaml -> a\.yaml\)"):
        load_config(tmp_path / "a.yaml")


def test_non_utf8_file_names_the_line(tmp_path: Path) -> None:
    error = config_error(write(tmp_path, WORKLOAD.encode() + b"run: {name: caf\xe9}\n"))
    assert error is not None and "line 2: not UTF-8 text (byte 0xe9)" in str(error)


BAD_SETS = [
    (["training.max_steps"], "expected KEY.PATH=VALUE"),
    (["=5"], "expected KEY.PATH=VALUE"),
    (["training..max_steps=5"], "has an empty or blank part"),
    ([".=5"], "has an empty or blank part"),
    (["training. max_steps=5"], "has an empty or blank part"),
    (["training.batch_size.x=1"], "training.batch_size is a value (64), not a section"),
    (["training.batch_size=lots"], "training.batch_size: expected a valid integer, got a string 'lots'"),
    (["training.batch_size=true"], "(from --set training.batch_size=true)"),
    (["traning.batch_size=5"], "traning: unknown key; did you mean 'training'?"),
    (["workload.kind=resnet"], "(from --set workload.kind=resnet)"),
]


@pytest.mark.parametrize(("items", "expected"), BAD_SETS, ids=[e for _, e in BAD_SETS])
def test_hand_picked_bad_set_strings(tmp_path: Path, items: list[str], expected: str) -> None:
    error = config_error(write(tmp_path, WORKLOAD + "training: {batch_size: 64}\n"), items)
    assert error is not None and expected in str(error), error


def test_set_keeps_text_settings_text_and_reads_numbers_as_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, WORKLOAD + "optimizer: {lr: 1e-3}\n")
    assert load_config(path).optimizer.lr == pytest.approx(0.001)
    cfg = load_config(path, ["run.name=0123", "run.output_dir=2024", "optimizer.lr=5e-4", "training.seed=7"])
    assert (cfg.run.name, cfg.run.output_dir) == ("0123", "2024")
    assert (cfg.optimizer.lr, cfg.training.seed) == (pytest.approx(5e-4), 7)
    assert load_config(path, ["metrics.bind_address=null"]).metrics.bind_address is None


# --- through the trainer's command line ----------------------------------------------------------------

# Each run imports torch (seconds): a few cases, one per kind of failure.
CLI_CASES = [
    ("workload: {kind: digits\n", [], "invalid YAML"),
    ("workload: {kind: digits}\n", ["--set", "training..x=1"], "has an empty or blank part"),
    ("workload: {kind: digits}\nbase: nowhere.yaml\n", [], "nowhere.yaml: file not found"),
]


@pytest.mark.parametrize(("document", "args", "expected"), CLI_CASES, ids=[c[2] for c in CLI_CASES])
def test_cli_check_exits_2_without_traceback_or_files(
    tmp_path: Path, document: str, args: list[str], expected: str
) -> None:
    runs = tmp_path / "runs"
    path = write(tmp_path, document + f"run: {{output_dir: {runs}}}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "ddp.real_ddp_trainer", "--config", str(path), *args, "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert str(path) in proc.stderr and expected in proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"], "nothing may be written"
