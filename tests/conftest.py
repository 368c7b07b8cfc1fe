from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Broker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    if shutil.which("mosquitto") is None:
        pytest.fail("mosquitto binary not installed (.ci/run installs it)")
    b = Broker(tmp_path)
    yield b
    b.close()


@pytest.fixture
def make_broker(tmp_path: Path) -> Iterator[object]:
    made: list[Broker] = []

    def make(extra: str = "") -> Broker:
        b = Broker(tmp_path, extra)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()
