"""The LSP's HTLC forwarding between leaf channels, kept in SQLite so a crash loses nothing.

A forward is one row of `forwards`, keyed by the upstream (payer's) HTLC:

    received → forwarded → fulfilled | failed

Every move is written by `record` *inside* the transaction that persists the
channel step causing it (the shell's journal hook): the upstream HTLC becoming
irrevocable inserts the row; our update_add_htlc downstream marks it
forwarded; the payee's fulfill (with its preimage) or fail resolves it; our
fail upstream before forwarding marks it failed. So the row and the channel
states can never disagree, whatever instant the process dies at.

Resolution upstream needs no state of its own: after every reestablish the
channel core re-announces each committed incoming HTLC it has not started to
settle, and `on_notice` then does what the row says — forward, wait, fulfill
or fail. Settling twice is refused by the core (the HTLC is already being
settled), which makes every step here idempotent.

The downstream expiry is the upstream one less the factory's forwarding delta
for that pair of positions (`ladder.enforce.forward_cltv_delta`: both clients'
exit paths, confirmation margins and the channel's claim budget), never a
constant: the delta must cover exiting the tree on both sides. The forwarder
stores the downstream expiry it chose (`out_expiry`) before the add goes out, and
the journal ties the add to that row.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable

from superscalar.channel import (
    AddHtlc,
    ChannelError,
    Direction,
    Effect,
    FailHtlc,
    FulfillHtlc,
    Htlc,
    IncomingHtlcCommitted,
    OutgoingHtlcFailed,
    OutgoingHtlcFulfilled,
    SendMessage,
    UpdateAddHtlc,
    UpdateFailHtlc,
)
from superscalar.store.db import Database
from superscalar.wire.errors import WireError

from .channels import ChannelShell, Journal, Sender
from .common import crash_point, now

__all__ = ["Forwarder", "forward_journal"]

log = logging.getLogger(__name__)


def forward_journal(factory_id: bytes) -> Journal:
    """The journal hook for the LSP's channels of `factory_id` (see the module docstring)."""
    fid = factory_id.hex()

    def record(c: sqlite3.Connection, pos: int, effects: tuple[Effect, ...]) -> None:
        for e in effects:
            if isinstance(e, IncomingHtlcCommitted):
                h = e.htlc
                c.execute(
                    "INSERT OR IGNORE INTO forwards (factory_id, up_position, up_htlc_id,"
                    " payment_hash, amount_msat, cltv_expiry, payee, state, updated)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, 'received', ?)",
                    (fid, pos, h.id, h.payment_hash.hex(), h.amount_msat, h.cltv_expiry,
                     h.onion.hex(), now()),
                )  # fmt: skip
            elif isinstance(e, SendMessage) and isinstance(e.message, UpdateAddHtlc):
                h = e.message.htlc
                # the upstream HTLC this add forwards: same hash, amount and the downstream
                # expiry the forwarder chose for it, oldest first, so two payments sharing
                # a hash never swap
                c.execute(
                    "UPDATE forwards SET state='forwarded', down_position=?, down_htlc_id=?,"
                    " updated=? WHERE rowid = (SELECT rowid FROM forwards WHERE factory_id=?"
                    " AND payment_hash=? AND amount_msat=? AND out_expiry=?"
                    " AND state='received' ORDER BY rowid LIMIT 1)",
                    (pos, h.id, now(), fid, h.payment_hash.hex(), h.amount_msat,
                     h.cltv_expiry),
                )  # fmt: skip
            elif isinstance(e, SendMessage) and isinstance(e.message, UpdateFailHtlc):
                c.execute(
                    "UPDATE forwards SET state='failed', updated=? WHERE factory_id=?"
                    " AND up_position=? AND up_htlc_id=? AND state='received'",
                    (now(), fid, pos, e.message.id),
                )
            elif isinstance(e, OutgoingHtlcFulfilled | OutgoingHtlcFailed):
                ok = isinstance(e, OutgoingHtlcFulfilled)
                c.execute(
                    "UPDATE forwards SET state=?, preimage=?, updated=? WHERE factory_id=?"
                    " AND down_position=? AND down_htlc_id=? AND payment_hash=?"
                    " AND state='forwarded'",
                    (
                        "fulfilled" if ok else "failed",
                        e.preimage.hex() if isinstance(e, OutgoingHtlcFulfilled) else None,
                        now(),
                        fid,
                        pos,
                        e.htlc.id,
                        e.htlc.payment_hash.hex(),
                    ),
                )

    return record


