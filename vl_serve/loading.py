"""Config files -> validated pydantic models, each mistake as one ConfigError line.

Three steps, each failing with a :class:`ConfigError` that names the file, the field path, the bad
value and the fix:

1. YAML parse (:func:`read_yaml`);
2. ``${VAR}`` / ``${VAR:-default}`` interpolation from the environment, strings only
   (:func:`interpolate`);
3. pydantic validation, the first error converted to one line (:func:`validate`).

Nothing here knows vl-serve's fields: :mod:`vl_serve.config` passes its model in, so the schema
imports the loader and never the other way round.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from vl_serve.errors import ConfigError

M = TypeVar("M", bound=BaseModel)

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """The YAML tree of a file; an unreadable file or bad syntax is a ConfigError."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            "<file>", source, f"cannot read the file ({exc.strerror})", source
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "<file>"
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(where, None, f"{problem}; fix the YAML syntax", source) from None


def interpolate(value: Any, path: str = "") -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string of a YAML tree."""
    if isinstance(value, dict):
        return {k: interpolate(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(
            path or "<root>",
            match.group(0),
            f"environment variable {name} is not set; export it or write ${{{name}:-default}}",
        )

    return _VAR.sub(sub, value)


def validate(model: type[M], data: Any, source: str = "<config>") -> M:
    """Interpolate and validate a YAML tree as ``model``; the first problem is a ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError("<root>", data, "the file must be a YAML mapping of fields", source)
    try:
        data = interpolate(data)
    except ConfigError as err:
        raise err.with_source(source) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        msg = str(first["msg"])
        if first["type"] == "extra_forbidden":
            fields = _fields_at(model, loc[:-1])
            msg = f"unknown field; allowed here: {', '.join(fields)}"
            value: Any = _lookup(data, loc)
        else:
            value = first.get("input")
            msg = msg.removeprefix("Value error, ")
        raise ConfigError(_loc(loc), value, msg, source) from None


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def _lookup(data: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names of the (nested) model at ``loc``, for an "unknown field" message."""
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(model.model_fields)
