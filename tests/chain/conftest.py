"""Fixtures for the embedded regtest node: a fresh kernel chain with a funded wallet."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from superscalar.chain.node import RegtestNode


@pytest.fixture
def node(tmp_path: Path) -> Iterator[RegtestNode]:
    """A node at height 110 whose wallet holds ten mature 50-BTC coinbases."""
    with RegtestNode(tmp_path / "node") as n:
        n.mine_to_address(110, n.new_address())
        yield n
