"""Factory-creation and close messages (LSP ↔ client), auto-registered by `wire.codec`.

Flow (one `attempt` number per ceremony try, so a restarted ceremony can never
be confused with the one it replaces):

    client → LSP   join_request        (its channel amount and payout script)
    LSP → client   factory_propose     (the parameters and the client's own root→leaf
                                        path view, which it checks before signing)
    client → LSP   factory_nonces      (sparse: its own path sessions only)
    LSP → client   factory_agg_nonces
    client → LSP   factory_psigs
    LSP → client   factory_ready       (final signatures for the client's path and the
                                        distribution tx)
    client → LSP   factory_ready_ack   (both stored: only then is the factory funded)
    LSP → client   factory_funded      (the funding txid, once broadcast)
    LSP → client   close_propose → client close_nonce → LSP close_agg_nonce
                   → client close_psig → LSP close_done (txid)
    LSP → client   factory_abort       (this attempt is dead; a fresh one follows)
    both ways      channel_msg         (a leaf channel message, after factory_funded)
    client → tower tower_hint          (an encrypted breach hint) → tower_ack

Ladder (a dying factory's client moves, handing over its key, see `ladder.move`):

    LSP → client   rotation_invite     (the factory is dying: join the next one)
    client → LSP   join_request        (rotating_from, a fresh factory key, its exact balance)
                   or turnover_refuse  (with a reason; the client stays on the old factory)
    ...the usual ceremony; the new channel opens all on the LSP's side, then in it
    (channel_msg): the move PTLC of the old balance locked to the client's old
    factory key, fulfilled with that key's scalar (the key turnover itself)

Leaf advance (selling inbound liquidity, `factory.advance`), with every client of the leaf:

    client → LSP   liquidity_request   (optional: the client asks; or the LSP decides)
    LSP → client   leaf_advance_propose (new leaf state tx + LSP's channel_open on it)
    client → LSP   leaf_advance_nonce  (nonce + channel_open + funding_signed)
    LSP → client   leaf_advance_agg_nonce (aggregate nonce + funding_signed)
    client → LSP   leaf_advance_psig
    LSP → client   leaf_advance_done   (signature + the old L-stock generation's secret)
                   or leaf_advance_refuse (to a request: why not)
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from superscalar.wire.codec import (
    U32,
    Hex,
    Hex32,
    Message,
    PublicKeyHex,
    Record,
    Text,
    UInt,
    XOnlyHex,
)

__all__ = [
    "ChannelMsg",
    "CloseAggNonce",
    "CloseDone",
    "CloseNonce",
    "ClosePropose",
    "ClosePsig",
    "DistributionTerms",
    "FactoryAbort",
    "FactoryAggNonces",
    "FactoryFunded",
    "FactoryNonces",
    "FactoryPropose",
    "FactoryPsigs",
    "FactoryReady",
    "FactoryReadyAck",
    "JoinRequest",
    "LeafAdvanceAggNonce",
    "LeafAdvanceDone",
    "LeafAdvanceNonce",
    "LeafAdvancePropose",
    "LeafAdvancePsig",
    "LeafAdvanceRefuse",
    "LiquidityRequest",
    "Payout",
    "RotationInvite",
    "TowerAck",
    "TowerHint",
    "TurnoverRefuse",
]


class JoinRequest(Message, tag="join_request"):
    """Client → LSP: join the next factory with a channel of `amount_sat`."""

    amount_sat: UInt
    payout_script: Hex
    factory_id: Hex32 | None = None
    """Set when reconnecting to a factory the client already signed."""
    factory_key: PublicKeyHex | None = None
    """The client's key for the new factory (one per ladder rung, handed over at turnover);
    absent: its node key."""
    balance_msat: UInt | None = None
    """Its opening balance in the new channel (absent: `amount_sat` × 1000)."""
    rotating_from: Hex32 | None = None
    """Answering a `rotation_invite`: the dying factory it moves out of."""


ChannelPayload = Annotated[str, msgspec.Meta(max_length=200_000)]


class ChannelMsg(Message, tag="channel_msg"):
    """Either way: one message of client `position`'s leaf channel in factory `factory_id`.

    `payload` is the channel core's message as `node.chancodec` JSON; the
    receiving daemon decodes it strictly and hands it to `channel.step`.
    """

    factory_id: Hex32
    position: U32
    payload: ChannelPayload


class FactoryPropose(Message, tag="factory_propose"):
    """LSP → client: the agreed parameters and the client's path-only view
    (`factory.ClientView.to_bytes`: its position, the funding outpoint, every participant
    key, its root→leaf path txs with their node ranges, its leaf's L-stock point).

    O(log N) transactions and O(N) keys per client: the keys are needed because the
    funding output (and each node output on the path) aggregates them all. The client
    checks it all with `factory.verify_view` before it sends a single nonce."""

    factory_id: Hex32
    attempt: U32
    cltv_timeout: U32
    arity: tuple[U32, ...]
    states_per_layer: U32
    step_blocks: U32
    anchor_value: UInt
    view: Hex
    """Bounded by the framing limit; `ClientView.from_bytes` bounds each part."""
    distribution: DistributionTerms | None = None
    """The distribution tx signed in the same rounds (one more session, every participant):
    what pays each client by default if the LSP vanishes. A client refuses a proposal
    without one."""


class DistributionTerms(Record):
    """The inputs of `factory.funding_distribution`: one payout per client position (0: below
    dust, no output), the LSP's script for the rest, and the nLockTime."""

    payouts: tuple[Payout, ...]
    lsp_script: Hex
    locktime: U32


class FactoryNonces(Message, tag="factory_nonces"):
    """Client → LSP: its sparse `NonceBundle` (hex of `to_bytes`)."""

    factory_id: Hex32
    attempt: U32
    bundle: Hex


class FactoryAggNonces(Message, tag="factory_agg_nonces"):
    """LSP → client: the aggregate nonces of the client's sessions."""

    factory_id: Hex32
    attempt: U32
    bundle: Hex


class FactoryPsigs(Message, tag="factory_psigs"):
    """Client → LSP: its partial signatures (the secret nonces are gone after this)."""

    factory_id: Hex32
    attempt: U32
    bundle: Hex


class FactoryReady(Message, tag="factory_ready"):
    """LSP → client: the final signatures of the client's path: it can now exit alone."""

    factory_id: Hex32
    attempt: U32
    bundle: Hex


class FactoryReadyAck(Message, tag="factory_ready_ack"):
    """Client → LSP: READY's signatures and the signed distribution tx are stored; the LSP
    funds the factory only once every client said so."""

    factory_id: Hex32
    attempt: U32


class FactoryFunded(Message, tag="factory_funded"):
    """LSP → client: the funding tx was broadcast."""

    factory_id: Hex32
    txid: Hex32


class FactoryAbort(Message, tag="factory_abort"):
    """LSP → client: drop this attempt (its nonces are never used again)."""

    factory_id: Hex32
    attempt: U32
    reason: Text = ""


class Payout(Record):
    """One client payout of a cooperative close, in position order."""

    script: Hex
    amount_sat: UInt


class ClosePropose(Message, tag="close_propose"):
    """LSP → client: the inputs of `factory.cooperative_close`; the client rebuilds the tx
    itself and signs only if its own payout is there in full."""

    factory_id: Hex32
    payouts: tuple[Payout, ...]
    lsp_script: Hex
    feerate_sat_per_kvb: UInt
    moved: tuple[U32, ...] = ()
    """Positions that moved to the next factory and handed over their key: no payout here
    (the LSP signs for them); `payouts` lists the others, in position order."""
    from_kickoff: bool = False
    """Close from the root kickoff's output (same key, funding amount less its anchor):
    the LSP kicked the tree off to keep the distribution tx from paying movers twice."""


class CloseNonce(Message, tag="close_nonce"):
    """Client → LSP: its nonce for the single close session."""

    factory_id: Hex32
    bundle: Hex


class CloseAggNonce(Message, tag="close_agg_nonce"):
    """LSP → client: the close session's aggregate nonce."""

    factory_id: Hex32
    bundle: Hex


class ClosePsig(Message, tag="close_psig"):
    """Client → LSP: its partial signature on the close."""

    factory_id: Hex32
    bundle: Hex


class CloseDone(Message, tag="close_done"):
    """LSP → client: the close was broadcast."""

    factory_id: Hex32
    txid: Hex32


class Hex16(Hex):
    """16 bytes: a breach hint id (the first half of a txid)."""

    SIZE = 16


class TowerHint(Message, tag="tower_hint"):
    """Client → watchtower: one encrypted breach hint (`watch.hints`); stored, then acked."""

    hint_id: Hex16
    blob: Hex
    """At most `watch.hints.MAX_BLOB` bytes (the tower refuses larger)."""


class TowerAck(Message, tag="tower_ack"):
    """Watchtower → client: the hint `hint_id` is on disk."""

    hint_id: Hex16


class TurnoverRefuse(Message, tag="turnover_refuse"):
    """Client → LSP: no handover (yet), and why."""

    old_factory: Hex32
    new_factory: Hex32
    reason: Text = ""


class RotationInvite(Message, tag="rotation_invite"):
    """LSP → client: `old_factory` is dying; join the next factory with your exact balance."""

    old_factory: Hex32
    dying_at: U32
    expires_at: U32


class LiquidityRequest(Message, tag="liquidity_request"):
    """Client → LSP: buy `amount_sat` of inbound capacity from my leaf's L-stock."""

    factory_id: Hex32
    amount_sat: UInt


class LeafAdvanceRefuse(Message, tag="leaf_advance_refuse"):
    """LSP → client: no advance for that request (leaf busy, L-stock short, odometer
    exhausted...), and why. The factory is unchanged."""

    factory_id: Hex32
    reason: Text = ""


class LeafAdvancePropose(Message, tag="leaf_advance_propose"):
    """LSP → each client of `leaf`: the new leaf state tx (unsigned) at the next DW state,
    moving `amount_sat` of L-stock into `buyer`'s channel, paying the L-stock of
    `generation` to `lstock_point`; plus the LSP's channel_open re-anchoring this client's
    channel on the new leaf output at its current balances (chancodec payload)."""

    factory_id: Hex32
    leaf: U32
    generation: U32
    buyer: U32
    amount_sat: UInt
    leaf_tx: Hex
    lstock_point: XOnlyHex
    channel_open: ChannelPayload


class LeafAdvanceNonce(Message, tag="leaf_advance_nonce"):
    """Client → LSP: its nonce for the new leaf state, its channel_open for the new anchor
    and its funding_signed for the LSP's commitment 0 there (commitments before the tree)."""

    factory_id: Hex32
    generation: U32
    bundle: Hex
    channel_open: ChannelPayload
    funding_signed: ChannelPayload


class LeafAdvanceAggNonce(Message, tag="leaf_advance_agg_nonce"):
    """LSP → client: the aggregate nonce and its funding_signed for the client's commitment."""

    factory_id: Hex32
    generation: U32
    bundle: Hex
    funding_signed: ChannelPayload


class LeafAdvancePsig(Message, tag="leaf_advance_psig"):
    """Client → LSP: its partial signature on the new leaf state tx."""

    factory_id: Hex32
    generation: U32
    bundle: Hex


class LeafAdvanceDone(Message, tag="leaf_advance_done"):
    """LSP → client: the new leaf state's signature and the superseded generation's
    L-stock secret (the client checks it against the old point, then burns with it)."""

    factory_id: Hex32
    generation: U32
    signature: Hex
    lstock_secret: Hex32
