"""Leaf advances over the wire: selling inbound liquidity out of a leaf's L-stock.

The I/O shell around `factory.advance`. With every client of the leaf:

    LSP → leaf_advance_propose   (new leaf state tx; the LSP's channel_open on its output)
    client → leaf_advance_nonce  (nonce; its channel_open; funding_signed for the LSP)
    LSP → leaf_advance_agg_nonce (aggregate nonce; funding_signed for the client)
    client → leaf_advance_psig
    LSP → leaf_advance_done      (signature; the superseded generation's L-stock secret)

Each leaf channel is *re-anchored*: a fresh channel (its own per-commitment
secrets, `channels.channel_secrets(anchor=...)`) on the new leaf output at the
current balances, the buyer's with `amount` more on the LSP's side. Its
commitments are signed before anyone signs the new leaf state, so no new state
can exist that would strand a client's money. The old channel state is kept
(`channel_anchors`, stage 'retired'): its commitment is what spends the old leaf
output if that ever confirmed.

Persistence (table `leaf_advances`, one row per leaf generation): the row, the
nonce use and the pending channel states are committed before the nonces go
out; the move to 'psigs' before a client's partial signature goes out; 'done'
with the signature (and the channel switch) before LEAF_ADVANCE_DONE. Secret
nonces live in memory only, so a restart abandons an advance short of 'done'
(the old state stays valid and signed); a client whose row is at 'psigs' signs
no *other* tx at that DW state (`check_signed_state`: the same tx again is a
resume, its row and re-anchored commitment are kept), and the LSP resends DONE
to a reconnecting leaf client, which finishes its side.

From its partial signature to DONE a client's channel is frozen (`FROZEN`): the
LSP could publish either leaf state, and both must pay the balances the
re-anchored commitments were signed at, so no HTLC is added, settled or
committed. A row at 'psigs' is never downgraded, and its pending anchor is never
deleted. If DONE has not come `advance_done_blocks` after the signature, the
client exits on chain by itself (its exit covers both leaf states).

After 'done' both sides' watchers get a "newer state" entry (the leaf's kickoff
appears → broadcast the new leaf state with a CPFP child) and clients get an
"L-stock burn" entry (the old leaf state appears → burn its L-stock with the
revealed secret before the LSP's CSV sweep).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from superscalar.bitcoin.tx import OutPoint, Transaction
from superscalar.channel import (
    ChannelError,
    ChannelOpen,
    ChannelState,
    Funding,
    FundingSigned,
    SendMessage,
    accept_open,
    channel_balances,
    open_message,
    step,
)
from superscalar.channel.keys import ChannelSecrets
from superscalar.crypto import schnorr
from superscalar.crypto.keys import XOnlyPublicKey
from superscalar.factory import (
    AggNonceBundle,
    FactoryTree,
    LStockSecrets,
    SessionSpec,
    Signer,
    verify_burn_secret,
)
from superscalar.factory.advance import (
    AdvanceRefusal,
    LeafAdvance,
    LiquidityLimits,
    check_liquidity_request,
    check_signed_state,
    plan_leaf_advance,
    verify_leaf_advance,
)
from superscalar.factory.errors import FactoryError
from superscalar.factory.exits import TreeOutput, lstock_burn_tx
from superscalar.factory.outputs import lstock_output
from superscalar.watch import WatchEntry, WatchError
from superscalar.watch.responses import lstock_burn_entry, newer_state_entry
from superscalar.wire.codec import Hex, Hex32, XOnlyHex
from superscalar.wire.connection import PeerConnection
from superscalar.wire.errors import WireError
from superscalar.wire.messages import (
    LeafAdvanceAggNonce,
    LeafAdvanceDone,
    LeafAdvanceNonce,
    LeafAdvancePropose,
    LeafAdvancePsig,
    LeafAdvanceRefuse,
    LiquidityRequest,
)

from .chancodec import decode_message, encode_message, encode_state
from .channels import CHANNEL_CONFIG, ChannelShell, channel_anchor, channel_secrets
from .common import crash_point, now
from .misbehave import ClientMisbehaviour, LspMisbehaviour
from .musig import Seat, musig_round
from .peers import Peer, PeerFault

if TYPE_CHECKING:
    from .client import ClientDaemon
    from .lsp import LspDaemon

__all__ = ["FROZEN", "AdvanceRefused", "ClientAdvance", "LspAdvance", "replay_advances"]

log = logging.getLogger(__name__)


class AdvanceRefused(RuntimeError):
    """This advance cannot happen now (and why); nothing changed."""


FROZEN = "channel-frozen"
"""Refusal code: our advance signature is out and its DONE has not come (no channel update)."""

DRAIN_SAT = 1_000
"""dev-misbehave drain-liquidity: what the draining client asks for, again and again."""


def _signed_height_key(fid: bytes, generation: int) -> str:
    return f"advance-signed-height:{fid.hex()}:{generation}"


def replay_advances(db: Any, fid: bytes, tree: FactoryTree) -> FactoryTree:
    """The LSP's current tree: the initial one with every finished advance applied in order
    (deterministic, so a restart rebuilds exactly what was signed)."""
    rows = db.execute(
        "SELECT buyer, amount_sat, lstock_point FROM leaf_advances WHERE factory_id=?"
        " AND stage='done' ORDER BY updated, generation",
        (fid.hex(),),
    ).fetchall()
    for r in rows:
        point = XOnlyPublicKey(bytes.fromhex(r["lstock_point"]))
        tree = plan_leaf_advance(tree, int(r["buyer"]), int(r["amount_sat"]), point).after
    return tree


def _quiescent_balances(shell: ChannelShell | None, pos: int) -> tuple[int, int]:
    """(local, remote) msat of a channel with nothing in flight, or a clear refusal."""
    if shell is None or shell.state is None or shell.state.local_commit is None:
        raise AdvanceRefused(f"channel {pos} is not open")
    b = channel_balances(shell.state)
    if not b.quiescent or shell.state.reestablishing:
        raise AdvanceRefused(
            f"channel {pos} has HTLCs or unsigned updates in flight; retry when it is idle"
        )
    return b.local_msat, b.remote_msat


def _funding_of(tx: Transaction, vout: int) -> Funding:
    return Funding(OutPoint(tx.txid, vout), tx.outputs[vout].value)


def _persist_switch(
    c: Any, fid: bytes, pos: int, old: ChannelState, old_generation: int, new: ChannelState
) -> None:
    """Inside the caller's transaction: retire the old anchor, make the new one current."""
    c.execute(
        "INSERT OR REPLACE INTO channel_anchors VALUES (?, ?, ?, 'retired', ?)",
        (fid.hex(), pos, old_generation, encode_state(old)),
    )
    c.execute(
        "DELETE FROM channel_anchors WHERE factory_id=? AND position=? AND stage='pending'",
        (fid.hex(), pos),
    )
    c.execute(
        "INSERT OR REPLACE INTO channels VALUES (?, ?, ?, ?)",
        (fid.hex(), pos, encode_state(new), now()),
    )
    # HTLC ids restart on the new channel: the old channel's settled forwards (all of
    # them: an advance needs idle channels) move aside so their ids cannot collide
    where = (
        " FROM forwards WHERE factory_id=? AND (up_position=? OR down_position=?)"
        " AND state IN ('fulfilled', 'failed')"
    )
    c.execute(
        "INSERT INTO forwards_retired SELECT ?, *" + where, (old_generation, fid.hex(), pos, pos)
    )
    c.execute("DELETE" + where, (fid.hex(), pos, pos))
    # the old channel's revocation records, kept apart: the new channel's commitment
    # numbers restart at 0 and replace same-numbered rows in `channel_revoked`
    c.execute(
        "INSERT OR REPLACE INTO channel_revoked_retired SELECT ?, factory_id, position,"
        " number, revoked FROM channel_revoked WHERE factory_id=? AND position=? AND number < ?",
        (old_generation, fid.hex(), pos, old.remote_commit.number),
    )


