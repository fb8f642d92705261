"""Shared fixtures: media files and a media HTTP server on 127.0.0.1 (never any other address)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.media_files import MediaServer, png_bytes


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("media")
    (root / "red.png").write_bytes(png_bytes(64, 64, (220, 20, 20)))
    (root / "big.png").write_bytes(png_bytes(192, 192, (20, 20, 220)))
    return root


@pytest.fixture(scope="module")
def media_server(media_dir: Path) -> Iterator[MediaServer]:
    server = MediaServer(media_dir)
    yield server
    server.close()
