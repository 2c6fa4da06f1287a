"""The atomic move: a client's balance crosses into the new factory as one PTLC.

A mover's channel in the new factory opens with the whole capacity on the
LSP's side; the LSP then offers the client one PTLC of exactly the client's
old balance, locked to P = the client's key in the *old* factory
(`factory_key(node key, old rung)`, full compressed point). The client is
paid only by revealing p — off-chain in update_fulfill_htlc, on chain by
completing the LSP's adaptor signature (see `channel.ptlc`) — and either way
the LSP learns p at that moment, which is the turnover: with every client's
key the LSP closes the old factory alone. No separate key exchange remains.

Timing. The PTLC expires at E, chosen so that the LSP, learning p as late as
E, still has `margin` blocks to confirm the old factory's close before its
CLTV timeout; and at least the channel's `min_cltv_delta` from now, so the
client has time to claim on chain. If the client never reveals p the PTLC
times out back to the LSP and the client keeps its old balance (it stays).

Residual race (documented, not solved here): a client that starts a
unilateral exit of the old factory *before* revealing p can still reveal p
afterwards; the LSP's one-transaction lone close then conflicts with the
exit's kickoff. The LSP therefore never offers a move PTLC once the old
factory's funding output is spent, and with p it can still sign the
client's old channel output alone (key path) — but it races the client's
pre-signed commitment for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..channel.config import ChannelConfig
from ..channel.htlc import Htlc
from ..crypto.keys import PublicKey, SecretKey
from .errors import LadderError, TurnoverError

__all__ = [
    "CLAIM_MARGIN_BLOCKS",
    "MOVE_MARGIN_BLOCKS",
    "MovePtlc",
    "check_move_ptlc",
    "claim_deadline",
    "claim_lead",
    "move_amount",
    "plan_move",
]

MOVE_MARGIN_BLOCKS = 6
"""Blocks the LSP keeps between a move PTLC's expiry and the old factory's timeout."""

CLAIM_MARGIN_BLOCKS = 6
"""The client's own confirmation margin on top of the new factory's worst-case exit delay:
blocks for the exit's txs (tree path, commitment, PTLC-success) to get mined, each
possibly a block late."""


def claim_lead(new_exit_delay: int, min_cltv_delta: int, margin: int = CLAIM_MARGIN_BLOCKS) -> int:
    """Blocks before a move PTLC's expiry by which the client must have started going on
    chain to claim it: the new factory's whole exit path, a confirmation margin, and the
    channel's own claim budget (commitment + PTLC-success tx)."""
    return new_exit_delay + margin + min_cltv_delta


def claim_deadline(
    cltv_expiry: int, new_exit_delay: int, min_cltv_delta: int, margin: int = CLAIM_MARGIN_BLOCKS
) -> int:
    """The last height at which a client holding a fulfilled but not irrevocably committed
    move PTLC can still start its exit of the new factory and claim the PTLC in time."""
    return cltv_expiry - claim_lead(new_exit_delay, min_cltv_delta, margin)


@dataclass(frozen=True, slots=True)
class MovePtlc:
    """The one PTLC the LSP offers a mover in its new channel."""

    amount_msat: int
    point: PublicKey
    cltv_expiry: int


def move_amount(balance_msat: int) -> int:
    """The move PTLC's amount for an old balance: the balance itself, 1 msat for none (an
    HTLC must carry something)."""
    return max(balance_msat, 1)