# -- LSP ------------------------------------------------------------------------------------


@dataclass
class _LspLeg:
    """One leaf client's part of an advance on the LSP's side."""

    pos: int
    peer: Peer
    shell: ChannelShell
    secrets: ChannelSecrets
    funding: Funding
    ours: ChannelOpen
    client_msat: int
    state: ChannelState | None = None


class LspAdvance:
    """The LSP's side: `advance(buyer, amount)` runs one leaf advance with the leaf's clients."""

    def __init__(self, daemon: LspDaemon) -> None:
        self.d = daemon
        self._trees: dict[bytes, FactoryTree] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        """Requests being served (kept referenced until they finish)."""
        self._readvanced: dict[tuple[bytes, int], int] = {}
        """dev-misbehave readvance-same-state: (factory, generation) → attack step done."""

    def serve(self, peer: Peer, msg: LiquidityRequest) -> None:
        """Answer a client's request without holding up its reader."""
        task = asyncio.create_task(self.on_request(peer, msg))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def tree(self, fid: bytes) -> FactoryTree:
        """The factory's current tree (after its finished advances)."""
        tree = self._trees.get(fid)
        if tree is None:
            tree = replay_advances(self.d.db, fid, self.d._built_for(fid).tree)
            self._trees[fid] = tree
        return tree

    def recover(self) -> None:
        """Advances a crash interrupted short of 'done' are abandoned (nonces died)."""
        with self.d.db.transaction() as c:
            c.execute(
                "UPDATE leaf_advances SET stage='abandoned', updated=? WHERE stage NOT IN"
                " ('done', 'abandoned')",
                (now(),),
            )
            c.execute("DELETE FROM channel_anchors WHERE stage='pending'")

    def _leaf_signature(self, fid: bytes, leaf: int, generation: int, index: int) -> str | None:
        if generation == 0:
            row = self.d.db.execute(
                "SELECT signature FROM tree_signatures WHERE factory_id=? AND session_id=?",
                (fid.hex(), index),
            ).fetchone()
            return None if row is None else str(row["signature"])
        row = self.d.db.execute(
            "SELECT new_sig FROM leaf_advances WHERE factory_id=? AND leaf=? AND generation=?",
            (fid.hex(), leaf, generation),
        ).fetchone()
        return None if row is None else str(row["new_sig"])

    async def on_request(self, peer: Peer, msg: LiquidityRequest) -> None:
        """A client asks for inbound liquidity: advance its leaf, or say why not."""
        fid = self.d.factory_id
        try:
            if fid is None or bytes(msg.factory_id) != fid:
                raise AdvanceRefused("not the LSP's live factory")
            limits = LiquidityLimits(
                self.d.config.max_liquidity_per_client, self.d.config.max_advances_per_client
            )
            await self.advance(self.d._position(fid, peer.key), msg.amount_sat, limits)
        except (AdvanceRefused, FactoryError, RuntimeError) as exc:
            with contextlib.suppress(WireError):
                await peer.conn.send_message(
                    LeafAdvanceRefuse(factory_id=msg.factory_id, reason=str(exc)[:500])
                )

    def bought(self, fid: bytes, buyer: int) -> list[int]:
        """Sat of each finished advance into `buyer`'s channel in this factory."""
        rows = self.d.db.execute(
            "SELECT amount_sat FROM leaf_advances WHERE factory_id=? AND buyer=? AND stage='done'",
            (fid.hex(), buyer),
        ).fetchall()
        return [int(r["amount_sat"]) for r in rows]

    async def advance(
        self, buyer: int, amount: int, limits: LiquidityLimits | None = None
    ) -> dict[str, Any]:
        """Move `amount` sat of `buyer`'s leaf L-stock into its channel (LSP side).

        `limits`: a client's own (free) request is capped (`check_liquidity_request`);
        the operator selling liquidity passes None."""
        d = self.d
        async with d._lock:
            fid = d.factory_id
            if fid is None or d._row(fid)["state"] != "funded":
                raise AdvanceRefused("no funded factory")
            tree = self.tree(fid)
            shape = tree.shape
            if not 0 <= buyer < shape.spec.n_clients:
                raise AdvanceRefused(f"no client {buyer}")
            leaf = shape.client_leaf[buyer]
            seed = d._row(fid)["lstock_seed"]
            secrets = LStockSecrets(bytes.fromhex(seed))
            gen = tree.state.odometer.generations[leaf] + 1
            try:
                adv = plan_leaf_advance(tree, buyer, amount, secrets.point(leaf, gen))
                if limits is not None:
                    check_liquidity_request(tree, buyer, amount, self.bought(fid, buyer), limits)
            except FactoryError as exc:
                raise AdvanceRefused(str(exc)) from exc
            legs = self._legs(fid, adv)
            start = asyncio.get_running_loop().time()
            result = await self._run(fid, adv, legs, secrets)
            result["ms"] = round((asyncio.get_running_loop().time() - start) * 1000, 1)
            return result

    def _legs(self, fid: bytes, adv: LeafAdvance) -> list[_LspLeg]:
        d = self.d
        legs = []
        for pos in adv.positions:
            shell = d.channels.get(pos)
            lsp_msat, client_msat = _quiescent_balances(shell, pos)
            assert shell is not None and shell.state is not None
            row = d.db.execute(
                "SELECT pubkey FROM factory_clients WHERE factory_id=? AND position=?",
                (fid.hex(), pos),
            ).fetchone()
            peer = d.members.get(bytes.fromhex(row["pubkey"]))
            if peer is None or peer.conn.closed or peer.inbox is None:
                raise AdvanceRefused(f"client {pos} is not connected")
            if pos == adv.buyer:
                lsp_msat += adv.amount * 1000
            funding = _funding_of(adv.new_tx.tx, pos - adv.positions[0])
            anchor = channel_anchor(d.db, fid, pos) + 1
            secrets = channel_secrets(d.key, fid, pos, anchor)
            ours = open_message(
                secrets,
                funding,
                CHANNEL_CONFIG,
                is_initiator=True,
                balance_msat=lsp_msat,
                close_script=shell.state.local_close_script,
            )
            legs.append(_LspLeg(pos, peer, shell, secrets, funding, ours, client_msat))
        return legs

    async def _run(
        self, fid: bytes, adv: LeafAdvance, legs: list[_LspLeg], secrets: LStockSecrets
    ) -> dict[str, Any]:
        d = self.d
        gen, leaf = adv.generation, adv.leaf
        old_sig = self._leaf_signature(fid, leaf, gen - 1, adv.old_tx.index)
        with d.db.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO leaf_advances VALUES"
                " (?, ?, ?, 'proposed', ?, ?, ?, ?, ?, NULL, ?, NULL, ?, ?)",
                (
                    fid.hex(),
                    leaf,
                    gen,
                    adv.buyer,
                    adv.amount,
                    adv.old_tx.tx.hex(),
                    old_sig,
                    adv.new_tx.tx.hex(),
                    adv.after.state.lstock_points[leaf].data.hex(),
                    now(),
                    now(),
                ),
            )
        by_seat = {leg.pos + 1: leg for leg in legs}
        signed_for: dict[int, FundingSigned] = {}

        def check_nonces(seat: Seat, n: LeafAdvanceNonce) -> None:
            """The buyer's and every other leg's new channel, opened on the new leaf output
            at exactly its old balance, before any of our nonces exist."""
            leg = by_seat[seat.index]
            if n.generation != gen:
                raise ValueError("nonce for another advance")
            theirs = decode_message(n.channel_open)
            their_sig = decode_message(n.funding_signed)
            if not isinstance(theirs, ChannelOpen) or not isinstance(their_sig, FundingSigned):
                raise ValueError("expected channel_open and funding_signed")
            if theirs.balance_msat != leg.client_msat:
                raise ValueError("the client's new channel balance differs from its old")
            assert leg.shell.state is not None
            height = leg.shell.state.chain_height
            t = accept_open(leg.secrets, leg.funding, leg.ours, theirs, chain_height=height)
            (ours_signed,) = [e.message for e in t.effects if isinstance(e, SendMessage)]
            assert isinstance(ours_signed, FundingSigned)
            leg.state = step(leg.secrets, t.state, their_sig).state
            signed_for[leg.pos] = ours_signed

        def record_nonce_use() -> None:
            with d.db.transaction() as c:
                c.execute(
                    "INSERT OR REPLACE INTO nonce_use VALUES (?, ?, ?, ?)",
                    (fid.hex(), 1000 + gen, f"advance{leaf}/{gen}", now()),
                )
                c.execute(
                    "UPDATE leaf_advances SET stage='nonces', updated=? WHERE factory_id=?"
                    " AND leaf=? AND generation=?",
                    (now(), fid.hex(), leaf, gen),
                )
                for leg in legs:
                    assert leg.state is not None
                    c.execute(
                        "INSERT OR REPLACE INTO channel_anchors VALUES (?, ?, ?, 'pending', ?)",
                        (fid.hex(), leg.pos, gen, encode_state(leg.state)),
                    )
            if self._readvance_step(fid, gen) == 1:  # dev-misbehave: see below
                self._readvanced[(fid, gen)] = 2
                raise AdvanceRefused("dev-misbehave: re-proposing at the same DW state")

        def before_sign() -> None:
            for leg in legs:  # nothing may have moved on the old channels meanwhile
                _, client_msat = _quiescent_balances(leg.shell, leg.pos)
                if client_msat != leg.client_msat:
                    raise AdvanceRefused(f"channel {leg.pos} changed during the advance")
            crash_point("lsp-advance-before-sign")

        propose = LeafAdvancePropose(
            factory_id=Hex32(fid),
            leaf=leaf,
            generation=gen,
            buyer=adv.buyer,
            amount_sat=adv.amount,
            leaf_tx=Hex(adv.new_tx.tx.to_bytes()),
            lstock_point=XOnlyHex.of(adv.after.state.lstock_points[leaf]),
            channel_open="",
        )
        try:
            try:
                signature = (
                    await musig_round(
                        d.link.named("advance"),
                        fid,
                        adv.plan,
                        [Seat(leg.peer, leg.pos + 1) for leg in legs],
                        {0: Signer(0, d.key, adv.plan.sessions)},
                        propose=lambda seat: msgspec.structs.replace(
                            propose, channel_open=encode_message(by_seat[seat.index].ours)
                        ),
                        nonces=LeafAdvanceNonce,
                        aggregate=lambda seat, agg: LeafAdvanceAggNonce(
                            factory_id=Hex32(fid),
                            generation=gen,
                            bundle=Hex(agg.to_bytes()),
                            funding_signed=encode_message(signed_for[seat.index - 1]),
                        ),
                        psigs=LeafAdvancePsig,
                        record_nonce_use=record_nonce_use,
                        check_nonces=check_nonces,
                        before_sign=before_sign,
                    )
                )[adv.new_tx.index]
            except AdvanceRefused as exc:
                if self._readvanced.get((fid, gen)) == 2 and "dev-misbehave" in str(exc):
                    for leg in legs:
                        await d._drop(leg.peer, "dev-misbehave readvance-same-state")
                    task = asyncio.create_task(self._readvance(adv.buyer, adv.amount + 1))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
                raise
            if self._readvance_step(fid, gen) == 0:
                # dev-misbehave: keep the signed tx, drop the clients, and once they are back
                # propose the same tx (its nonces overwrite a naive client's signed row), drop
                # them again, then a different tx at the same DW state
                self._readvanced[(fid, gen)] = 1
                with d.db.transaction() as c:
                    c.execute(
                        "UPDATE leaf_advances SET stage='abandoned', new_sig=?, updated=?"
                        " WHERE factory_id=? AND leaf=? AND generation=?",
                        (signature.hex(), now(), fid.hex(), leaf, gen),
                    )
                    c.execute(
                        "DELETE FROM channel_anchors WHERE factory_id=? AND stage='pending'",
                        (fid.hex(),),
                    )
                for leg in legs:
                    await d._drop(leg.peer, "dev-misbehave readvance-same-state")
                task = asyncio.create_task(self._readvance(adv.buyer, adv.amount))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
                raise AdvanceRefused("dev-misbehave: re-proposing at the same DW state")
        except (PeerFault, AdvanceRefused) as exc:
            if (fid, gen) in self._readvanced and "dev-misbehave" in str(exc):
                raise
            self._abandon(fid, leaf, gen)
            if isinstance(exc, PeerFault):
                await d._drop(exc.peer, str(exc))
            for leg in legs:
                if not isinstance(exc, PeerFault) or leg.peer is not exc.peer:
                    with contextlib.suppress(WireError):
                        await leg.peer.conn.send_message(
                            LeafAdvanceRefuse(factory_id=Hex32(fid), reason=str(exc)[:500])
                        )
            raise AdvanceRefused(f"leaf advance abandoned: {exc}") from exc
        secret = secrets.secret(leaf, gen - 1)
        withhold = d.config.misbehave(LspMisbehaviour.WITHHOLD_ADVANCE_DONE)
        with d.db.transaction() as c:
            c.execute(
                "UPDATE leaf_advances SET stage='done', new_sig=?, lstock_secret=?, updated=?"
                " WHERE factory_id=? AND leaf=? AND generation=?",
                (signature.hex(), secret.hex(), now(), fid.hex(), leaf, gen),
            )
            for leg in legs:
                if withhold:  # dev-misbehave: keep the old channels going, hold the new state
                    break
                assert leg.shell.state is not None and leg.state is not None
                _persist_switch(c, fid, leg.pos, leg.shell.state, gen - 1, leg.state)
        crash_point("lsp-advance-before-done-sent")
        self._trees[fid] = adv.after
        for leg in [] if withhold else legs:
            d.channels[leg.pos] = ChannelShell(
                d.db, leg.secrets, fid, leg.pos, leg.state, journal=leg.shell.journal
            )
        self.watch_entries(fid)
        done = LeafAdvanceDone(
            factory_id=Hex32(fid),
            generation=gen,
            signature=Hex(signature),
            lstock_secret=Hex32(secret),
        )
        for leg in [] if withhold else legs:
            with contextlib.suppress(WireError):
                await leg.peer.conn.send_message(done)
        log.info(
            "leaf %d advanced to generation %d: %d sat of L-stock into client %d's channel",
            leaf,
            gen,
            adv.amount,
            adv.buyer,
        )
        return {
            "leaf": leaf,
            "generation": gen,
            "amount_sat": adv.amount,
            "buyer": adv.buyer,
            "leaf_txid": adv.new_tx.tx.txid_hex,
            "sequence": adv.new_tx.sequence,
            "lstock_sat": adv.after.state.allocations[leaf].lstock,
        }

    def _readvance_step(self, fid: bytes, gen: int) -> int | None:
        """dev-misbehave readvance-same-state: how far the attack on this DW state got."""
        if not self.d.config.misbehave(LspMisbehaviour.READVANCE_SAME_STATE):
            return None
        return self._readvanced.get((fid, gen), 0)

    async def _readvance(self, buyer: int, amount: int) -> None:
        """dev-misbehave readvance-same-state: once the leaf's clients are back, propose
        `amount` (a different tx at the DW state they just signed)."""
        for _ in range(120):
            await asyncio.sleep(0.5)
            try:
                await self.advance(buyer, amount)
                return
            except AdvanceRefused as exc:
                log.warning("dev-misbehave readvance: %s", exc)
                if "not connected" not in str(exc) and "in flight" not in str(exc):
                    return

    def _abandon(self, fid: bytes, leaf: int, gen: int) -> None:
        with self.d.db.transaction() as c:
            c.execute(
                "UPDATE leaf_advances SET stage='abandoned', updated=? WHERE factory_id=?"
                " AND leaf=? AND generation=? AND stage != 'done'",
                (now(), fid.hex(), leaf, gen),
            )
            c.execute(
                "DELETE FROM channel_anchors WHERE factory_id=? AND stage='pending'", (fid.hex(),)
            )

    async def resend_done(self, peer: Peer, fid: bytes, pos: int) -> None:
        """A reconnecting leaf client may have missed the last DONE of its leaf."""
        if self.d.config.misbehave(LspMisbehaviour.WITHHOLD_ADVANCE_DONE):
            return  # dev-misbehave: DONE never comes
        tree = self.tree(fid)
        leaf = tree.shape.client_leaf[pos]
        row = self.d.db.execute(
            "SELECT generation, new_sig, lstock_secret FROM leaf_advances WHERE factory_id=?"
            " AND leaf=? AND stage='done' ORDER BY generation DESC LIMIT 1",
            (fid.hex(), leaf),
        ).fetchone()
        if row is None:
            return
        with contextlib.suppress(WireError):
            await peer.conn.send_message(
                LeafAdvanceDone(
                    factory_id=Hex32(fid),
                    generation=int(row["generation"]),
                    signature=Hex(bytes.fromhex(row["new_sig"])),
                    lstock_secret=Hex32(bytes.fromhex(row["lstock_secret"])),
                )
            )

    def watch_entries(self, fid: bytes) -> list[WatchEntry]:
        """'The leaf's kickoff appears → broadcast the newest leaf state' for every advanced
        leaf (given to the running watcher, if any)."""
        entries = lsp_watch_entries(self.d.db, fid)
        watch = self.d.watch
        if watch is not None and watch.watcher is not None and entries:
            watch.watcher.add_entries(entries, replace=True)
        return entries


