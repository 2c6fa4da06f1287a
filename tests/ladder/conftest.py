"""Fixtures for the ladder's kernel-chain tests: the funded regtest node."""

from __future__ import annotations

from tests.chain.conftest import node

__all__ = ["node"]
