"""Shared test fixtures: the location of vector data files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).parent / "data"


def load_json(relpath: str) -> Any:
    return json.loads((DATA / relpath).read_text())


@pytest.fixture
def data_dir() -> Path:
    return DATA