def _newer_entry(
    old_tx: Transaction, new_tx: Transaction, new_sig: bytes, old_seq: int
) -> WatchEntry | None:
    try:
        return newer_state_entry(
            new_tx.inputs[0].prevout.txid,
            new_tx.with_witness(0, (new_sig,)),
            new_tx.inputs[0].sequence,
            old_seq,
        )
    except WatchError as exc:  # pragma: no cover - an advance always shortens the lock
        log.error("no newer-state entry: %s", exc)
        return None


def lsp_watch_entries(db: Any, fid: bytes) -> list[WatchEntry]:
    """Per advanced leaf: its newest signed state answers its kickoff (the oldest, longest
    lock is the deadline: the newest state must confirm before any older one can)."""
    out = []
    rows = db.execute(
        "SELECT leaf, old_tx, new_tx, new_sig FROM leaf_advances WHERE factory_id=?"
        " AND stage='done' ORDER BY leaf, generation",
        (fid.hex(),),
    ).fetchall()
    first: dict[int, Transaction] = {}
    last: dict[int, Any] = {}
    for r in rows:
        first.setdefault(int(r["leaf"]), Transaction.from_hex(r["old_tx"]))
        last[int(r["leaf"])] = r
    for leaf, r in last.items():
        entry = _newer_entry(
            first[leaf],
            Transaction.from_hex(r["new_tx"]),
            bytes.fromhex(r["new_sig"]),
            first[leaf].inputs[0].sequence,
        )
        if entry is not None:
            out.append(entry)
    return out


