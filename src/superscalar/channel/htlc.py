"""HTLCs, channel updates and commitment specs: what a commitment pays, in millisatoshi.

A `CommitmentSpec` is one commitment transaction's content seen from its
holder: the holder's and the counterparty's balances and the HTLCs in flight
(offered by the holder, or received by it). `reduce` applies batches of
updates to a spec exactly as BOLT #2 orders them — all adds first, then
settlements — and refuses any update that does not fit, so an accepted
update can never make a commitment unbuildable.

Updates are the three `update_*` messages themselves: each side keeps its own
and its peer's in logs (see `state`) and both sides replay the same logs in the
same order, which is why both always build identical commitments.

A PTLC is an `Htlc` with a `point` P: it is settled by the scalar p with
p·G == P (the full compressed point, parity kept) instead of a preimage. Its
`payment_hash` is fixed to `ptlc_payment_hash(P)`, a lookup id only (no
script checks it), so every place that keys HTLCs by hash keeps working.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import Enum
from typing import TypeAlias

from ..crypto.errors import CryptoError
from ..crypto.hashes import sha256, tagged_hash
from ..crypto.keys import PublicKey, SecretKey
from .errors import BadPreimageError, InsufficientBalanceError, UnknownHtlcError

__all__ = [
    "CommitmentSpec",
    "Direction",
    "Htlc",
    "SpecHtlc",
    "Update",
    "UpdateAddHtlc",
    "UpdateFailHtlc",
    "UpdateFulfillHtlc",
    "check_preimage",
    "ptlc_payment_hash",
    "reduce",
]

_U64 = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class Htlc:
    """An HTLC: `id` counts up per offering side; amounts are in millisatoshi."""

    id: int
    amount_msat: int
    payment_hash: bytes
    cltv_expiry: int
    onion: bytes = b""
    point: PublicKey | None = None
    """Set for a PTLC: the lock is this point, settled by its scalar."""

    def __post_init__(self) -> None:
        for name in ("id", "amount_msat", "cltv_expiry"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _U64:
                raise ValueError(f"HTLC {name} must be a u64, got {value!r}")
        if not isinstance(self.payment_hash, bytes) or len(self.payment_hash) != 32:
            raise ValueError("payment hash must be 32 bytes")
        if not isinstance(self.onion, bytes):
            raise ValueError("onion must be bytes")
        if self.point is not None:
            if not isinstance(self.point, PublicKey):
                raise ValueError("PTLC point must be a public key")
            if self.payment_hash != ptlc_payment_hash(self.point):
                raise ValueError("a PTLC's payment hash must be ptlc_payment_hash(point)")

    @property
    def is_ptlc(self) -> bool:
        return self.point is not None

    @property
    def amount_sat(self) -> int:
        """The on-chain value: the msat part is dropped (BOLT #3)."""
        return self.amount_msat // 1000


def ptlc_payment_hash(point: PublicKey) -> bytes:
    """The lookup id a PTLC carries in `payment_hash`: bound to its point, never a hash lock."""
    return tagged_hash("SuperScalar/ptlc/id", point.data)


def check_preimage(htlc: Htlc, preimage: bytes) -> None:
    """Refuse a settlement secret that does not open `htlc` (a preimage, or a PTLC's scalar)."""
    if htlc.point is not None:
        _check_scalar(htlc, htlc.point, preimage)
        return
    if (
        not isinstance(preimage, bytes)
        or len(preimage) != 32
        or sha256(preimage) != htlc.payment_hash
    ):
        raise BadPreimageError(f"preimage does not hash to HTLC {htlc.id}'s payment hash")


def _check_scalar(htlc: Htlc, point: PublicKey, scalar: bytes) -> None:
    if not isinstance(scalar, bytes) or len(scalar) != 32:
        raise BadPreimageError(f"PTLC {htlc.id}'s secret must be a 32-byte scalar")
    try:
        ok = SecretKey(scalar).public_key == point
    except CryptoError:
        ok = False
    if not ok:
        raise BadPreimageError(f"scalar does not match PTLC {htlc.id}'s point")


class Direction(Enum):
    """Seen from a commitment's holder: it offered the HTLC, or received it."""

    OFFERED = "offered"
    RECEIVED = "received"

    def flip(self) -> Direction:
        return Direction.RECEIVED if self is Direction.OFFERED else Direction.OFFERED


@dataclass(frozen=True, slots=True)
class SpecHtlc:
    direction: Direction
    htlc: Htlc


def _order(h: SpecHtlc) -> tuple[str, int]:
    return (h.direction.value, h.htlc.id)


@dataclass(frozen=True, slots=True)
class CommitmentSpec:
    """Balances and in-flight HTLCs of one commitment, from its holder's side."""

    to_local_msat: int
    to_remote_msat: int
    htlcs: tuple[SpecHtlc, ...] = ()

    @property
    def total_msat(self) -> int:
        return (
            self.to_local_msat + self.to_remote_msat + sum(h.htlc.amount_msat for h in self.htlcs)
        )

    def mirror(self) -> CommitmentSpec:
        """The same content from the counterparty's side."""
        flipped = tuple(
            sorted((SpecHtlc(h.direction.flip(), h.htlc) for h in self.htlcs), key=_order)
        )
        return CommitmentSpec(self.to_remote_msat, self.to_local_msat, flipped)

    def find(self, direction: Direction, htlc_id: int) -> Htlc | None:
        for h in self.htlcs:
            if h.direction is direction and h.htlc.id == htlc_id:
                return h.htlc
        return None

    def offered(self) -> list[Htlc]:
        return [h.htlc for h in self.htlcs if h.direction is Direction.OFFERED]

    def received(self) -> list[Htlc]:
        return [h.htlc for h in self.htlcs if h.direction is Direction.RECEIVED]


@dataclass(frozen=True, slots=True)
class UpdateAddHtlc:
    """update_add_htlc: offer `htlc` to the peer."""

    htlc: Htlc


@dataclass(frozen=True, slots=True)
class UpdateFulfillHtlc:
    """update_fulfill_htlc: settle an HTLC the peer offered, with its preimage."""

    id: int
    preimage: bytes


@dataclass(frozen=True, slots=True)
class UpdateFailHtlc:
    """update_fail_htlc: give an HTLC the peer offered back to it."""

    id: int
    reason: bytes = b""


Update: TypeAlias = UpdateAddHtlc | UpdateFulfillHtlc | UpdateFailHtlc


def reduce(
    spec: CommitmentSpec, owner_updates: Iterable[Update], other_updates: Iterable[Update]
) -> CommitmentSpec:
    """Apply updates sent by the spec's holder (`owner_updates`) and by its peer.

    Adds come first (the offerer pays into the HTLC), then fulfills (the HTLC's
    value goes to the receiver) and fails (it goes back to the offerer). A
    settlement of an HTLC not in the spec, or an add the offerer cannot pay,
    raises; the input spec is never modified.
    """
    owner = list(owner_updates)
    other = list(other_updates)
    if not owner and not other:
        return spec
    local, remote = spec.to_local_msat, spec.to_remote_msat
    htlcs = {(h.direction, h.htlc.id): h for h in spec.htlcs}
    for updates, direction in ((owner, Direction.OFFERED), (other, Direction.RECEIVED)):
        for update in updates:
            if not isinstance(update, UpdateAddHtlc):
                continue
            key = (direction, update.htlc.id)
            if key in htlcs:
                raise UnknownHtlcError(f"HTLC id {update.htlc.id} added twice")
            if direction is Direction.OFFERED:
                local -= update.htlc.amount_msat
            else:
                remote -= update.htlc.amount_msat
            if local < 0 or remote < 0:
                raise InsufficientBalanceError(
                    f"offerer cannot pay HTLC {update.htlc.id} of {update.htlc.amount_msat} msat"
                )
            htlcs[key] = SpecHtlc(direction, update.htlc)
    # The holder settles HTLCs it received; its peer settles HTLCs the holder offered.
    for updates, direction in ((owner, Direction.RECEIVED), (other, Direction.OFFERED)):
        for update in updates:
            if isinstance(update, UpdateAddHtlc):
                continue
            found = htlcs.pop((direction, update.id), None)
            if found is None:
                raise UnknownHtlcError(f"no {direction.value} HTLC {update.id} to settle")
            amount = found.htlc.amount_msat
            receiver_gets = isinstance(update, UpdateFulfillHtlc)
            if receiver_gets == (direction is Direction.RECEIVED):
                local += amount
            else:
                remote += amount
    return replace(
        spec,
        to_local_msat=local,
        to_remote_msat=remote,
        htlcs=tuple(sorted(htlcs.values(), key=_order)),
    )
