"""A funded embedded regtest node served over JSON-RPC, for the watcher's kernel-chain tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from superscalar.chain.bitcoind import BitcoindClient
from superscalar.chain.node import RegtestNode
from superscalar.chain.service import serve_node


@pytest.fixture
def node(tmp_path: Path) -> Iterator[RegtestNode]:
    with RegtestNode(tmp_path / "node") as n:
        n.mine_to_address(110, n.new_address())
        yield n


@pytest.fixture
def rpc(node: RegtestNode) -> Iterator[BitcoindClient]:
    with serve_node(node) as (_, client):
        yield client
        client.close()
