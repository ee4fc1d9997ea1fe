"""YAML aliases in trainer configs are bounded: an alias bomb ("billion laughs") anywhere in a config,
factory kwargs included, is refused at load time, quickly and in little memory, naming the file and line;
ordinary anchors still work."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest

from ddp.config import load_config
from ddp.config_errors import MAX_EXPANDED_NODES, ConfigError

IMPORT_WORKLOAD = (
    "workload:\n"
    "  kind: import\n"
    "  model: tests.fixtures.workloads:tiny_model\n"
    "  dataset: tests.fixtures.workloads:dataset_with_nan\n"
)


def laughs(levels: int, width: int = 10, indent: str = "    ") -> str:
    """The classic bomb: each level lists the previous one `width` times (width**levels values)."""
    lines = [f"{indent}l0: &l0 [{', '.join(['lol'] * width)}]"]
    for level in range(1, levels):
        lines.append(f"{indent}l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def mapping_laughs(levels: int, width: int = 10, indent: str = "    ") -> str:
    """The same with mappings, the shape every walk over a config's keys expands."""
    lines = [f"{indent}m0: &m0 {{{', '.join(f'k{i}: lol' for i in range(width))}}}"]
    for level in range(1, levels):
        keys = ", ".join(f"k{i}: *m{level - 1}" for i in range(width))
        lines.append(f"{indent}m{level}: &m{level} {{{keys}}}")
    return "\n".join(lines) + "\n"


def measured_refusal(path: Path, overrides: list[str] | None = None) -> tuple[ConfigError, float, int]:
    """The ConfigError of loading `path`, the seconds it took and the peak bytes Python allocated."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ConfigError) as info:
            load_config(path, overrides)
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return info.value, elapsed, peak


# Refusing takes milliseconds and kilobytes; expanding a bomb of 10**9 values would take gigabytes and
# minutes. The bounds sit far from both, so the load cannot be slow enough to matter either way.
FAST_S = 2.0
SMALL_BYTES = 16 * 2**20

BOMBS = [
    pytest.param(IMPORT_WORKLOAD + "  dataset_kwargs:\n" + laughs(9), id="list-bomb-in-dataset_kwargs"),
    pytest.param(IMPORT_WORKLOAD + "  model_kwargs:\n" + laughs(9), id="list-bomb-in-model_kwargs"),
    # 10**6 keys: enough to be refused, few enough that a loader without the bound finishes (and accepts).
    pytest.param(
        IMPORT_WORKLOAD + "  dataset_kwargs:\n" + mapping_laughs(6), id="mapping-bomb-in-dataset_kwargs"
    ),
    pytest.param(
        "workload: {kind: digits}\nx-anchors:\n" + laughs(9, indent="  ") + "run: {name: *l8}\n",
        id="bomb-outside-the-schema",
    ),
]


@pytest.mark.parametrize("document", BOMBS)
def test_alias_bomb_is_refused_quickly_in_little_memory(tmp_path: Path, document: str) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(document)
    error, elapsed, peak = measured_refusal(path)
    message = str(error)
    assert message.startswith(f"{path}: line "), message
    assert f"expand to more than {MAX_EXPANDED_NODES} values" in message
    assert elapsed < FAST_S, f"refusing took {elapsed:.2f} s"
    assert peak < SMALL_BYTES, f"refusing allocated {peak / 2**20:.1f} MiB"


def test_alias_bomb_in_a_set_override_is_refused_naming_the_override(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(IMPORT_WORKLOAD)
    inner = ", ".join(f"l{n}: &l{n} [{', '.join([f'*l{n - 1}' if n else 'lol'] * 10)}]" for n in range(9))
    error, elapsed, peak = measured_refusal(path, [f"workload.dataset_kwargs={{{inner}}}"])
    assert "override 'workload.dataset_kwargs=" in str(error)
    assert f"expand to more than {MAX_EXPANDED_NODES} values" in str(error)
    assert elapsed < FAST_S and peak < SMALL_BYTES


def test_an_alias_inside_what_it_names_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cycle.yaml"
    path.write_text(IMPORT_WORKLOAD + "  dataset_kwargs: {loop: &loop [1, *loop]}\n")
    with pytest.raises(
        ConfigError, match=r"line 5, column 26: invalid YAML: an alias refers to a collection"
    ):
        load_config(path)


def test_ordinary_anchors_and_merge_keys_still_load(tmp_path: Path) -> None:
    path = tmp_path / "anchors.yaml"
    path.write_text(
        IMPORT_WORKLOAD
        + "  model_kwargs: &shape {input_dim: 8, classes: 3}\n"
        + "  dataset_kwargs: {<<: *shape, size: 64}\n"
    )
    cfg = load_config(path)
    assert cfg.workload.kind == "import"
    assert cfg.workload.model_kwargs == {"input_dim": 8, "classes": 3}
    assert cfg.workload.dataset_kwargs == {"input_dim": 8, "classes": 3, "size": 64}


def test_values_reused_up_to_the_bound_load(tmp_path: Path) -> None:
    path = tmp_path / "many.yaml"
    # 10**4 values through aliases, a tenth of the bound.
    path.write_text(
        IMPORT_WORKLOAD + "  dataset_kwargs:\n    size: 64\n    table:\n" + laughs(4, indent="      ")
    )
    table = load_config(path).workload.dataset_kwargs["table"]
    assert len(table["l3"]) == 10 and len(table["l3"][0][0]) == 10