# -- client ---------------------------------------------------------------------------------


@dataclass
class _ClientPending:
    fid: bytes
    leaf: int
    generation: int
    signer: Signer
    session: SessionSpec
    secrets: ChannelSecrets
    state: ChannelState
    client_msat: int
    """Our balance when we checked the proposal: it must not move before we sign."""


class ClientAdvance:
    """A leaf client's side (see the module docstring); messages come from its session loop."""

    def __init__(self, daemon: ClientDaemon) -> None:
        self.d = daemon
        self._pending: _ClientPending | None = None
        self.waiting: asyncio.Future[dict[str, Any]] | None = None
        """Set while our own liquidity request waits for DONE or a refusal."""

    def recover(self) -> None:
        """A 'nonces' row died with its secret nonces; 'psigs' waits for the LSP's DONE."""
        self._pending = None
        with self.d.db.transaction() as c:
            c.execute(
                "UPDATE leaf_advances SET stage='abandoned', updated=? WHERE stage IN"
                " ('proposed', 'nonces')",
                (now(),),
            )

    def signed_unfinished(self, fid: bytes) -> list[Any]:
        """Our 'psigs' rows in `fid`: advances we signed whose DONE has not come."""
        return list(
            self.d.db.execute(
                "SELECT * FROM leaf_advances WHERE factory_id=? AND stage='psigs'"
                " ORDER BY generation",
                (fid.hex(),),
            ).fetchall()
        )

    def frozen(self, fid: bytes) -> str | None:
        """Why our channel in `fid` takes no update now (`FROZEN: ...`), or None."""
        rows = self.signed_unfinished(fid)
        if not rows:
            return None
        return (
            f"{FROZEN}: we signed the leaf advance to generation {rows[-1]['generation']}"
            " and wait for its DONE (or our exit)"
        )

    def pending_exit(self, fid: bytes, pos: int) -> tuple[Transaction, ChannelSecrets, Any] | None:
        """For an exit while frozen: the signed-but-unfinished leaf state tx, and our channel
        re-anchored on it (secrets, state with the LSP's signature on our commitment) — what
        we publish if the LSP puts that leaf state on chain instead of the old one."""
        rows = self.signed_unfinished(fid)
        if not rows:
            return None
        row = rows[-1]
        anchor = self.d.db.execute(
            "SELECT state FROM channel_anchors WHERE factory_id=? AND position=? AND"
            " generation=? AND stage='pending'",
            (fid.hex(), pos, int(row["generation"])),
        ).fetchone()
        if anchor is None:  # pragma: no cover - kept with the row, in one transaction
            log.error("no re-anchored channel for signed generation %s", row["generation"])
            return None
        from .chancodec import decode_state

        secrets = channel_secrets(self.d.ladder.key_for(fid), fid, pos, int(row["generation"]))
        return Transaction.from_hex(row["new_tx"]), secrets, decode_state(anchor["state"])

    async def loop(self, interval: float = 2.0) -> None:
        """The client's advance chores: exit when a signed advance's DONE is overdue; with
        dev-misbehave drain-liquidity, ask for liquidity again and again."""
        while True:
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("advance tick failed")
            await asyncio.sleep(interval)

    async def _tick(self) -> None:
        from .exit import exit_requested

        d = self.d
        row = d._current()
        if row is None or row["state"] != "funded":
            return
        fid = bytes.fromhex(row["factory_id"])
        signed = self.signed_unfinished(fid)
        if signed and not exit_requested(d.db, fid):
            key = _signed_height_key(fid, int(signed[0]["generation"]))
            since = d._kv(key)
            tip = d.chain.get_block_count()
            if since is not None and tip >= int(since) + d.config.advance_done_blocks:
                log.warning(
                    "leaf advance signed at height %s has no DONE at %d: exiting on chain",
                    since,
                    tip,
                )
                await d.request_exit(fid)
            return
        if d.config.misbehave(ClientMisbehaviour.DRAIN_LIQUIDITY):
            # dev-misbehave: keep buying free liquidity to use up the leaf
            shell = d.channel
            if d.conn is None or shell is None or not shell.ready.is_set():
                return
            try:
                await self.request(DRAIN_SAT)
            except (AdvanceRefused, WireError, TimeoutError) as exc:
                d.last_error = f"liquidity refused: {exc}"

    def _current_leaf(self, fid: bytes) -> tuple[Transaction, int, XOnlyPublicKey]:
        """Our leaf's current state tx, its L-stock generation and point."""
        row = self.d.db.execute(
            "SELECT generation, new_tx, lstock_point FROM leaf_advances WHERE factory_id=?"
            " AND stage='done' ORDER BY generation DESC LIMIT 1",
            (fid.hex(),),
        ).fetchone()
        if row is None:
            verified = self.d._verified_of(self.d._current())
            return verified.view.steps[-1].tx, 0, verified.view.lstock_point
        point = XOnlyPublicKey(bytes.fromhex(row["lstock_point"]))
        return Transaction.from_hex(row["new_tx"]), int(row["generation"]), point

    async def request(self, amount_sat: int) -> dict[str, Any]:
        """Ask the LSP for `amount_sat` of inbound liquidity; wait for the advance."""
        d = self.d
        row = d._current()
        if row is None or row["state"] != "funded" or d.conn is None:
            raise AdvanceRefused("not in a funded factory or not connected")
        # (also while frozen: the LSP may resume the advance we signed, and only that one)
        _quiescent_balances(d.channel, int(row["position"]))
        if self.waiting is not None and not self.waiting.done():
            raise AdvanceRefused("a liquidity request is already waiting")
        loop = asyncio.get_running_loop()
        self.waiting = loop.create_future()
        await d.conn.send_message(
            LiquidityRequest(
                factory_id=Hex32(bytes.fromhex(row["factory_id"])), amount_sat=amount_sat
            )
        )
        return await asyncio.wait_for(self.waiting, 120)

    def _settle(self, result: dict[str, Any] | None, error: str | None = None) -> None:
        fut = self.waiting
        if fut is not None and not fut.done():
            if error is not None:
                fut.set_exception(AdvanceRefused(error))
            elif result is not None:
                fut.set_result(result)

    def disconnected(self) -> None:
        """The LSP is gone: a waiting request fails now (a finished advance still reaches
        us as a resent DONE on reconnect; an unfinished one is abandoned)."""
        self._pending = None
        with self.d.db.transaction() as c:  # their secret nonces are gone with `_pending`
            c.execute(
                "UPDATE leaf_advances SET stage='abandoned', updated=? WHERE stage IN"
                " ('proposed', 'nonces')",
                (now(),),
            )
        self._settle(None, "disconnected from the LSP during the advance")

    def on_refuse(self, msg: LeafAdvanceRefuse) -> None:
        self._pending = None
        if self.d._current() is not None:
            with self.d.db.transaction() as c:
                c.execute(
                    "UPDATE leaf_advances SET stage='abandoned', updated=? WHERE factory_id=?"
                    " AND stage IN ('proposed', 'nonces')",
                    (now(), bytes(msg.factory_id).hex()),
                )
                # the re-anchored channel of an advance we signed stays: the LSP may
                # still publish that leaf state, and it is our only way out then
                c.execute(
                    "DELETE FROM channel_anchors WHERE stage='pending' AND NOT EXISTS"
                    " (SELECT 1 FROM leaf_advances l WHERE l.factory_id ="
                    " channel_anchors.factory_id AND l.generation = channel_anchors.generation"
                    " AND l.stage='psigs')"
                )
        self._settle(None, f"the LSP refused: {msg.reason}")

    async def on_propose(self, conn: PeerConnection, msg: LeafAdvancePropose) -> None:
        from .client import Refused

        d = self.d
        fid = bytes(msg.factory_id)
        row = d._expect_row(fid, "funded")
        pos = int(row["position"])
        shell = d.channel
        try:
            client_msat, lsp_msat = _quiescent_balances(shell, pos)
        except AdvanceRefused as exc:
            raise Refused(str(exc)) from exc
        assert shell is not None and shell.state is not None
        verified = d._verified_of(row)
        current, generation, _ = self._current_leaf(fid)
        lo, hi = verified.view.steps[-1].signers
        if msg.generation != generation + 1:
            raise Refused(f"advance to generation {msg.generation}; ours is {generation}")
        try:
            proposed = Transaction.from_bytes(bytes(msg.leaf_tx))
            new_point = msg.lstock_point.to_key()
            session = verify_leaf_advance(
                current,
                verified.sessions[-1],
                verified.spent[-1],
                proposed,
                params=verified.view.params,
                lsp=verified.view.lsp,
                leaf_clients=verified.view.participants[lo:hi],
                buyer_offset=msg.buyer - lo,
                amount=msg.amount_sat,
                new_point=new_point,
            )
        except (FactoryError, ValueError) as exc:
            raise Refused(f"leaf advance refused: {exc}") from exc
        signed = d.db.execute(
            "SELECT new_tx FROM leaf_advances WHERE factory_id=? AND stage IN ('psigs', 'done')",
            (fid.hex(),),
        ).fetchall()
        try:  # a signed DW state is never replaced: only the identical tx is resumed
            resume = check_signed_state(
                [Transaction.from_hex(r["new_tx"]) for r in signed], proposed
            )
        except AdvanceRefusal as exc:
            raise Refused(str(exc)) from exc
        if pos == msg.buyer:
            lsp_msat += msg.amount_sat * 1000
        funding = _funding_of(proposed, pos - lo)
        fkey = d.ladder.key_for(fid)
        secrets = channel_secrets(fkey, fid, pos, channel_anchor(d.db, fid, pos) + 1)
        ours = open_message(
            secrets,
            funding,
            CHANNEL_CONFIG,
            is_initiator=False,
            balance_msat=client_msat,
            close_script=shell.state.local_close_script,
        )
        try:
            theirs = decode_message(msg.channel_open)
            if not isinstance(theirs, ChannelOpen) or theirs.balance_msat != lsp_msat:
                raise ValueError("the LSP's side of the new channel is not the agreed balance")
            t = accept_open(secrets, funding, ours, theirs, chain_height=shell.state.chain_height)
        except (ChannelError, ValueError) as exc:
            raise Refused(f"leaf advance channel refused: {exc}") from exc
        (funding_signed,) = [e.message for e in t.effects if isinstance(e, SendMessage)]
        # resuming: the signed row stays at 'psigs' and its re-anchored commitment (with
        # the LSP's signature) stays until the new one is signed too
        verb = "INSERT OR IGNORE" if resume else "INSERT OR REPLACE"
        with d.db.transaction() as c:
            c.execute(
                f"{verb} INTO leaf_advances VALUES"
                " (?, ?, ?, 'nonces', ?, ?, ?, NULL, ?, NULL, ?, NULL, ?, ?)",
                (
                    fid.hex(),
                    msg.leaf,
                    msg.generation,
                    msg.buyer,
                    msg.amount_sat,
                    current.hex(),
                    proposed.hex(),
                    new_point.data.hex(),
                    now(),
                    now(),
                ),
            )
            c.execute(
                "INSERT OR REPLACE INTO nonce_use VALUES (?, ?, ?, ?)",
                (fid.hex(), 1000 + msg.generation, f"advance{msg.leaf}/{msg.generation}", now()),
            )
            c.execute(
                f"{verb} INTO channel_anchors VALUES (?, ?, ?, 'pending', ?)",
                (fid.hex(), pos, msg.generation, encode_state(t.state)),
            )
        signer = Signer(pos + 1, fkey, [session])
        bundle = signer.nonces()
        self._pending = _ClientPending(
            fid, msg.leaf, msg.generation, signer, session, secrets, t.state, client_msat
        )
        await conn.send_message(
            LeafAdvanceNonce(
                factory_id=msg.factory_id,
                generation=msg.generation,
                bundle=Hex(bundle.to_bytes()),
                channel_open=encode_message(ours),
                funding_signed=encode_message(funding_signed),
            )
        )

    async def on_agg(self, conn: PeerConnection, msg: LeafAdvanceAggNonce) -> None:
        from .client import Refused

        p = self._pending
        if p is None or p.fid != bytes(msg.factory_id) or p.generation != msg.generation:
            raise Refused("no leaf advance in progress")
        try:
            signed = decode_message(msg.funding_signed)
            if not isinstance(signed, FundingSigned):
                raise ValueError("expected funding_signed")
            state = step(p.secrets, p.state, signed).state
            agg = AggNonceBundle.from_bytes(bytes(msg.bundle))
        except (ChannelError, FactoryError, ValueError) as exc:
            raise Refused(f"leaf advance refused: {exc}") from exc
        p.state = state
        self._pending = None
        pos = int(self.d._current()["position"])
        try:  # the re-anchored balances must still be the channel's: nothing moved since
            client_msat, _ = _quiescent_balances(self.d.channel, pos)
        except AdvanceRefused as exc:
            raise Refused(str(exc)) from exc
        if client_msat != p.client_msat:
            raise Refused("our channel moved during the leaf advance: not signing it")
        height = self.d.chain.get_block_count()
        # from here our channel is frozen until DONE (or our exit): persisted first
        with self.d.db.transaction() as c:
            c.execute(
                "UPDATE leaf_advances SET stage='psigs', updated=? WHERE factory_id=?"
                " AND generation=?",
                (now(), p.fid.hex(), p.generation),
            )
            c.execute(
                "INSERT OR IGNORE INTO node_kv VALUES (?, ?)",
                (_signed_height_key(p.fid, p.generation), str(height)),
            )
            c.execute(
                "INSERT OR REPLACE INTO channel_anchors VALUES (?, ?, ?, 'pending', ?)",
                (p.fid.hex(), pos, p.generation, encode_state(state)),
            )
        try:
            psig = p.signer.sign(agg)
        except (FactoryError, ValueError) as exc:
            raise Refused(f"cannot sign the leaf advance: {exc}") from exc
        await conn.send_message(
            LeafAdvancePsig(
                factory_id=msg.factory_id, generation=msg.generation, bundle=Hex(psig.to_bytes())
            )
        )
        crash_point("client-advance-after-psig")

    def on_done(self, msg: LeafAdvanceDone) -> None:
        from .client import Refused

        d = self.d
        fid = bytes(msg.factory_id)
        row = d.db.execute(
            "SELECT * FROM leaf_advances WHERE factory_id=? AND generation=?",
            (fid.hex(), msg.generation),
        ).fetchone()
        if row is None or row["stage"] == "done":
            return  # a resend of one we finished
        if row["stage"] != "psigs":
            raise Refused(f"leaf advance DONE at stage {row['stage']}")
        verified = d._verified_of(d._current())
        new_tx = Transaction.from_hex(row["new_tx"])
        old_tx = Transaction.from_hex(row["old_tx"])
        session = verify_leaf_advance(
            old_tx,
            verified.sessions[-1],
            verified.spent[-1],
            new_tx,
            params=verified.view.params,
            lsp=verified.view.lsp,
            leaf_clients=verified.view.participants[
                verified.view.steps[-1].signers[0] : verified.view.steps[-1].signers[1]
            ],
            buyer_offset=int(row["buyer"]) - verified.view.steps[-1].signers[0],
            amount=int(row["amount_sat"]),
            new_point=XOnlyPublicKey(bytes.fromhex(row["lstock_point"])),
        )
        sig = bytes(msg.signature)
        if len(sig) != 64 or not schnorr.verify(session.keyagg.xonly, session.msg, sig):
            raise Refused("the new leaf state's signature does not verify")
        _, _, old_point = self._old_point(fid, int(row["generation"]) - 1, verified)
        try:
            verify_burn_secret(old_point, bytes(msg.lstock_secret))
        except FactoryError as exc:
            raise Refused(f"revealed L-stock secret refused: {exc}") from exc
        pos = int(d._current()["position"])
        pending = d.db.execute(
            "SELECT state FROM channel_anchors WHERE factory_id=? AND position=? AND"
            " generation=? AND stage='pending'",
            (fid.hex(), pos, msg.generation),
        ).fetchone()
        shell = d.channel
        if shell is None or shell.factory_id != fid:  # DONE resent right after a restart
            from .channels import load_channel
            from .client import _record_payments

            shell = load_channel(d.db, d.ladder.key_for(fid), fid, pos, _record_payments)
        if pending is None or shell is None or shell.state is None:
            raise Refused("no re-anchored channel for this advance")
        from .chancodec import decode_state

        new_state = decode_state(pending["state"])
        with d.db.transaction() as c:
            c.execute(
                "UPDATE leaf_advances SET stage='done', new_sig=?, lstock_secret=?, updated=?"
                " WHERE factory_id=? AND generation=?",
                (sig.hex(), bytes(msg.lstock_secret).hex(), now(), fid.hex(), msg.generation),
            )
            _persist_switch(c, fid, pos, shell.state, msg.generation - 1, new_state)
        fkey = d.ladder.key_for(fid)
        secrets = channel_secrets(fkey, fid, pos, msg.generation)
        d.channel = ChannelShell(d.db, secrets, fid, pos, new_state, journal=shell.journal)
        self.add_watch_entries(fid)
        log.info("leaf advanced to generation %d", msg.generation)
        self._settle(
            {
                "generation": msg.generation,
                "amount_sat": int(row["amount_sat"]),
                "leaf_txid": new_tx.txid_hex,
                "sequence": new_tx.inputs[0].sequence,
            }
        )

    def _old_point(
        self, fid: bytes, generation: int, verified: Any
    ) -> tuple[Transaction, int, XOnlyPublicKey]:
        if generation == 0:
            return verified.view.steps[-1].tx, 0, verified.view.lstock_point
        row = self.d.db.execute(
            "SELECT new_tx, lstock_point FROM leaf_advances WHERE factory_id=? AND generation=?",
            (fid.hex(), generation),
        ).fetchone()
        point = XOnlyPublicKey(bytes.fromhex(row["lstock_point"]))
        return Transaction.from_hex(row["new_tx"]), generation, point

    def add_watch_entries(self, fid: bytes) -> list[WatchEntry]:
        entries = client_watch_entries(self.d.db, fid, self.d._verified_of(self.d._current()))
        watch = self.d.watch
        if watch is not None and watch.watcher is not None and entries:
            watch.watcher.add_entries(entries, replace=True)
        return entries


