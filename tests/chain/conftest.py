"""Fixtures for the embedded regtest node: a fresh kernel chain with a funded wallet,
and the same node served over bitcoind-style JSON-RPC (`rpc`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from superscalar.chain.bitcoind import BitcoindClient
from superscalar.chain.node import RegtestNode
from superscalar.chain.service import serve_node


@pytest.fixture
def node(tmp_path: Path) -> Iterator[RegtestNode]:
    """A node at height 110 whose wallet holds ten mature 50-BTC coinbases."""
    with RegtestNode(tmp_path / "node") as n:
        n.mine_to_address(110, n.new_address())
        yield n


@pytest.fixture
def rpc(node: RegtestNode) -> Iterator[BitcoindClient]:
    """A `BitcoindClient` talking to `node` over a real local HTTP JSON-RPC server."""
    with serve_node(node) as (_, client):
        yield client
        client.close()
