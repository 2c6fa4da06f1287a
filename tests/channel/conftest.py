"""Fixtures for channel tests: the embedded regtest node (shared with the chain tests)."""

from __future__ import annotations

from tests.chain.conftest import node

__all__ = ["node"]
