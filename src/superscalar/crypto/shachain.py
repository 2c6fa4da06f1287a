"""BOLT-3 per-commitment secrets: generation from a seed and O(log n) storage.

The sender derives secret I from one seed; the receiver keeps at most 49
(index, secret) pairs and can still derive every secret it was ever given.
Commitment number n uses index 2^48 − 1 − n, so indices arrive counting down.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from .errors import ShachainError

__all__ = ["MAX_INDEX", "ShachainSeed", "ShachainStore", "commitment_index", "derive_secret"]

MAX_INDEX = (1 << 48) - 1


def commitment_index(commitment_number: int) -> int:
    """The shachain index of commitment number n (0, 1, 2, … → 2^48−1, 2^48−2, …)."""
    if not 0 <= commitment_number <= MAX_INDEX:
        raise ShachainError("commitment number out of range")
    return MAX_INDEX - commitment_number


def derive_secret(base: bytes, bits: int, index: int) -> bytes:
    """BOLT-3 `derive_secret`: flip-and-hash the low `bits` bits of `index` into `base`."""
    value = bytearray(base)
    for bit in range(bits - 1, -1, -1):
        if (index >> bit) & 1:
            value[bit // 8] ^= 1 << (bit % 8)
            value[:] = hashlib.sha256(value).digest()
    return bytes(value)


def _check_index(index: int) -> None:
    if not isinstance(index, int) or not 0 <= index <= MAX_INDEX:
        raise ShachainError(f"shachain index out of range: {index!r}")


class ShachainSeed:
    """The sender's seed; never printed."""

    __slots__ = ("_seed",)

    def __init__(self, seed: bytes) -> None:
        if not isinstance(seed, bytes) or len(seed) != 32:
            raise ShachainError("shachain seed must be 32 bytes")
        self._seed = seed

    def secret(self, index: int) -> bytes:
        """`generate_from_seed(seed, index)`."""
        _check_index(index)
        return derive_secret(self._seed, 48, index)

    def commitment_secret(self, commitment_number: int) -> bytes:
        return self.secret(commitment_index(commitment_number))

    def to_bytes(self) -> bytes:
        return self._seed

    def __repr__(self) -> str:
        return "ShachainSeed(<secret>)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ShachainSeed) and hmac.compare_digest(self._seed, other._seed)

    def __hash__(self) -> int:
        return hash(hashlib.sha256(self._seed).digest())


def _trailing_zeros(index: int) -> int:
    return 48 if index == 0 else (index & -index).bit_length() - 1


@dataclass
class ShachainStore:
    """The receiver's compact store: one slot per trailing-zero count (49 at most).

    Secrets must arrive in strictly decreasing index order, one index at a time,
    and each must derive every secret stored in a lower slot; otherwise the
    insert is refused and the store is left unchanged.
    """

    known: dict[int, tuple[int, bytes]] = field(default_factory=dict)
    next_index: int = MAX_INDEX

    def insert(self, index: int, secret: bytes) -> None:
        _check_index(index)
        if not isinstance(secret, bytes) or len(secret) != 32:
            raise ShachainError("per-commitment secret must be 32 bytes")
        if index != self.next_index:
            raise ShachainError(f"expected secret for index {self.next_index}, got {index}")
        slot = _trailing_zeros(index)
        for lower in range(slot):
            if lower in self.known:
                old_index, old_secret = self.known[lower]
                if derive_secret(secret, slot, old_index) != old_secret:
                    raise ShachainError(
                        f"secret for index {index} does not derive the one for {old_index}"
                    )
        self.known[slot] = (index, secret)
        self.next_index = index - 1

    def lookup(self, index: int) -> bytes:
        """The secret for any index already covered by an inserted secret."""
        _check_index(index)
        for slot, (known_index, secret) in self.known.items():
            if (index >> slot) == (known_index >> slot) and index >= self.next_index + 1:
                return derive_secret(secret, slot, index)
        raise ShachainError(f"no secret known for index {index}")

    def __len__(self) -> int:
        return len(self.known)
