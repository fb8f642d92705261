"""User-facing errors of the launcher (config mistakes): one line, exit code 2."""

from __future__ import annotations

from typing import Any

EXIT_CONFIG = 2


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ConfigError(Exception):
    """A mistake in the user's config: names the file, field path, bad value and the fix."""

    def __init__(self, field: str, value: Any, fix: str, source: str = "<config>") -> None:
        self.field = field
        self.value = value
        self.fix = fix
        self.source = source
        super().__init__(self.line())

    def with_source(self, source: str) -> ConfigError:
        return ConfigError(self.field, self.value, self.fix, source)

    def line(self) -> str:
        value = "" if self.value is None else f" = {_short(self.value)}"
        return f"{self.source}: {self.field}{value}: {self.fix}"
