"""The leaf-channel shell shared by both daemons: `channel.step` over a socket and SQLite.

One `ChannelShell` per (factory, client position). `apply(event)` steps the
pure core and carries out its effects *in order*: a `PersistState` is one
SQLite transaction, committed before any `SendMessage` that follows it goes
out (the core always puts the persist first); a `PersistRevokedCommitment`
is stored likewise; other effects (HTLC committed / fulfilled, channel ready)
are returned to the daemon. After each event the shell signs a commitment if
the core has unsigned changes, the way `LoopbackChannel.settle` does. A
per-channel lock keeps one channel's messages in order on the wire.

Keys: the channel's funding key *is* the party's factory key (the leaf's
channel output is `funding_output(client_key, lsp_key)`); the other channel
keys derive from the node key, the factory id and the position, so a restart
needs nothing but the node key and the stored state.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from superscalar.bitcoin.tx import OutPoint
from superscalar.channel import (
    ChannelConfig,
    ChannelError,
    ChannelSecrets,
    ChannelState,
    Effect,
    Event,
    Funding,
    PersistRevokedCommitment,
    PersistState,
    Reestablish,
    SendMessage,
    SignCommitment,
    channel_balances,
    has_changes_to_sign,
    step,
)
from superscalar.channel import messages as chmsg
from superscalar.channel.revocation import RevokedCommitment
from superscalar.crypto.hashes import tagged_hash
from superscalar.crypto.keys import SecretKey
from superscalar.factory import FactoryTree, VerifiedView
from superscalar.store.db import Database
from superscalar.wire.codec import Hex32
from superscalar.wire.messages import ChannelMsg

from .chancodec import decode_state, encode_message, encode_state, encode_value
from .common import now

__all__ = [
    "CHANNEL_CONFIG",
    "ChannelFrozen",
    "ChannelShell",
    "Journal",
    "channel_anchor",
    "channel_capacity",
    "channel_funding",
    "channel_secrets",
    "load_channel",
    "opening_balances",
    "stored_balances",
    "view_funding",
]

log = logging.getLogger(__name__)

CHANNEL_CONFIG = ChannelConfig(to_self_delay=144, min_cltv_delta=18)
Sender = Callable[[ChannelMsg], Awaitable[None]]
Journal = Callable[[sqlite3.Connection, int, tuple[Effect, ...]], None]
"""Extra rows a daemon writes in the *same* transaction as a channel state change
(position, the step's effects): what a payment step means for forwards or payments."""


def channel_secrets(
    key: SecretKey, factory_id: bytes, position: int, anchor: int = 0
) -> ChannelSecrets:
    """The channel's keys: funding = the factory key, the rest derived deterministically.

    `anchor` counts the leaf advances the channel was re-anchored through: each anchor
    is a fresh channel (commitment numbers restart at 0), so it needs its own
    per-commitment secrets, or a revealed old secret would revoke the new commitment 0.
    """
    data = key.to_bytes() + factory_id + position.to_bytes(4, "big")
    if anchor:
        data += anchor.to_bytes(4, "big")
    seed = tagged_hash("SuperScalar/node/channel", data)
    base = ChannelSecrets.from_seed(seed)
    return ChannelSecrets(
        key, base.revocation, base.payment, base.delayed_payment, base.htlc, base.shachain
    )


def channel_funding(tree: FactoryTree, position: int) -> Funding:
    """The LSP's side: client `position`'s channel output in its leaf state tx (the leaf
    pays its clients' channels in position order, then the L-stock)."""
    node = tree.shape.node_of_client(position)
    tx = tree.state_tx(node.index).tx
    vout = position - node.lo
    return Funding(OutPoint(tx.txid, vout), tx.outputs[vout].value)


def view_funding(verified: VerifiedView) -> Funding:
    """The client's side: its channel output, as its own `verify_view` found it."""
    outpoint = verified.channel_outpoint
    leaf_tx = verified.view.steps[-1].tx
    return Funding(outpoint, leaf_tx.outputs[outpoint.vout].value)


def channel_capacity(amount_sat: int) -> int:
    """A client joining with `amount_sat` gets a channel of twice that: its own amount plus
    as much again of the LSP's inbound liquidity (what lets the LSP forward to it)."""
    return 2 * amount_sat


def opening_balances(amount_sat: int) -> tuple[int, int]:
    """(client, LSP) msat at open: the client's own amount, the LSP's inbound liquidity."""
    client = amount_sat * 1000
    return client, channel_capacity(amount_sat) * 1000 - client


class ChannelFrozen(ChannelError):
    """The channel is frozen (a close we signed is pending): no update, no new commitment."""

    code = "channel-frozen"

    def __init__(self, why: str) -> None:
        super().__init__(f"{self.code}: {why}")


class ChannelShell:
    """One channel side: secrets, latest state, persistence and the wire."""

    def __init__(
        self,
        db: Database,
        secrets: ChannelSecrets,
        factory_id: bytes,
        position: int,
        state: ChannelState | None = None,
        journal: Journal | None = None,
    ) -> None:
        self.db = db
        self.journal = journal
        self.secrets = secrets
        self.factory_id = factory_id
        self.position = position
        self.state = state
        self.lock = asyncio.Lock()
        self._reestablish_started = time.monotonic()
        self.ready = asyncio.Event()
        self.held_reestablish: chmsg.ChannelReestablish | None = None
        """The peer's channel_reestablish, held while an open a crash interrupted finishes."""
        self.frozen: str | None = None
        """Why the channel takes no update (None: it does). Set by the daemon from what it
        persisted (a close it signed); only a reestablish gets through."""
        if state is not None and state.local_commit is not None:
            self.ready.set()

    def wrap(self, message: chmsg.Message) -> ChannelMsg:
        return ChannelMsg(
            factory_id=Hex32(self.factory_id),
            position=self.position,
            payload=encode_message(message),
        )

    def _persist(
        self,
        state: ChannelState | None,
        revoked: Sequence[RevokedCommitment],
        effects: tuple[Effect, ...],
    ) -> None:
        """One SQLite transaction (one fsync) for a whole step: the newest state, the
        revocation records and the daemon's journal rows."""
        with self.db.transaction() as c:
            if state is not None:
                c.execute(
                    "INSERT OR REPLACE INTO channels VALUES (?, ?, ?, ?)",
                    (self.factory_id.hex(), self.position, encode_state(state), now()),
                )
            for r in revoked:
                c.execute(
                    "INSERT OR REPLACE INTO channel_revoked VALUES (?, ?, ?, ?)",
                    (
                        self.factory_id.hex(),
                        self.position,
                        r.number,
                        json.dumps(encode_value(r)),
                    ),
                )
            if self.journal is not None and state is not None:
                self.journal(c, self.position, effects)

    async def run_effects(self, effects: tuple[Effect, ...], send: Sender) -> list[Effect]:
        """Persist everything `effects` asks to keep, then send, then return the daemon's part.

        Every state in `effects` is persisted before any message goes out: each
        `PersistState` carries the whole channel state, so the newest one covers
        the earlier ones, and a message sent after it never commits to more than
        what is on disk (a crash before sending is what reestablish repairs).
        """
        states = [e.state for e in effects if isinstance(e, PersistState)]
        revoked = [e.revoked for e in effects if isinstance(e, PersistRevokedCommitment)]
        if states or revoked:
            self._persist(states[-1] if states else None, revoked, effects)
        notices: list[Effect] = []
        for effect in effects:
            if isinstance(effect, PersistState | PersistRevokedCommitment):
                continue
            if isinstance(effect, SendMessage):
                await send(self.wrap(effect.message))
            else:
                if isinstance(effect, chmsg.ChannelReady):
                    self.ready.set()
                notices.append(effect)
        return notices

    async def apply(self, event: Event, send: Sender) -> list[Effect]:
        """Step the core with `event` (then sign if needed); raises `ChannelError` on refusal.

        The event and the signing it triggers are one unit on disk: a single
        transaction, then every message in order.
        """
        async with self.lock:
            assert self.state is not None
            if self.frozen is not None and not isinstance(
                event, Reestablish | chmsg.ChannelReestablish
            ):
                raise ChannelFrozen(self.frozen)
            transition = step(self.secrets, self.state, event)
            self.state = transition.state
            if isinstance(event, chmsg.ChannelReestablish):
                ms = (time.monotonic() - self._reestablish_started) * 1000
                log.info("channel %d reestablished in %.1f ms", self.position, ms)
            effects = list(transition.effects)
            try:
                while has_changes_to_sign(self.state):
                    transition = step(self.secrets, self.state, SignCommitment())
                    self.state = transition.state
                    effects += transition.effects
            finally:  # a refused signing still keeps (and sends) what the event did
                notices = await self.run_effects(tuple(effects), send)
            return notices

    async def reestablish(self, send: Sender) -> list[Effect]:
        """A new connection: send our channel_reestablish (the peer's answer goes to `apply`)."""
        self._reestablish_started = time.monotonic()
        return await self.apply(Reestablish(), send)

    def balances(self) -> dict[str, Any]:
        if self.state is None or self.state.local_commit is None:
            return {"open": False}
        b = channel_balances(self.state)
        return {
            "open": True,
            "local_msat": b.local_msat,
            "remote_msat": b.remote_msat,
            "htlcs": len(b.htlcs),
            "quiescent": b.quiescent,
        }


def channel_anchor(db: Database | sqlite3.Connection, factory_id: bytes, position: int) -> int:
    """How many leaf advances re-anchored this channel (its retired anchors, see `advance`)."""
    row = db.execute(
        "SELECT COUNT(*) FROM channel_anchors WHERE factory_id=? AND position=?"
        " AND stage='retired'",
        (factory_id.hex(), position),
    ).fetchone()
    return int(row[0])


def load_channel(
    db: Database, key: SecretKey, factory_id: bytes, position: int, journal: Journal | None = None
) -> ChannelShell | None:
    row = db.execute(
        "SELECT state FROM channels WHERE factory_id=? AND position=?",
        (factory_id.hex(), position),
    ).fetchone()
    if row is None:
        return None
    return ChannelShell(
        db,
        channel_secrets(key, factory_id, position, channel_anchor(db, factory_id, position)),
        factory_id,
        position,
        decode_state(row["state"]),
        journal,
    )


def stored_balances(db: Database) -> list[dict[str, Any]]:
    """Every stored channel's balances (for `status`), read on the caller's thread."""
    out = []
    for row in db.execute("SELECT * FROM channels ORDER BY factory_id, position"):
        state = decode_state(row["state"])
        entry: dict[str, Any] = {"factory_id": row["factory_id"], "position": row["position"]}
        if state.local_commit is not None:
            b = channel_balances(state)
            entry.update(
                local_msat=b.local_msat,
                remote_msat=b.remote_msat,
                htlcs=len(b.htlcs),
                quiescent=b.quiescent,
                status=state.status.value,
            )
        out.append(entry)
    return out