class Forwarder:
    """Acts on channel notices for the LSP: forward upstream HTLCs, settle them back."""

    def __init__(
        self,
        db: Database,
        factory_id: bytes,
        channels: dict[int, ChannelShell],
        sender: Callable[[int], Sender],
        payee_position: Callable[[bytes], int | None],
        connected: Callable[[int], bool],
        refusal: Callable[[int, int], str | None] = lambda up, down: None,
        expiry_refusal: Callable[[int, int], str | None] = lambda up, cltv_expiry: None,
        cltv_delta: Callable[[int, int], int] = lambda up, down: 144,
    ) -> None:
        self.db = db
        self.refusal = refusal
        """Why the factory takes no new HTLC between two positions now (the ladder's say)."""
        self.expiry_refusal = expiry_refusal
        """Why an HTLC from position `up` expiring at that height cannot be enforced within
        the factory's life."""
        self.cltv_delta = cltv_delta
        """Blocks between the upstream and the downstream expiry for (up, down) positions."""
        self.factory_id = factory_id
        self.channels = channels
        self.sender = sender
        self.payee_position = payee_position
        self.connected = connected

    def _row(self, where: str, params: tuple[object, ...]) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db.execute(
            f"SELECT * FROM forwards WHERE factory_id=? AND {where}",
            (self.factory_id.hex(), *params),
        ).fetchone()
        return row

    async def on_notice(self, pos: int, notice: Effect, *, resumed: bool = False) -> None:
        """Handle one channel notice from position `pos` (`resumed`: after a reestablish)."""
        if isinstance(notice, IncomingHtlcCommitted):
            row = self._row("up_position=? AND up_htlc_id=?", (pos, notice.htlc.id))
            if row is None or row["state"] == "received":
                await self._forward(pos, notice.htlc, resumed=resumed)
            elif row["state"] in ("fulfilled", "failed"):
                await self._settle_upstream(row)
        elif isinstance(notice, OutgoingHtlcFulfilled | OutgoingHtlcFailed):
            row = self._row(
                "down_position=? AND down_htlc_id=? AND payment_hash=?"
                " AND state IN ('fulfilled', 'failed')",
                (pos, notice.htlc.id, notice.htlc.payment_hash.hex()),
            )
            if row is not None:
                await self._settle_upstream(row)

    async def expire_waiting(self, height: int, min_cltv_delta: int) -> int:
        """Fail back every forward still waiting for an absent payee once it could no
        longer be offered downstream (our expiry, theirs less the pair's delta, would leave
        the payee under `min_cltv_delta` blocks): the payer gets its HTLC back now
        instead of at its timeout on chain. Returns how many failed back."""
        rows = self.db.execute(
            "SELECT up_position, up_htlc_id, cltv_expiry, payee FROM forwards"
            " WHERE factory_id=? AND state='received'",
            (self.factory_id.hex(),),
        ).fetchall()
        failed = 0
        for row in rows:
            up_pos, up_id = int(row["up_position"]), int(row["up_htlc_id"])
            down = self.payee_position(bytes.fromhex(row["payee"]))
            delta = self.cltv_delta(up_pos, up_pos if down is None else down)
            if int(row["cltv_expiry"]) >= height + min_cltv_delta + delta:
                continue
            if (
                up_pos in self.channels
                and self.connected(up_pos)
                and await self._apply(up_pos, FailHtlc(up_id, b"payee did not return"))
            ):
                failed += 1
        return failed

    async def resume_payee(self, pos: int) -> None:
        """The channel at `pos` is back: forward what waited for it while it was away."""
        shell = self.channels.get(pos)
        if shell is None or shell.state is None:
            return
        # forwards name payees by node key; a channel's funding key is the client's
        # per-factory key (see `ladder`), so look the node key up by position
        client = self.db.execute(
            "SELECT pubkey FROM factory_clients WHERE factory_id=? AND position=?",
            (self.factory_id.hex(), pos),
        ).fetchone()
        if client is None:
            return
        payee = bytes.fromhex(client["pubkey"])
        rows = self.db.execute(
            "SELECT up_position, up_htlc_id FROM forwards WHERE factory_id=? AND state='received'"
            " AND payee=?",
            (self.factory_id.hex(), payee.hex()),
        ).fetchall()
        for r in rows:
            up = self.channels.get(int(r["up_position"]))
            lc = None if up is None or up.state is None else up.state.local_commit
            htlc = None if lc is None else lc.spec.find(Direction.RECEIVED, int(r["up_htlc_id"]))
            if htlc is not None:
                await self._forward(int(r["up_position"]), htlc, resumed=True)

    async def _apply(self, pos: int, event: FulfillHtlc | FailHtlc | AddHtlc) -> bool:
        """Step channel `pos`; False if refused (state untouched) or not delivered now."""
        try:
            more = await self.channels[pos].apply(event, self.sender(pos))
        except ChannelError as exc:
            log.info("channel %d refused %s: %s", pos, type(event).__name__, exc)
            return False
        except WireError as exc:  # persisted; a reconnect's reestablish settles it
            log.info("channel %d offline for %s: %s", pos, type(event).__name__, exc)
            return False
        for n in more:
            await self.on_notice(pos, n)
        return True

    async def _settle_upstream(self, row: sqlite3.Row) -> None:
        up_pos, up_id = int(row["up_position"]), int(row["up_htlc_id"])
        if up_pos not in self.channels:
            return
        if row["state"] == "fulfilled":
            crash_point("lsp-before-upstream-fulfill")
            await self._apply(up_pos, FulfillHtlc(up_id, bytes.fromhex(row["preimage"])))
        else:
            await self._apply(up_pos, FailHtlc(up_id, b"cannot forward"))

    async def _forward(self, pos: int, htlc: Htlc, *, resumed: bool) -> None:
        """Offer an irrevocably committed upstream HTLC to its payee (onion = the payee's key).

        A payee that is not connected fails a fresh payment at once; a resumed
        one waits for the payee's reestablish (`resume_payee`).
        """
        down = self.payee_position(htlc.onion)
        target = None if down is None else self.channels.get(down)
        if down is None or target is None or down == pos:
            await self._apply(pos, FailHtlc(htlc.id, b"unknown payee"))
            return
        refused = self.refusal(pos, down) or self.expiry_refusal(pos, htlc.cltv_expiry)
        if refused is not None:
            await self._apply(pos, FailHtlc(htlc.id, refused.encode()[:256]))
            return
        state = target.state
        if (
            not self.connected(down)
            or not target.ready.is_set()
            or state is None
            or state.reestablishing
        ):
            if not resumed:
                await self._apply(pos, FailHtlc(htlc.id, b"payee not connected"))
            return
        crash_point("lsp-before-forward")
        out_expiry = htlc.cltv_expiry - self.cltv_delta(pos, down)
        with self.db.transaction() as c:  # what the journal ties the add to (see the top)
            c.execute(
                "UPDATE forwards SET out_expiry=? WHERE factory_id=? AND up_position=?"
                " AND up_htlc_id=? AND state='received'",
                (out_expiry, self.factory_id.hex(), pos, htlc.id),
            )
        add = AddHtlc(htlc.amount_msat, htlc.payment_hash, out_expiry)
        if not await self._apply(down, add):
            row = self._row("up_position=? AND up_htlc_id=?", (pos, htlc.id))
            if row is not None and row["state"] == "received":  # refused: nothing went out
                await self._apply(pos, FailHtlc(htlc.id, b"cannot forward"))
