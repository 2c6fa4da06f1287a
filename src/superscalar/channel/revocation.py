"""The counterparty's revealed per-commitment secrets, stored in O(log n).

`RevocationStore` is an immutable view over BOLT-3's compact shachain storage
(at most 49 secrets, from which every revealed secret can be re-derived): an
insert returns a new store, so a refused secret leaves the channel state that
holds the store exactly as it was. `RevokedCommitment` is what the penalty
builder needs about one revoked remote commitment besides its secret: its
number, txid and content. The channel emits one per revocation for the node
to persist (a row per commitment, like a revocation log); the state itself
stays O(1) in the number of past commitments.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..crypto.errors import ShachainError
from ..crypto.shachain import MAX_INDEX, ShachainStore, commitment_index
from .errors import InvalidRevocationError
from .htlc import CommitmentSpec

__all__ = ["RevocationStore", "RevokedCommitment"]


@dataclass(frozen=True, slots=True)
class RevocationStore:
    """Secrets the peer revealed; `slots` is the shachain store's (slot, index, secret) list."""

    slots: tuple[tuple[int, int, bytes], ...] = ()
    next_index: int = MAX_INDEX

    def _store(self) -> ShachainStore:
        return ShachainStore(
            {slot: (index, secret) for slot, index, secret in self.slots}, self.next_index
        )

    def insert(self, commitment_number: int, secret: bytes) -> RevocationStore:
        """A store that also holds `secret`; raises `InvalidRevocationError` if it does not fit."""
        store = self._store()
        try:
            store.insert(commitment_index(commitment_number), secret)
        except ShachainError as exc:
            raise InvalidRevocationError(str(exc)) from exc
        slots = tuple(sorted((slot, index, sec) for slot, (index, sec) in store.known.items()))
        return RevocationStore(slots, store.next_index)

    def secret(self, commitment_number: int) -> bytes | None:
        """The revealed secret of remote commitment `commitment_number`, if revoked."""
        try:
            return self._store().lookup(commitment_index(commitment_number))
        except ShachainError:
            return None

    @property
    def revoked_count(self) -> int:
        """How many commitments (0, 1, ...) the peer has revoked."""
        return MAX_INDEX - self.next_index

    def __len__(self) -> int:
        return len(self.slots)


@dataclass(frozen=True, slots=True)
class RevokedCommitment:
    """One revoked remote commitment: enough, with its secret, to rebuild and punish it."""

    number: int
    txid: bytes
    spec: CommitmentSpec