def plan_move(
    balance_msat: int,
    capacity_sat: int,
    config: ChannelConfig,
    point: PublicKey,
    *,
    height: int,
    old_timeout: int,
    margin: int = MOVE_MARGIN_BLOCKS,
    new_exit_delay: int = 0,
) -> MovePtlc:
    """The PTLC moving `balance_msat` into a new channel of `capacity_sat` opened all on the
    LSP's side, or a `LadderError` saying why the channel cannot carry it.

    Small balances still move, so every mover's key reaches the LSP: below dust
    the PTLC is trimmed from the commitments (enforced off-chain only; the most
    either side can lose on chain is that dust), and a zero balance moves as a
    1-msat PTLC (`move_amount`) — a key guarding nothing is handed over for a gift.

    With `new_exit_delay` (the new factory's worst-case exit delay) the plan refuses an
    expiry the client would refuse (`check_move_ptlc` needs `claim_lead` blocks).
    """
    if isinstance(balance_msat, bool) or not isinstance(balance_msat, int) or balance_msat < 0:
        raise LadderError(f"moved balance must be a non-negative int, got {balance_msat!r}")
    amount = move_amount(balance_msat)
    limit = min(
        capacity_sat * 1000 - config.channel_reserve_sat * 1000,
        config.max_htlc_value_in_flight_msat,
    )
    if amount > limit:
        raise LadderError(
            f"moved balance {balance_msat} msat exceeds what the new channel can offer"
            f" ({limit} msat of {capacity_sat} sat capacity)"
        )
    if amount < config.htlc_minimum_msat:
        raise LadderError(f"moved balance is below the HTLC minimum of {config.htlc_minimum_msat}")
    earliest = height + (
        claim_lead(new_exit_delay, config.min_cltv_delta)
        if new_exit_delay
        else config.min_cltv_delta
    )
    latest = min(old_timeout - margin, height + config.max_cltv_delta)
    if config.cltv_deadline is not None:
        latest = min(latest, config.cltv_deadline)
    if earliest > latest:
        raise LadderError(
            f"no expiry fits: the move PTLC needs {earliest} or later but must expire by"
            f" {latest} (old factory times out at {old_timeout})"
        )
    return MovePtlc(amount, point, latest)


def check_move_ptlc(
    htlc: Htlc,
    *,
    expected_msat: int,
    key: SecretKey,
    height: int,
    min_cltv_delta: int,
    old_timeout: int,
    new_exit_delay: int,
    margin: int = CLAIM_MARGIN_BLOCKS,
) -> bytes:
    """The client's check before revealing its old key: the exact balance, locked to that
    very key, claimable on chain in time, and expiring before the old factory does (so
    our old balance is still ours if the LSP lets it time out). Returns the scalar.

    "Claimable in time" is the client's own bound, never the message's: should the LSP
    not complete the update after our fulfil, we must exit the NEW factory (its
    worst-case exit delay, `new_exit_delay`, from our verified view of it), then confirm
    our commitment and the PTLC-success tx — all before the expiry, when the LSP's
    timeout path opens. So expiry − height ≥ new_exit_delay + margin + min_cltv_delta
    (`claim_lead`); `min_cltv_delta` and `margin` are our channel config's constants."""
    if htlc.point is None:
        raise TurnoverError("not a PTLC: a move is locked to our old factory key")
    if htlc.point != key.public_key:
        raise TurnoverError("move PTLC is not locked to our old factory key")
    if htlc.amount_msat != move_amount(expected_msat):
        raise TurnoverError(
            f"move PTLC carries {htlc.amount_msat} msat, expected {move_amount(expected_msat)}"
        )
    lead = claim_lead(new_exit_delay, min_cltv_delta, margin)
    if htlc.cltv_expiry - height < lead:
        raise TurnoverError(
            f"move PTLC expires at {htlc.cltv_expiry}: too soon to claim on chain (needs"
            f" {lead} blocks from height {height}: exit {new_exit_delay} + margin {margin}"
            f" + claim {min_cltv_delta})",
            code="ptlc-expiry-too-soon",
        )
    if htlc.cltv_expiry >= old_timeout:
        raise TurnoverError(
            f"move PTLC expires at {htlc.cltv_expiry}, not before the old factory's timeout"
            f" {old_timeout}",
            code="ptlc-expiry-too-late",
        )
    return key.to_bytes()
