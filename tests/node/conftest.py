"""Fixtures for the in-process daemon tests: the funded regtest node and its RPC server."""

from __future__ import annotations

from tests.chain.conftest import node, rpc

__all__ = ["node", "rpc"]
