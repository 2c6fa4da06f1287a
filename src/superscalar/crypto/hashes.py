"""SHA256 and BIP340 tagged hashes.

Tagged hashes are on every hot path (taproot tweaks, challenges, sighashes), so
the `SHA256(tag) || SHA256(tag)` prefix is hashed once per tag and its state
copied, rather than rehashed on every call.
"""

from __future__ import annotations

import hashlib
from functools import cache

__all__ = ["hash160", "sha256", "tagged_hash"]


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@cache
def _tag_state(tag: str) -> hashlib._Hash:
    tag_digest = hashlib.sha256(tag.encode()).digest()
    return hashlib.sha256(tag_digest + tag_digest)


def tagged_hash(tag: str, data: bytes) -> bytes:
    """BIP340 `hash_tag(x) = SHA256(SHA256(tag) || SHA256(tag) || x)`."""
    state = _tag_state(tag).copy()
    state.update(data)
    return state.digest()


def hash160(data: bytes) -> bytes:
    """RIPEMD160(SHA256(data)), for P2WPKH and friends."""
    return hashlib.new("ripemd160", hashlib.sha256(data).digest()).digest()
