"""Taxonomy rules and dataset config validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from dermaseg.datasets.config import load_dataset_config
from dermaseg.datasets.taxonomy import DEFAULT_TAXONOMY, Taxonomy
from dermaseg.errors import InputError


def test_default_taxonomy() -> None:
    assert DEFAULT_TAXONOMY.names == ["background", "vitiligo", "scar", "thinning"]
    assert [c.treatable for c in DEFAULT_TAXONOMY.classes] == [False, True, True, True]
    assert DEFAULT_TAXONOMY.palette.shape == (4, 3)
    assert Taxonomy.from_json(DEFAULT_TAXONOMY.to_json()) == DEFAULT_TAXONOMY


def test_class_lookup() -> None:
    assert DEFAULT_TAXONOMY.class_id("scar") == 2
    assert DEFAULT_TAXONOMY.class_id(3) == 3
    with pytest.raises(KeyError, match="unknown class 'mole'"):
        DEFAULT_TAXONOMY.class_id("mole")
    with pytest.raises(KeyError):
        DEFAULT_TAXONOMY.class_id(4)


@pytest.mark.parametrize(
    ("entries", "match"),
    [
        ([{"name": "background", "color": (0, 0, 0)}], "at least one other"),
        ([{"name": "a", "color": (0, 0, 0)}, {"name": "a", "color": (1, 1, 1)}], "duplicate"),
        (
            [
                {"name": "bg", "color": (0, 0, 0), "treatable": True},
                {"name": "x", "color": (1, 1, 1)},
            ],
            "background",
        ),
        ([{"name": "bg", "color": (0, 0, 300)}, {"name": "x", "color": (1, 1, 1)}], "0..255"),
    ],
)
def test_invalid_taxonomies(entries: list[dict], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        Taxonomy.from_names(entries)


def test_custom_classes_and_value_map(tmp_path: Path) -> None:
    (tmp_path / "dataset.yaml").write_text(
        "classes:\n"
        "  - {name: background, color: [0, 0, 0]}\n"
        "  - {name: lesion, color: [255, 0, 0], treatable: true}\n"
        "value_map: {0: background, 255: lesion}\n"
    )
    config = load_dataset_config(tmp_path)
    assert config.taxonomy().names == ["background", "lesion"]
    assert config.root == tmp_path.resolve()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("formt: masks\n", "formt: unknown key; did you mean 'format'"),
        ("split: {sed: 1}\n", "split.sed: unknown key; did you mean 'seed'"),
        ("format: pascal\n", "format: Input should be 'masks', 'coco' or 'labelme'"),
        ("split: {val: 0.6, test: 0.5}\n", "leaves nothing to train on"),
        ("[1, 2]\n", "expected a mapping"),
        ("a: [1, 2\n", "invalid YAML at line"),
        ("value_map: {1: mole}\n", "unknown class 'mole'"),
    ],
)
def test_config_errors_are_one_line(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "dataset.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_dataset_config(path)
    assert match in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_folder_without_dataset(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a dataset"):
        load_dataset_config(tmp_path)
    with pytest.raises(InputError, match="dataset not found"):
        load_dataset_config(tmp_path / "missing")