def client_watch_entries(db: Any, fid: bytes, verified: Any) -> list[WatchEntry]:
    """Our leaf's newest state answers its kickoff; each superseded leaf state's L-stock is
    burnt with its revealed secret if that state ever confirms."""
    rows = db.execute(
        "SELECT generation, old_tx, new_tx, new_sig, lstock_point, lstock_secret FROM"
        " leaf_advances WHERE factory_id=? AND stage='done' ORDER BY generation",
        (fid.hex(),),
    ).fetchall()
    if not rows:
        return []
    view = verified.view
    lo, hi = view.steps[-1].signers
    params = view.params
    first_old = Transaction.from_hex(rows[0]["old_tx"])
    out: list[WatchEntry] = []
    last = rows[-1]
    entry = _newer_entry(
        first_old,
        Transaction.from_hex(last["new_tx"]),
        bytes.fromhex(last["new_sig"]),
        first_old.inputs[0].sequence,
    )
    if entry is not None:
        out.append(entry)
    points = [view.lstock_point] + [XOnlyPublicKey(bytes.fromhex(r["lstock_point"])) for r in rows]
    for i, r in enumerate(rows):
        old_tx = Transaction.from_hex(r["old_tx"])
        point = points[i]
        n = hi - lo
        output = lstock_output(view.lsp, list(view.participants[lo:hi]), point,
                               params.lstock_csv_delay)  # fmt: skip
        ref = TreeOutput(old_tx.outpoint(n), old_tx.outputs[n], output)
        try:
            key = verify_burn_secret(point, bytes.fromhex(r["lstock_secret"]))
            burn = lstock_burn_tx(ref, key)
            out.append(lstock_burn_entry(old_tx.txid, burn, params.lstock_csv_delay))
        except (FactoryError, WatchError) as exc:
            log.error("no L-stock burn entry for generation %d: %s", i, exc)
    return out
