"""The config reference: docs/config.md is what `vl-serve schema` prints, every field described."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel

from vl_serve import schema
from vl_serve.config import VLServeConfig

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "config.md"


def test_docs_config_md_is_what_the_schema_command_prints() -> None:
    assert DOC.read_text(encoding="utf-8") == schema.markdown(), (
        f"docs/config.md is out of date with vl_serve/config.py; regenerate it: {schema.REGENERATE}"
    )


def test_every_field_has_a_description() -> None:
    missing = [path for path, info in schema.fields() if not (info.description or "").strip()]
    assert not missing, (
        f"config fields without a description (add Field(description=...)): {missing}"
    )


def _models(model: type[BaseModel] = VLServeConfig) -> list[type[BaseModel]]:
    nested = [f.annotation for f in model.model_fields.values()]
    return [model] + [
        m for n in nested if isinstance(n, type) and issubclass(n, BaseModel) for m in _models(n)
    ]


def test_every_section_is_documented_and_refuses_unknown_fields() -> None:
    for model in _models():
        assert (model.__doc__ or "").strip(), (
            f"{model.__name__} has no docstring (its section intro)"
        )
        assert model.model_config.get("extra") == "forbid", model.__name__


def test_reference_lists_every_dotted_field_once() -> None:
    text = schema.markdown()
    paths = [path for path, _ in schema.fields()]
    assert "server.port" in paths and "media.max_item_bytes" in paths
    for path in paths:
        assert text.count(f"| `{path}` |") == 1, path


# Rows as the reference prints them: dotted path -> the row's type, default and allowed cells.
ROWS = [
    pytest.param("model", "| string | required | min length 1 |", id="required"),
    pytest.param("server.port", "| integer | `8000` | >= 1; <= 65535 |", id="bounds"),
    pytest.param("server.host", "| string | `127.0.0.1` |  |", id="string-default"),
    pytest.param("dtype", "| string or null | `null` | one of `auto`, `half`,", id="choices"),
    pytest.param(
        "reasoning.response_field", "| string | `both` | one of `reasoning`,", id="literal"
    ),
    pytest.param("gpu_memory_utilization", "| number or null | `null` | > 0.0; <= 1.0 |", id="gt"),
    pytest.param("media.allowed_networks", "| list[string] | `[]` |", id="factory"),
    pytest.param("media_io_kwargs", "| map[string, map[string, any]] or null |", id="nested-map"),
    pytest.param(
        "server.metrics_token_env", "| pattern `^[A-Za-z_][A-Za-z0-9_]*$` |", id="pattern"
    ),
    pytest.param("media", "| section, see [`media`](#media) |  |  |", id="section"),
]


@pytest.mark.parametrize(("path", "cells"), ROWS)
def test_reference_rows(path: str, cells: str) -> None:
    (row,) = [line for line in schema.markdown().splitlines() if line.startswith(f"| `{path}` |")]
    assert cells in row


def test_reference_keeps_angle_brackets_visible() -> None:
    (row,) = [line for line in schema.markdown().splitlines() if line.startswith("| `model` |")]
    assert "'builtin:\\<name>'" in row  # "<name>" alone would render as an (invisible) HTML tag


def test_json_schema_is_pydantics() -> None:
    printed = json.loads(schema.json_schema())
    assert printed == VLServeConfig.model_json_schema()
    assert printed["required"] == ["model"] and printed["additionalProperties"] is False
