"""The one MuSig2 round trip the LSP coordinates over the wire, for every N-party signature.

The factory ceremony, a cooperative close, a close with the clients that stayed
and a leaf advance all run the same exchange; only their messages differ:

1. a proposal to each remote signer, then one nonce bundle from each;
2. our own secret-nonce use is persisted (`record_nonce_use`) *before* our
   nonces exist, so a crash can never make us sign twice with one nonce;
3. each remote signer gets its aggregate nonces, then sends partial signatures;
4. our own partial signatures, and the final BIP340 signature per session.

A bundle that does not decode, misses or adds a session, or carries a partial
signature that does not verify blames its sender: a `PeerFault` coded
`<what>-bad-nonces` / `<what>-bad-psigs`, never a fault of the whole group.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from superscalar.channel.errors import ChannelError
from superscalar.factory.errors import FactoryError
from superscalar.factory.signing import (
    AggNonceBundle,
    Coordinator,
    NonceBundle,
    PartialSigBundle,
    Signer,
    SigningPlan,
)
from superscalar.wire.codec import Hex, Message

from .peers import Peer, PeerFault, PeerLink

__all__ = ["Seat", "musig_round"]


N = TypeVar("N", bound=Message)
P = TypeVar("P", bound=Message)


@dataclass(frozen=True)
class Seat:
    """A remote signer: the peer that speaks for it and its index in the signing plan."""

    peer: Peer
    index: int


async def musig_round(
    link: PeerLink,
    fid: bytes,
    plan: SigningPlan,
    seats: Sequence[Seat],
    local: Mapping[int, Signer],
    *,
    propose: Callable[[Seat], Message],
    nonces: type[N],
    aggregate: Callable[[Seat, AggNonceBundle], Message],
    psigs: type[P],
    record_nonce_use: Callable[[], None],
    check_nonces: Callable[[Seat, N], None] | None = None,
    before_sign: Callable[[], None] | None = None,
) -> dict[int, bytes]:
    """Run the round with `seats` (remote) and `local` (our signers by index); return the
    final signature of every session of `plan`. Raises `PeerFault` blaming one peer.

    `check_nonces` may refuse a peer's nonce message for what else it carries (raise
    `ValueError`, `ChannelError` or `FactoryError`: the peer is blamed); `before_sign` runs
    after every remote partial signature verified, before ours exist, and may raise to
    abandon the round with nothing of ours signed."""
    what = link.what
    coordinator = Coordinator(plan)
    peers = [s.peer for s in seats]
    for seat in seats:
        await link.send(seat.peer, propose(seat))
    for seat, nmsg in zip(seats, await link.gather(peers, nonces, fid), strict=True):
        try:
            if check_nonces is not None:
                check_nonces(seat, nmsg)
            coordinator.add_nonces(NonceBundle.from_bytes(bytes(_bundle(nmsg))), seat.index)
        except (ChannelError, FactoryError, ValueError) as exc:
            raise PeerFault(seat.peer, f"bad nonces: {exc}", f"{what}-bad-nonces") from exc
    record_nonce_use()
    for index, signer in local.items():
        coordinator.add_nonces(signer.nonces(), index)
    aggs = coordinator.aggregate_nonces()
    for seat in seats:
        await link.send(seat.peer, aggregate(seat, aggs[seat.index]))
    for seat, pmsg in zip(seats, await link.gather(peers, psigs, fid), strict=True):
        try:
            bundle = PartialSigBundle.from_bytes(bytes(_bundle(pmsg)))
            coordinator.add_partial_sigs(bundle, seat.index)
        except (FactoryError, ValueError) as exc:
            raise PeerFault(
                seat.peer, f"bad partial signatures: {exc}", f"{what}-bad-psigs"
            ) from exc
    if before_sign is not None:
        before_sign()
    for index, signer in local.items():
        coordinator.add_partial_sigs(signer.sign(aggs[index]), index)
    return coordinator.finalize()


def _bundle(msg: Message) -> Hex:
    bundle: Hex = getattr(msg, "bundle")  # noqa: B009 - every nonce/psig message has one
    return bundle
