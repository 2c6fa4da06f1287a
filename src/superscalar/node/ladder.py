"""The ladder in the daemons: rotation, the atomic move (PTLC key turnover), old-factory
closes — the I/O shell around `ladder.move` and `ladder.close`.

The key travels in the move itself (`ladder.move`): a mover's new channel opens
all on the LSP's side, the LSP offers one PTLC of the old balance locked to the
client's old factory key, and the client's fulfil (its scalar) is the key.
Persistence, before anything that commits to it is sent:

- LSP: the move is planned with the new factory (`ptlc_moves`, stage
  `planned`), marked `offered` before the PTLC is added; the revealed key is
  stored as a `done` turnover in the *same* SQLite transaction as the channel
  state that carries the fulfil (`move_journal`), so a crash can never keep
  the balance moved but lose the key.
- Client: the handover (turnovers stage `handed_over`, the new current
  factory, the move `fulfilled`) is stored in one transaction before the
  fulfil goes out (`ClientLadder.on_move_ptlc`); after a restart the channel
  re-announces the PTLC and the client finishes the fulfil.

This is the only path to a client's key: the earlier separate pre-signature
exchange (`turnover_presig`/`turnover_sig`) is retired, because it ran after
the balance had already moved (issue 8); `ladder.turnover` keeps the primitives.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from superscalar.bitcoin.fees import Feerate
from superscalar.bitcoin.tx import OutPoint, Transaction, TxOut
from superscalar.chain.bitcoind import ChainResponseError, ChainUnavailable
from superscalar.chain.rpc import RpcError
from superscalar.channel import messages as chmsg
from superscalar.channel.errors import ChannelError
from superscalar.channel.htlc import Htlc, UpdateAddHtlc, ptlc_payment_hash
from superscalar.channel.state import DROPPED_ON_RECONNECT
from superscalar.channel.state import step as channel_step
from superscalar.crypto import schnorr
from superscalar.crypto.adaptor import AdaptorSignature
from superscalar.crypto.keys import PublicKey, SecretKey
from superscalar.factory import (
    FactoryScripts,
    FundingRef,
    SigningPlan,
    VerifiedView,
    build_shape,
    funding_output_ref,
    verify_view,
)
from superscalar.factory.errors import FactoryError
from superscalar.factory.exits import onchain_node_outputs, timeout_recovery_tx
from superscalar.ladder import (
    LadderParams,
    Lifecycle,
    Phase,
    close_with_stayers,
    factory_key,
    ladder_params_for,
    lsp_alone_close,
    missing_keys,
)
from superscalar.ladder.closeout import distribution_underpays, move_expired, stayers_to_close
from superscalar.ladder.enforce import (
    Claim,
    claims_due,
    confirmation_margin,
    enforce_height,
    revealed_claims,
)
from superscalar.ladder.errors import LadderError
from superscalar.ladder.move import (
    MOVE_MARGIN_BLOCKS,
    MovePtlc,
    check_move_ptlc,
    move_amount,
    plan_move,
)
from superscalar.ladder.turnover import (
    ClientStage,
    LspStage,
    LspTurnover,
    TurnoverContext,
)
from superscalar.store.db import Database
from superscalar.wire.codec import Hex, Hex32, PublicKeyHex, decode, decode_record
from superscalar.wire.connection import PeerConnection
from superscalar.wire.errors import WireError
from superscalar.wire.messages import (
    CloseAggNonce,
    CloseDone,
    CloseNonce,
    ClosePropose,
    ClosePsig,
    FactoryPropose,
    JoinRequest,
    Payout,
    RotationInvite,
    TurnoverRefuse,
)

from .channels import (
    CHANNEL_CONFIG,
    ChannelShell,
    Journal,
    channel_capacity,
    load_channel,
    opening_balances,
)
from .common import (
    FactoryTerms,
    crash_point,
    factory_signing_key,
    now,
    params_of,
    record_close_nonce_use,
    spec_of,
    tree_of,
    view_of,
)
from .distribution import (
    client_payout_sat,
    defense_locktime,
    kickoff_status,
    push_kickoff,
    record_kickoff,
    stored_terms,
)
from .exit import exit_requested
from .forwarding import forward_journal
from .misbehave import ClientMisbehaviour, LspMisbehaviour
from .musig import Seat, musig_round
from .peers import Peer, PeerFault, receive

if TYPE_CHECKING:
    from .client import ClientDaemon
    from .lsp import LspDaemon

log = logging.getLogger(__name__)

__all__ = [
    "CURRENT_FACTORY_KEY",
    "ClientLadder",
    "LspLadder",
    "LspTurnovers",
    "client_factory_key",
    "lsp_journal",
    "move_journal",
    "opening_balances_of",
    "record_opening_balances",
]

CURRENT_FACTORY_KEY = "current_factory"
"""node_kv key: the factory id a client currently relies on (the newest it moved into)."""


def _ctx(row: Any) -> TurnoverContext:
    return TurnoverContext(
        bytes.fromhex(row["old_factory"]),
        bytes.fromhex(row["new_factory"]),
        PublicKey.from_hex(row["client_key"]),
        PublicKey.from_hex(row["lsp_key"]),
    )


class LspTurnovers:
    """The LSP's side: one persisted `LspTurnover` per (old factory, client key)."""

    def __init__(self, db: Database, lsp_key: SecretKey) -> None:
        self.db = db
        self.key = lsp_key

    def get(self, old_factory: bytes, client_key: PublicKey) -> LspTurnover | None:
        row = self.db.execute(
            "SELECT * FROM turnovers WHERE old_factory=? AND client_key=? AND role='lsp'",
            (old_factory.hex(), client_key.hex()),
        ).fetchone()
        if row is None:
            return None
        presig = (
            AdaptorSignature.from_bytes(bytes.fromhex(row["presig"])) if row["presig"] else None
        )
        secret = SecretKey(bytes.fromhex(row["secret"])) if row["secret"] else None
        return LspTurnover(_ctx(row), LspStage(row["stage"]), presig, secret, row["reason"])

    def recovered_keys(self, old_factory: bytes) -> dict[bytes, SecretKey]:
        """Client factory keys handed over for `old_factory`, by compressed public key."""
        rows = self.db.execute(
            "SELECT client_key, secret FROM turnovers WHERE old_factory=? AND role='lsp'"
            " AND stage='done'",
            (old_factory.hex(),),
        ).fetchall()
        return {bytes.fromhex(r["client_key"]): SecretKey(bytes.fromhex(r["secret"])) for r in rows}


def save_client_handover(c: sqlite3.Connection, ctx: TurnoverContext) -> None:
    """The client gave its key in `ctx.old_factory` away: from now on that factory is the
    LSP's and `ctx.new_factory` is ours (written before the key leaves us)."""
    c.execute(
        "INSERT OR REPLACE INTO turnovers VALUES (?, ?, 'client', ?, ?, ?, NULL, NULL, '', ?)",
        (
            ctx.old_factory.hex(),
            ctx.client_key.hex(),
            ctx.new_factory.hex(),
            ctx.lsp_key.hex(),
            ClientStage.HANDED_OVER.value,
            now(),
        ),
    )
    c.execute(
        "INSERT OR REPLACE INTO node_kv VALUES (?, ?)", (CURRENT_FACTORY_KEY, ctx.new_factory.hex())
    )


# -- the LSP's ladder: lifecycle, rotation, turnover, lone close -------------------------

POLL_SECONDS = 1.0
STEP_SECONDS = 30.0
RETRY_SECONDS = 5.0


def client_factory_key(node_key: PublicKey, join: JoinRequest) -> PublicKey:
    """The key a joining client signs the factory with (its node key if it sent none)."""
    return join.factory_key.to_key() if join.factory_key is not None else node_key


def record_opening_balances(
    c: sqlite3.Connection,
    fid: bytes,
    peers: Sequence[Peer],
    opening_msat: Callable[[JoinRequest], int],
) -> None:
    """Every client's opening balance, as the LSP decided it (`opening_msat`). Moving
    clients open their new channel with nothing on their side; their old balance comes as
    the move PTLC (`ladder.move`), planned here with the factory."""
    for pos, p in enumerate(peers):
        if p.join.rotating_from is None:
            c.execute(
                "INSERT OR REPLACE INTO factory_balances VALUES (?, ?, ?, 0)",
                (fid.hex(), pos, opening_msat(p.join)),
            )
        elif p.join.balance_msat is not None:
            c.execute(
                "INSERT OR REPLACE INTO factory_balances VALUES (?, ?, 0, 0)", (fid.hex(), pos)
            )
            c.execute(
                "INSERT OR REPLACE INTO ptlc_moves VALUES"
                " (?, ?, 'lsp', ?, '', ?, 'planned', NULL, NULL, '', ?)",
                (
                    fid.hex(),
                    pos,
                    bytes(p.join.rotating_from).hex(),
                    int(p.join.balance_msat),
                    now(),
                ),
            )


def move_journal(factory_id: bytes, lsp_key: PublicKey) -> Journal:
    """Journal hook for the LSP's channels of `factory_id`: a fulfilled move PTLC is the
    client's old factory key, recorded as a `done` turnover in the channel state's own
    transaction (so a crash can never keep the balance moved but lose the key)."""
    fid = factory_id.hex()

    def record(c: sqlite3.Connection, pos: int, effects: tuple[chmsg.Effect, ...]) -> None:
        for e in effects:
            if not isinstance(e, chmsg.OutgoingHtlcFulfilled | chmsg.OutgoingHtlcFailed):
                continue
            point = e.htlc.point
            if point is None:
                continue
            row = c.execute(
                "SELECT * FROM ptlc_moves WHERE new_factory=? AND position=? AND role='lsp'"
                " AND old_key=?",
                (fid, pos, point.hex()),
            ).fetchone()
            if row is None:
                continue
            if isinstance(e, chmsg.OutgoingHtlcFailed):
                if e.reason == DROPPED_ON_RECONNECT:
                    continue  # never committed: offered again on the next tick
                c.execute(
                    "UPDATE ptlc_moves SET stage='failed', reason=?, updated=? WHERE"
                    " new_factory=? AND position=? AND role='lsp' AND stage != 'fulfilled'",
                    (e.reason.decode(errors="replace")[:500], now(), fid, pos),
                )
                continue
            secret = SecretKey(e.preimage)  # the channel core checked scalar·G == point
            c.execute(
                "INSERT OR REPLACE INTO turnovers VALUES (?, ?, 'lsp', ?, ?, ?, NULL, ?, '', ?)",
                (
                    row["old_factory"],
                    point.hex(),
                    fid,
                    lsp_key.hex(),
                    LspStage.DONE.value,
                    secret.to_bytes().hex(),
                    now(),
                ),
            )
            c.execute(
                "UPDATE ptlc_moves SET stage='fulfilled', updated=? WHERE new_factory=?"
                " AND position=? AND role='lsp'",
                (now(), fid, pos),
            )

    return record


def lsp_journal(factory_id: bytes, lsp_key: PublicKey) -> Journal:
    """Everything the LSP writes with a channel state: forwards, then moves."""
    forwards, moves = forward_journal(factory_id), move_journal(factory_id, lsp_key)

    def record(c: sqlite3.Connection, pos: int, effects: tuple[chmsg.Effect, ...]) -> None:
        forwards(c, pos, effects)
        moves(c, pos, effects)

    return record


def opening_balances_of(db: Database, fid: bytes, pos: int, amount_sat: int) -> tuple[int, int]:
    """(client, LSP) msat at open: a moved balance if one was stored, else the join amount."""
    row = db.execute(
        "SELECT client_msat FROM factory_balances WHERE factory_id=? AND position=?",
        (fid.hex(), pos),
    ).fetchone()
    if row is None:
        return opening_balances(amount_sat)
    client = int(row["client_msat"])
    return client, channel_capacity(amount_sat) * 1000 - client


class LspLadder:
    """The LSP's factories by block height.

    Each poll: when the current factory is DYING, invite its connected, idle
    clients into a new factory (built by the daemon's usual ceremony, each
    channel opening at exactly its old balance); then, per moved client, run
    the key turnover; with every key of an old factory, close it alone; an old
    factory still open at its CLTV timeout is swept through the timeout path.
    Everything it decides is derived from the database, so a restart resumes.

    Clients are the attacker too (`ladder.closeout`): a client failing a rotation
    ceremony is barred from it (`bar`); a moved balance stays locked until the old
    factory's close is in a block (`_settle`), closing from the root kickoff's output
    if an exit kicked the tree off (`_close_source`); a move unfulfilled at its expiry
    is cancelled and its client closed out as a stayer; a factory nobody left is closed
    at current balances before its distribution tx (`_close_before_distribution`).
    """

    def __init__(self, daemon: LspDaemon) -> None:
        self.d = daemon
        self._params: LadderParams | None = None
        self.height: int | None = None
        self.retired: dict[bytes, dict[int, ChannelShell]] = {}
        self.turnovers = LspTurnovers(daemon.db, daemon.key)
        self._next_try: dict[tuple[bytes, int], float] = {}
        self._snapshot: dict[str, Any] = {}
        self._locked: set[bytes] | None = None
        """Clients whose moved balance is locked; None until first computed (after a
        restart every old factory counts as unsettled until its close is seen in a block)."""
        self._settled: set[bytes] = set()
        """Old factories whose close tx we saw in a block."""
        self.events: list[str] = []
        self.rotation: dict[str, float] = {}

    # -- lifecycle ------------------------------------------------------------------------

    def params(self) -> LadderParams:
        if self._params is None:
            cfg = self.d.config
            chain = str(self.d.chain.get_blockchain_info().get("chain", "regtest"))
            self._params = ladder_params_for(
                "regtest" if chain == "regtest" else chain, cfg.active_blocks, cfg.dying_blocks
            )
        return self._params

    def lifecycle(self, fid: bytes) -> Lifecycle:
        propose = self._propose(fid)
        return Lifecycle(max(propose.cltv_timeout - self.params().lifetime, 0), self.params())

    def _propose(self, fid: bytes) -> FactoryTerms:
        """The terms of factory `fid` (the LSP keeps the whole tree's, see `common`)."""
        return decode_record(self.d._row(fid)["propose"], FactoryTerms)

    def htlc_refusal(self, fid: bytes, positions: Sequence[int]) -> str | None:
        """Why a new HTLC between client `positions` of `fid` is refused (None: welcome).

        Only ACTIVE factories take new HTLCs; and a client that moved its balance
        here may not use it until the old factory's close is in a block: until then
        the old factory may still pay it (an exit it began before handing its key
        over), and it could spend both.
        """
        if self.height is not None:
            phase = self.lifecycle(fid).phase(self.height)
            if phase is not Phase.ACTIVE:
                return f"factory is {phase} at height {self.height}: no new HTLCs"
        if self._locked is None:
            self._locked = self._locked_clients()
        for pos in positions:
            row = self.d.db.execute(
                "SELECT pubkey FROM factory_clients WHERE factory_id=? AND position=?",
                (fid.hex(), pos),
            ).fetchone()
            if row is not None and bytes.fromhex(row["pubkey"]) in self._locked:
                return (
                    f"move-unsettled: client {pos}'s old factory is not closed on chain yet;"
                    " its moved balance is locked until then"
                )
        return None

    def _locked_clients(self) -> set[bytes]:
        """Node keys of clients in the current factory that were in an older factory whose
        close is not confirmed yet.

        A moved balance is credited (spendable) only once the old factory can no longer
        pay that client: the key alone is not enough, since a client may have started a
        unilateral exit of the old factory before handing it over (attack 7: paid twice).
        Its close — alone, with the stayers, from the root kickoff's output after such an
        exit began, or the timeout sweep — must be in a block first (`_settle`).
        """
        locked: set[bytes] = set()
        current = self.d.factory_id
        if current is None:
            return locked
        for old in self._unsettled_old_factories():
            for c in self.d.db.execute(
                "SELECT o.pubkey FROM factory_clients o JOIN factory_clients n"
                " ON n.pubkey = o.pubkey WHERE o.factory_id=? AND n.factory_id=?",
                (old.hex(), current.hex()),
            ):
                locked.add(bytes.fromhex(c["pubkey"]))
        return locked

    def _unsettled_old_factories(self) -> list[bytes]:
        return [
            bytes.fromhex(r["factory_id"])
            for r in self._factories()
            if bytes.fromhex(r["factory_id"]) != self.d.factory_id
            and bytes.fromhex(r["factory_id"]) not in self._settled
        ]

    def _settle(self, old: bytes) -> None:
        """An old factory we marked closed: is its close tx in a block (then its movers'
        balances unlock)? If the chain does not know it and it cannot be sent (its input
        went to another tx, e.g. a client's exit kicked the tree off first), the close is
        undone, so the next tick closes from where the tree now stands."""
        d = self.d
        row = d._row(old)
        if row["state"] != "closed" or not row["close_txid"]:
            return
        try:
            conf = d.chain.get_raw_transaction_verbose(row["close_txid"]).confirmations
        except (RpcError, ChainResponseError):
            conf = None
        except ChainUnavailable:
            return
        if conf is not None and conf > 0:
            self._settled.add(old)
            self._event(f"factory {old.hex()[:16]}: close {row['close_txid'][:16]} confirmed")
            return
        if conf is not None:
            return  # in the mempool
        try:
            d.chain.send_raw_transaction(Transaction.from_hex(row["close_tx"]))
            return
        except RpcError as exc:
            why = str(exc)
        except ChainUnavailable:
            return
        with d.db.transaction() as c:
            c.execute(
                "UPDATE factories SET state='funded', close_tx=NULL, close_txid=NULL, updated=?"
                " WHERE factory_id=? AND state='closed'",
                (now(), old.hex()),
            )
        self._event(f"factory {old.hex()[:16]}: close {row['close_txid'][:16]} undone ({why})")

    # -- barred peers -----------------------------------------------------------------------

    def bar(
        self, c: sqlite3.Connection, old: bytes, key: PublicKey, code: str, reason: str
    ) -> None:
        """A client failed a rotation out of `old` (in the caller's transaction): it is not
        invited again, so it cannot hold the others' move (and the keys) back; it stays on
        `old` and is closed out there at its balance, like any client that stayed."""
        c.execute(
            "INSERT OR REPLACE INTO barred_peers VALUES (?, ?, ?, ?, ?, ?)",
            (old.hex(), key.hex(), code, reason[:300], self.height or 0, now()),
        )
        self._event(f"client {key.hex()[:16]} barred from moving out of {old.hex()[:16]}: {code}")

    def _bar_now(self, old: bytes, key: PublicKey, code: str, reason: str) -> None:
        with self.d.db.transaction() as c:
            self.bar(c, old, key, code, reason)

    def barred(self, old: bytes) -> dict[bytes, str]:
        """Node keys barred from rotating out of `old`, with their reason codes."""
        return {
            bytes.fromhex(r["pubkey"]): str(r["code"])
            for r in self.d.db.execute(
                "SELECT pubkey, code FROM barred_peers WHERE old_factory=?", (old.hex(),)
            )
        }

    def _barred_status(self) -> list[dict[str, Any]]:
        return [
            {
                "factory_id": r["old_factory"],
                "pubkey": r["pubkey"],
                "code": r["code"],
                "reason": r["reason"],
                "height": int(r["height"]),
            }
            for r in self.d.db.execute("SELECT * FROM barred_peers ORDER BY created")
        ]

    def retire(self, fid: bytes, channels: dict[int, ChannelShell]) -> None:
        self.retired[fid] = channels
        self._event(f"factory {fid.hex()[:16]} retired: its clients moved on")

    def can_reattach(self, fid: bytes) -> bool:
        """A client that stayed on an old, still open factory may reconnect to it."""
        row = self.d._row(fid)
        return row is not None and row["role"] == "lsp" and row["state"] == "funded"

    def snapshot(self) -> dict[str, Any]:
        """For `status` (called from RPC threads: a copy of what the loop last saw)."""
        return dict(self._snapshot)

    def _event(self, text: str) -> None:
        log.info("ladder: %s", text)
        self.events = [*self.events[-19:], text]

    # -- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("ladder tick failed")
            await asyncio.sleep(POLL_SECONDS)

    async def tick(self) -> None:
        d = self.d
        self.height = d.chain.get_block_count()
        params = self.params()
        fid = d.factory_id
        loop = asyncio.get_running_loop()
        if fid is not None and d._row(fid)["state"] == "funded":
            phase = self.lifecycle(fid).phase(self.height)
            if phase is Phase.DYING and loop.time() >= self._next_try.get((fid, -1), 0.0):
                self._next_try[(fid, -1)] = loop.time() + RETRY_SECONDS
                async with d._lock:
                    await self.rotate(fid)
            if d.factory_id == fid:
                await self._close_before_distribution(fid)
        for old in self._unsettled_old_factories():
            self._settle(old)
        for old in self._old_open_factories():
            if self.lifecycle(old).phase(self.height) is Phase.EXPIRED:
                self._timeout_recovery(old)
                continue
            self._defend(old)
            kick = kickoff_status(d.db, old)
            if kick is not None and kick["state"] != "confirmed":
                continue  # the funding is about to be spent: no close until the kickoff is in
            if d.factory_id is not None:
                await self._turn_over_all(old, d.factory_id)
                if kick is None:
                    self._close_if_complete(old)
                await self._close_with_stayers(old, d.factory_id)
        if fid is not None and d.channels:
            expired = await d._forwarder().expire_waiting(
                self.height, CHANNEL_CONFIG.min_cltv_delta
            )
            if expired:
                self._event(f"{expired} forward(s) failed back: the payee did not return")
        self._locked = self._locked_clients()
        self._snapshot = {
            "height": self.height,
            "active_blocks": params.active_blocks,
            "dying_blocks": params.dying_blocks,
            "factories": [self._describe(r["factory_id"]) for r in self._factories()],
            "rotation": dict(self.rotation),
            "barred": self._barred_status(),
            "locked_clients": len(self._locked),
            "events": list(self.events),
        }

    def _factories(self) -> list[Any]:
        return list(
            self.d.db.execute(
                "SELECT factory_id, state FROM factories WHERE role='lsp'"
                " AND state IN ('funded', 'closed') ORDER BY created"
            )
        )

    def _old_open_factories(self) -> list[bytes]:
        return [
            bytes.fromhex(r["factory_id"])
            for r in self._factories()
            if r["state"] == "funded" and bytes.fromhex(r["factory_id"]) != self.d.factory_id
        ]

    def _describe(self, fid_hex: str) -> dict[str, Any]:
        fid = bytes.fromhex(fid_hex)
        lc = self.lifecycle(fid)
        propose = self._propose(fid)
        keys = self.turnovers.recovered_keys(fid)
        return {
            "factory_id": fid_hex,
            "state": self.d._row(fid)["state"],
            "phase": str(lc.phase(self.height or 0)),
            "dying_at": lc.dying_at,
            "expires_at": lc.expires_at,
            "clients": len(propose.clients),
            "keys_handed_over": len(keys),
            "kickoff": kickoff_status(self.d.db, fid),
        }

    # -- rotation ---------------------------------------------------------------------------

    async def rotate(self, old: bytes) -> None:
        """Move the dying factory's connected, idle clients into a new factory."""
        d = self.d
        lc = self.lifecycle(old)
        clients = list(
            d.db.execute(
                "SELECT * FROM factory_clients WHERE factory_id=? ORDER BY position", (old.hex(),)
            )
        )
        invited: list[tuple[int, Peer, int, int]] = []
        barred = self.barred(old)
        for c in clients:
            pos = int(c["position"])
            peer = d.members.get(bytes.fromhex(c["pubkey"]))
            shell = d.channels.get(pos)
            b = shell.balances() if shell is not None else {"open": False}
            code = barred.get(bytes.fromhex(c["pubkey"]))
            if code is not None:
                if self._next_try.get((old, -10 - pos)) is None:
                    self._next_try[(old, -10 - pos)] = 0.0
                    self._event(f"client {pos} stays on the old factory: barred ({code})")
            elif peer is None or peer.conn.closed:
                self._event(f"client {pos} stays on the old factory: offline")
            elif not b["open"] or not b["quiescent"] or b["htlcs"]:
                self._event(f"client {pos} stays on the old factory for now: updates pending")
            else:
                invited.append((pos, peer, int(b["remote_msat"]), int(c["amount_sat"])))
        if not invited:
            return
        start = asyncio.get_running_loop().time()
        self._event(f"factory {old.hex()[:16]} is dying: inviting {len(invited)} client(s) to move")
        invite = RotationInvite(
            old_factory=Hex32(old), dying_at=lc.dying_at, expires_at=lc.expires_at
        )
        for _, peer, _, _ in invited:
            with contextlib.suppress(WireError):
                await peer.conn.send_message(invite)
        joined: list[Peer] = []
        for pos, peer, balance, amount in invited:
            try:
                msg = await receive(peer, STEP_SECONDS)
            except (TimeoutError, WireError) as exc:
                self._event(f"client {pos} did not answer the rotation invite: {exc!r}")
                if isinstance(exc, TimeoutError):  # a stall: the others go on without it
                    self._bar_now(old, peer.key, "rotation-invite-timeout", repr(exc))
                continue
            if isinstance(msg, TurnoverRefuse):
                self._event(f"client {pos} declined to move: {msg.reason}")
                continue
            if (
                not isinstance(msg, JoinRequest)
                or msg.rotating_from is None
                or bytes(msg.rotating_from) != old
                or msg.factory_key is None
                or msg.balance_msat != balance
                or msg.amount_sat != amount
            ):
                self._event(f"client {pos} answered the invite wrongly: {msg!r}"[:300])
                self._bar_now(old, peer.key, "rotation-bad-join", repr(msg))
                continue
            peer.join = msg
            joined.append(peer)
        if not joined:
            return
        before = dict(d.members)
        await d._ceremony(joined)
        for node_key, peer in before.items():  # those who stayed are still our peers
            if node_key not in d.members and not peer.conn.closed:
                d.members[node_key] = peer
        if d.factory_id == old:
            self._event("the new factory's ceremony failed; retrying")
            return
        self.rotation = {
            "clients": len(joined),
            "invite_to_funded_s": round(asyncio.get_running_loop().time() - start, 3),
        }
        self._rotation_start = start
        self._locked = self._locked_clients()  # before any moved balance can be used
        assert d.factory_id is not None
        self._event(f"factory {d.factory_id.hex()[:16]} funded with {len(joined)} moved clients")

    # -- turnover ---------------------------------------------------------------------------

    def _old_channel(self, old: bytes, pos: int) -> ChannelShell | None:
        shell = self.retired.get(old, {}).get(pos)
        return shell if shell is not None else load_channel(self.d.db, self.d.key, old, pos)

    async def _turn_over_all(self, old: bytes, new: bytes) -> None:
        """Offer each mover its move PTLC (`ladder.move`); its fulfil hands over the key."""
        d = self.d
        loop = asyncio.get_running_loop()
        rows = list(
            d.db.execute(
                "SELECT * FROM ptlc_moves WHERE role='lsp' AND old_factory=? AND new_factory=?"
                " AND stage IN ('planned', 'offered')",
                (old.hex(), new.hex()),
            )
        )
        if not rows:
            return
        propose = self._propose(old)
        for row in rows:
            pos = int(row["position"])
            expiry = row["cltv_expiry"]
            if self.height is not None and move_expired(
                row["stage"], expiry, self.height, propose.cltv_timeout, MOVE_MARGIN_BLOCKS
            ):
                self._cancel_move(new, pos, self.height)
                continue
            if loop.time() < self._next_try.get((new, pos), 0.0):
                continue
            client = d.db.execute(
                "SELECT o.position, n.amount_sat, n.pubkey FROM factory_clients n JOIN"
                " factory_clients o ON o.pubkey = n.pubkey WHERE n.factory_id=? AND"
                " n.position=? AND o.factory_id=?",
                (new.hex(), pos, old.hex()),
            ).fetchone()
            shell = d.channels.get(pos)
            peer = None if client is None else d.members.get(bytes.fromhex(client["pubkey"]))
            if client is None or shell is None or shell.state is None or not shell.ready.is_set():
                continue
            if peer is None or peer.conn.closed:
                continue
            point = propose.clients[int(client["position"])].key.to_key()
            if _offered_ptlc(shell, point) is not None:
                continue  # offered and in flight: the client's turn
            self._next_try[(new, pos)] = loop.time() + RETRY_SECONDS
            await self._offer_move(old, new, pos, point, int(row["amount_msat"]), client, shell)

    async def _offer_move(
        self,
        old: bytes,
        new: bytes,
        pos: int,
        point: PublicKey,
        amount_msat: int,
        client: Any,
        shell: ChannelShell,
    ) -> None:
        """Plan, persist, then add the move PTLC (a refusal is recorded: the client stays)."""
        d = self.d
        assert shell.state is not None and self.height is not None
        if d.config.misbehave(LspMisbehaviour.SKIP_MOVE_PTLC):  # dev-misbehave: attack 3
            return  # the client moved into the new factory; its balance never follows
        propose = self._propose(old)
        reason: str | None = None
        source, _ = self._close_source(old)
        if source == "wait":
            self._event(f"move PTLC for client {pos} waits: the old factory's kickoff is unmined")
            return
        if source == "gone":
            reason = (
                "old-factory-gone: the old factory's tree is on chain below its root kickoff;"
                " the client stays and exits it"
            )
        else:
            shape = d.advancer.tree(new).shape
            try:
                plan = plan_move(
                    amount_msat,
                    channel_capacity(int(client["amount_sat"])),
                    CHANNEL_CONFIG,
                    point,
                    height=max(self.height, shell.state.chain_height),
                    old_timeout=propose.cltv_timeout,
                    # never offer what the client would refuse: room to claim it on chain
                    # (dev-misbehave short-ptlc-expiry: an attacker would not check)
                    new_exit_delay=0
                    if d.config.misbehave(LspMisbehaviour.SHORT_PTLC_EXPIRY)
                    else shape.exit_delay(shape.client_leaf[pos]),
                )
            except LadderError as exc:
                reason = str(exc)
        if reason is not None:
            self._set_move(new, pos, "failed", reason=reason)
            self._event(f"no move PTLC for client {pos}: {reason}")
            return
        if d.config.misbehave(LspMisbehaviour.SHORT_PTLC_EXPIRY):  # dev-misbehave: attack 4
            plan = MovePtlc(plan.amount_msat, plan.point, self.height + 20)
        self._set_move(
            new,
            pos,
            "offered",
            old_key=point.hex(),
            htlc_id=shell.state.local_next_htlc_id,
            cltv_expiry=plan.cltv_expiry,
        )
        event = chmsg.AddHtlc(
            plan.amount_msat, ptlc_payment_hash(point), plan.cltv_expiry, point=point
        )
        try:
            notices = await shell.apply(event, d._sender(pos))
        except (ChannelError, WireError) as exc:
            self._event(f"move PTLC for client {pos} not sent now: {exc}")
            return
        self._event(
            f"move PTLC for client {pos}: {plan.amount_msat} msat locked to its old factory"
            f" key, expiry {plan.cltv_expiry}"
        )
        for n in notices:
            await d._on_notice(pos, n)

    def _cancel_move(self, new: bytes, pos: int, height: int) -> None:
        """A move PTLC that reached its expiry unfulfilled (the client kept its old key,
        attack 8): the move is off. From now on the LSP refuses its fulfil
        (`cancelled_move`), and the client is closed out of the old factory as a stayer,
        paid its old balance there (`_close_with_stayers`)."""
        with self.d.db.transaction() as c:
            c.execute(
                "UPDATE ptlc_moves SET stage='cancelled', reason=?, updated=? WHERE"
                " new_factory=? AND position=? AND role='lsp' AND stage IN ('planned', 'offered')",
                (f"move-expired: not fulfilled by height {height}", now(), new.hex(), pos),
            )
        self._event(f"move of client {pos} cancelled: unfulfilled at its expiry ({height})")

    def cancelled_move(self, fid: bytes, pos: int, htlc_id: int) -> bool:
        """Is HTLC `htlc_id` of channel `pos` in `fid` a move PTLC we cancelled?"""
        row = self.d.db.execute(
            "SELECT 1 FROM ptlc_moves WHERE new_factory=? AND position=? AND role='lsp'"
            " AND stage='cancelled' AND htlc_id=?",
            (fid.hex(), pos, htlc_id),
        ).fetchone()
        return row is not None

    def _set_move(self, new: bytes, pos: int, stage: str, **fields: Any) -> None:
        sets = ", ".join(f"{k}=?" for k in fields)
        with self.d.db.transaction() as c:
            c.execute(
                f"UPDATE ptlc_moves SET stage=?, {sets + ', ' if sets else ''}updated=?"
                " WHERE new_factory=? AND position=? AND role='lsp'",
                (stage, *fields.values(), now(), new.hex(), pos),
            )

    def _funding_spent(self, old: bytes) -> bool:
        ref = funding_output_ref(tree_of(self._propose(old), self.d.key.public_key))
        try:
            out = self.d.chain.get_tx_out(ref.outpoint.txid_hex, ref.outpoint.vout)
        except RpcError:
            return False
        return out is None

    def _close_source(self, old: bytes) -> tuple[str, FundingRef | None]:
        """Where a cooperative (or key-holding) close of `old` can spend from now:

        - `funding`: the funding output is unspent;
        - `kickoff` (with its output): the root kickoff (tree tx 0, signed in the
          ceremony, so anyone's exit starts with it) is in a block and its output,
          under the same n-of-n key, is unspent — the next tree tx waits a DW delay, so a
          close from here confirms first;
        - `wait`: the funding is spent by an unmined kickoff;
        - `gone`: the funding or the kickoff output went to another tx (a close, the
          distribution tx, or an exit already below the root).
        """
        d = self.d
        propose = self._propose(old)
        tree = tree_of(propose, d.key.public_key)
        ref = funding_output_ref(tree)
        kickoff = tree.txs[0].tx
        try:
            if d.chain.get_tx_out(ref.outpoint.txid_hex, ref.outpoint.vout) is not None:
                return "funding", None
            try:
                conf = d.chain.get_raw_transaction_verbose(kickoff.txid_hex).confirmations
            except (RpcError, ChainResponseError):
                return "gone", None
            if conf <= 0:
                return "wait", None
            if d.chain.get_tx_out(kickoff.txid_hex, 0) is None:
                return "gone", None
        except (RpcError, ChainUnavailable):
            return "wait", None
        spec = spec_of(propose, d.key.public_key)
        keys = tuple(c.key for c in spec.clients)
        return "kickoff", FundingRef(kickoff.outpoint(0), kickoff.outputs[0].value, spec.lsp, keys)

    # -- closing old factories --------------------------------------------------------------

    def _lsp_script(self) -> bytes:
        from .lsp import script_for_address

        return script_for_address(self.d.chain.get_new_address())

    def _close_if_complete(self, old: bytes) -> None:
        d = self.d
        propose = self._propose(old)
        recovered = self.turnovers.recovered_keys(old)
        if len(recovered) < len(propose.clients):
            return  # cheap check first: building the scripts aggregates every node's keys
        if self._close_source(old)[0] != "funding":
            return  # kicked off: `_close_with_stayers` closes from the kickoff's output
        scripts = FactoryScripts.build(build_shape(spec_of(propose, d.key.public_key)))
        positions = {c.key.to_key().data: p for p, c in enumerate(propose.clients)}
        held = {positions[k]: s for k, s in recovered.items() if k in positions}
        if missing_keys(scripts, held):
            return
        close = lsp_alone_close(
            scripts, d.key, held, self._lsp_script(), Feerate(d.config.close_feerate)
        )
        self._finish(old, close.tx, "closed alone with every client's key")
        self.rotation["close_vsize"] = close.vsize
        self.rotation["close_fee_sat"] = close.fee
        start = getattr(self, "_rotation_start", None)
        if start is not None:
            self.rotation["rotation_s"] = round(asyncio.get_running_loop().time() - start, 3)

    # -- a fair close instead of the distribution tx ------------------------------------------

    def _distribution_underpays(self, fid: bytes) -> bool:
        """Would factory `fid`'s distribution tx pay some client less than its current
        channel balance (payments it received since the opening)?"""
        terms = stored_terms(self.d.db, fid)
        if terms is None:
            return False
        balances = {
            pos: int(b["remote_msat"])
            for pos, shell in self.d.channels.items()
            if (b := shell.balances()).get("open")
        }
        return distribution_underpays([p.amount_sat for p in terms.payouts], balances)

    async def _close_before_distribution(self, fid: bytes) -> None:
        """Nobody moved out of the live factory `fid` (every client stayed or was barred)
        and its distribution locktime is `KICKOFF_LEAD` blocks away: the distribution tx
        would pay each client its *opening* balance, undoing the payments made since
        (attack 9: a client that stalls every rotation after paying another gets its
        payment back). While the clients are here the LSP closes cooperatively at the
        current balances first; the distribution tx stays the default only when it cannot
        (a client gone, a channel busy)."""
        d = self.d
        loop = asyncio.get_running_loop()
        if self.height is None or loop.time() < self._next_try.get((fid, -4), 0.0):
            return
        if d._row(fid)["state"] != "funded" or not d.may_distribute(fid):
            return
        if defense_locktime(d.db, fid, self.height) is None or self._funding_spent(fid):
            return
        if not self._distribution_underpays(fid):
            return
        self._next_try[(fid, -4)] = loop.time() + RETRY_SECONDS
        try:
            txid = await d.close_factory()
        except (RuntimeError, RpcError, ChainUnavailable) as exc:
            self._event(f"no fair close of {fid.hex()[:16]} before its distribution tx: {exc}")
            return
        self._event(
            f"factory {fid.hex()[:16]} closed at current balances before its distribution"
            f" tx (which pays opening balances): {txid}"
        )

    # -- the kickoff defense (see `distribution`) ---------------------------------------------

    def _kicked_off(self, old: bytes) -> bool:
        return kickoff_status(self.d.db, old) is not None

    def _defend(self, old: bytes) -> None:
        """A factory some of whose clients moved (their keys recovered) but that is still
        open near its distribution locktime: its distribution tx would pay the movers
        twice, so broadcast the root kickoff first (decision persisted, then pushed each
        poll until it confirms)."""
        d = self.d
        if self.height is None or d._row(old)["state"] != "funded":
            return
        if not self._kicked_off(old):
            locktime = defense_locktime(d.db, old, self.height)
            if locktime is None or not self.turnovers.recovered_keys(old):
                return
            if self._funding_spent(old):
                return  # closed or paid out some other way
            tx = self._signed_root_kickoff(old)
            with d.db.transaction() as c:
                record_kickoff(c, old, tx, locktime, self.height)
            crash_point("lsp-after-kickoff-decided")
            self._event(
                f"factory {old.hex()[:16]}: movers would be paid twice by its distribution tx"
                f" (locktime {locktime}); kicking off its tree at height {self.height}"
            )
        what = push_kickoff(d.db, d.chain, old)
        if what is not None:
            self._event(what)

    def _signed_root_kickoff(self, old: bytes) -> Transaction:
        """Tree tx 0 with the aggregate signature from the factory's ceremony (checked)."""
        tree = tree_of(self._propose(old), self.d.key.public_key)
        row = self.d.db.execute(
            "SELECT signature FROM tree_signatures WHERE factory_id=? AND session_id=0",
            (old.hex(),),
        ).fetchone()
        kickoff = tree.txs[0]
        sig = None if row is None else bytes.fromhex(row["signature"])
        if sig is None or not schnorr.verify(
            kickoff.spent_output.signing.xonly, kickoff.sighash, sig
        ):
            raise LadderError(f"factory {old.hex()[:16]} has no valid root kickoff signature")
        return kickoff.tx.with_witness(0, (sig,))

    # -- the CLTV timeout sweep ---------------------------------------------------------------

    def _timeout_recovery(self, old: bytes) -> None:
        """After the CLTV the LSP sweeps whatever of the tree is on chain: the funding if
        nothing spent it, else every unspent node output beneath the confirmed txs (the
        kickoff's output after a kickoff defense) — unless its distribution tx pays the
        clients their default (see `distribution`). Channel outputs are not touched."""
        d = self.d
        if d.distribution_pending(old):
            return
        propose = self._propose(old)
        tree = tree_of(propose, d.key.public_key)
        chain = d.chain

        def unspent(op: OutPoint) -> bool:
            out = chain.get_tx_out(op.txid_hex, op.vout)
            return out is not None and out.confirmations > 0

        def confirmed(txid: bytes) -> bool:
            try:
                return chain.get_raw_transaction_verbose(txid[::-1].hex()).confirmations > 0
            except (RpcError, ChainResponseError):
                return False

        try:
            outputs = onchain_node_outputs(tree, unspent, confirmed)
            if not outputs:
                if self._next_try.get((old, -3)) is None:
                    self._next_try[(old, -3)] = 0.0
                    self._event(f"factory {old.hex()[:16]} expired: no node output to sweep yet")
                return
            tx = timeout_recovery_tx(
                outputs,
                propose.cltv_timeout,
                d.key,
                self._lsp_script(),
                Feerate(d.config.close_feerate),
            )
        except (RpcError, ChainResponseError, ChainUnavailable, FactoryError) as exc:
            self._event(f"timeout sweep of factory {old.hex()[:16]} not built: {exc}")
            return
        self._finish(
            old, tx, f"recovered through the CLTV timeout path ({len(outputs)} node output(s))"
        )

    def _finish(self, old: bytes, tx: Transaction, how: str) -> None:
        """Persist the closing tx, then broadcast it (a restart finds it stored)."""
        with self.d.db.transaction() as c:
            c.execute(
                "UPDATE factories SET state='closed', close_tx=?, close_txid=?, updated=?"
                " WHERE factory_id=?",
                (tx.hex(), tx.txid_hex, now(), old.hex()),
            )
        try:
            self.d.chain.send_raw_transaction(tx)
        except RpcError as exc:
            self._event(f"broadcast of {tx.txid_hex[:16]} failed: {exc}")
            return
        self._event(f"factory {old.hex()[:16]} {how}: {tx.txid_hex}")

    def _move_stages(self, old: bytes) -> dict[int, str]:
        """Old position → stage of its move out of `old`, for clients that moved into a
        factory that was signed (moves planned with an aborted ceremony never happened)."""
        return {
            int(r["position"]): r["stage"]
            for r in self.d.db.execute(
                "SELECT o.position, m.stage FROM ptlc_moves m JOIN factory_clients n ON"
                " n.factory_id = m.new_factory AND n.position = m.position JOIN factory_clients o"
                " ON o.pubkey = n.pubkey AND o.factory_id = m.old_factory JOIN factories f"
                " ON f.factory_id = m.new_factory WHERE m.role='lsp' AND m.old_factory=?"
                " AND f.state IN ('signed', 'funded', 'closed')",
                (old.hex(),),
            )
        }

    async def _close_with_stayers(self, old: bytes, current: bytes) -> None:
        """Close `old` with the clients that stayed (connected), once no move out of it is
        still open: each stayer is paid its channel balance; the LSP signs for the movers
        whose keys it holds. A stayer is a client that never moved, or whose move failed or
        was cancelled (its PTLC expired unfulfilled: a mover keeping its key is closed out
        here at its old balance, attack 8, instead of holding every stayer hostage).
        From the funding output, or from the root kickoff's output once a kickoff (ours,
        or a client's exit) confirmed — then also with no stayer left at all."""
        d = self.d
        loop = asyncio.get_running_loop()
        if d._row(old)["state"] != "funded" or loop.time() < self._next_try.get((old, -2), 0):
            return
        propose = self._propose(old)
        positions = {c.key.to_key().data: p for p, c in enumerate(propose.clients)}
        held = {positions[k]: s for k, s in self.turnovers.recovered_keys(old).items()}
        rows = list(
            d.db.execute(
                "SELECT * FROM factory_clients WHERE factory_id=? ORDER BY position", (old.hex(),)
            )
        )
        paid = stayers_to_close([int(r["position"]) for r in rows], held, self._move_stages(old))
        if paid is None:
            return  # a move out of `old` is still open: its PTLC may yet be fulfilled
        stayers = [r for r in rows if int(r["position"]) in paid]
        source, kickoff_ref = self._close_source(old)
        if source not in ("funding", "kickoff"):
            return
        if source == "funding" and not stayers:
            return  # every key: `_close_if_complete` closes alone
        peers: list[Peer] = []
        payouts: dict[int, TxOut] = {}
        for r in stayers:
            pos = int(r["position"])
            peer = d.members.get(bytes.fromhex(r["pubkey"]))
            shell = self._old_channel(old, pos)
            b = shell.balances() if shell is not None else {"open": False}
            if peer is None or peer.conn.closed or not b["open"] or not b["quiescent"]:
                return  # wait until every stayer is here, its channel idle
            peers.append(peer)
            payouts[pos] = TxOut(int(b["remote_msat"]) // 1000, bytes.fromhex(r["payout_script"]))
        self._next_try[(old, -2)] = loop.time() + RETRY_SECONDS
        spec = spec_of(propose, d.key.public_key)
        scripts = FactoryScripts.build(build_shape(spec))
        feerate = d.config.close_feerate
        lsp_script = self._lsp_script()
        spent = kickoff_ref  # the tree was kicked off: close from the kickoff's output
        try:
            close = close_with_stayers(
                scripts, d.key, held, payouts, lsp_script, Feerate(feerate), spent
            )
        except LadderError as exc:
            self._event(f"close with the clients that stayed not built: {exc}")
            return
        spend = close.spend
        msg = ClosePropose(
            factory_id=Hex32(old),
            payouts=tuple(
                Payout(script=Hex(payouts[p].script_pubkey), amount_sat=payouts[p].value)
                for p in sorted(payouts)
            ),
            lsp_script=Hex(lsp_script),
            feerate_sat_per_kvb=feerate,
            moved=tuple(sorted(held)),
            from_kickoff=spent is not None,
        )
        with d.db.transaction() as c:
            record_close_nonce_use(c, old, spend.tx)
        try:
            sig = (
                await musig_round(
                    d.link.named("close"),
                    old,
                    SigningPlan([spend.session]),
                    [Seat(p, int(r["position"]) + 1) for p, r in zip(peers, stayers, strict=True)],
                    close.local_signers,
                    propose=lambda _: msg,
                    nonces=CloseNonce,
                    aggregate=lambda _, agg: CloseAggNonce(
                        factory_id=Hex32(old), bundle=Hex(agg.to_bytes())
                    ),
                    psigs=ClosePsig,
                    record_nonce_use=lambda: None,  # recorded above, with the close tx
                )
            )[spend.session.id]
        except PeerFault as fault:
            self._event(f"close with the clients that stayed failed: {fault}")
            await d._drop(fault.peer, str(fault))
            return
        except (FactoryError, ValueError) as exc:
            self._event(f"close with the clients that stayed failed: {exc}")
            return
        tx = spend.signed(sig)
        how = f"closed with the {len(peers)} client(s) that stayed"
        if spent is not None:
            how += " from its root kickoff's output"
        self._finish(old, tx, how)
        for p in peers:
            with contextlib.suppress(WireError):
                await p.conn.send_message(CloseDone(factory_id=Hex32(old), txid=Hex32(tx.txid)))


# -- the client's side of the ladder ------------------------------------------------------

_PENDING_JOIN = "pending_join"

DEADLINE_MARGIN_BLOCKS = 6
"""Blocks a client keeps before an old factory's deadlines (its CLTV minus our worst-case
exit, its distribution locktime) when it starts that factory's exit on its own."""


class ClientLadder:
    """A client's keys per factory, its moves between factories, and its turnovers.

    Each factory the client joins gets its own key (`factory_key(node key, rung)`),
    recorded with the factory, so handing it over at turnover gives away
    nothing else. The join in flight (rung, moved balance, factory it leaves)
    is persisted before the join request is sent.
    """

    def __init__(self, daemon: ClientDaemon) -> None:
        self.d = daemon
        self._views: dict[bytes, VerifiedView] = {}

    # -- keys and opening balances ------------------------------------------------------------

    def _balance_row(self, fid: bytes) -> Any:
        return self.d.db.execute(
            "SELECT client_msat, rung FROM factory_balances WHERE factory_id=?", (fid.hex(),)
        ).fetchone()

    def key_for(self, fid: bytes) -> SecretKey:
        """Our key in factory `fid` (the node key for factories from before the ladder)."""
        return factory_signing_key(self.d.db, self.d.key, fid)

    def opening_msat(self, fid: bytes) -> int:
        """Our opening balance in `fid`: as recorded with our join, else what its
        distribution tx pays us (the LSP's credit), else (a factory from before the
        distribution tx) our amount."""
        row = self._balance_row(fid)
        if row is not None:
            return int(row["client_msat"])
        paid = self.d.db.execute(
            "SELECT payout_sat FROM distributions WHERE factory_id=?", (fid.hex(),)
        ).fetchone()
        if paid is not None and paid["payout_sat"] is not None:
            return int(paid["payout_sat"]) * 1000
        return opening_balances(self.d.config.amount_sat)[0]

    def _next_rung(self) -> int:
        row = self.d.db.execute(
            "SELECT MAX(b.rung) AS r FROM factory_balances b JOIN factories f"
            " ON f.factory_id = b.factory_id WHERE f.role='client' AND f.state IN"
            " ('ready', 'funded', 'closed')"
        ).fetchone()
        return 0 if row is None or row["r"] is None else int(row["r"]) + 1

    def _pending(self) -> dict[str, Any] | None:
        row = self.d.db.execute(
            "SELECT value FROM node_kv WHERE key=?", (_PENDING_JOIN,)
        ).fetchone()
        return None if row is None else dict(json.loads(row["value"]))

    def _set_pending(
        self, rung: int, balance_msat: int | None, rotating_from: bytes | None
    ) -> None:
        value = {
            "rung": rung,
            "balance_msat": balance_msat,
            "rotating_from": rotating_from.hex() if rotating_from else None,
        }
        with self.d.db.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO node_kv VALUES (?, ?)", (_PENDING_JOIN, json.dumps(value))
            )

    # -- joining ------------------------------------------------------------------------------

    def join_request(self, reconnect: bytes | None, payout: bytes) -> JoinRequest:
        """What to send after connecting: a reconnect, or a first join with a fresh key."""
        cfg = self.d.config
        if reconnect is not None:
            return JoinRequest(
                amount_sat=cfg.amount_sat, payout_script=Hex(payout), factory_id=Hex32(reconnect)
            )
        rung = self._next_rung()
        self._set_pending(rung, None, None)
        return JoinRequest(
            amount_sat=cfg.amount_sat,
            payout_script=Hex(payout),
            factory_key=PublicKeyHex.of(factory_key(self.d.key, rung).public_key),
            # dev-misbehave: claim an opening balance of our whole channel, never paid for
            balance_msat=(
                2 * cfg.amount_sat * 1000
                if cfg.misbehave(ClientMisbehaviour.FREE_BALANCE)
                else None
            ),
        )

    def proposal_allowed(self, current: Any) -> bool:
        """A proposal while in a factory is fine only when we asked to move out of it."""
        if current is None:
            return True
        pending = self._pending()
        return (
            pending is not None
            and pending["rotating_from"] == current["factory_id"]
            and current["state"] == "funded"
        )

    def rotating(self) -> bool:
        """The join in flight moves us out of a factory (a rotation, not a first join)."""
        pending = self._pending()
        return pending is not None and pending["rotating_from"] is not None

    def proposed_key(self) -> SecretKey:
        pending = self._pending()
        return self.d.key if pending is None else factory_key(self.d.key, int(pending["rung"]))

    def record_join(self, c: sqlite3.Connection, fid: bytes, pos: int, opening_msat: int) -> None:
        """In the proposal's transaction: which key and opening balance this factory uses
        (`opening_msat`: what the LSP credits a newcomer; a mover's is its moved balance)."""
        pending = self._pending()
        if pending is None:
            return
        balance = pending["balance_msat"]
        if balance is None:
            balance = opening_msat
        elif pending["rotating_from"] is not None:  # a move: the balance comes as a PTLC
            old = bytes.fromhex(pending["rotating_from"])
            c.execute(
                "INSERT OR REPLACE INTO ptlc_moves VALUES"
                " (?, ?, 'client', ?, ?, ?, 'awaiting', NULL, NULL, '', ?)",
                (fid.hex(), pos, old.hex(), self.key_for(old).public_key.hex(), balance, now()),
            )
            balance = 0
        c.execute(
            "INSERT OR REPLACE INTO factory_balances VALUES (?, ?, ?, ?)",
            (fid.hex(), pos, int(balance), int(pending["rung"])),
        )

    async def on_invite(self, conn: PeerConnection, msg: RotationInvite) -> None:
        """Our factory is dying: ask to move into the next one with our exact balance."""
        old = bytes(msg.old_factory)
        row = self.d._current()
        shell = self.d.channel
        reason = None
        if row is None or row["factory_id"] != old.hex() or row["state"] != "funded":
            reason = "we are not in that factory"
        elif self.d.config.refuse_turnover:
            reason = "client declines to move (refuses key turnover)"
        elif shell is None or not shell.ready.is_set() or shell.factory_id != old:
            reason = "our channel there is not open"
        else:
            b = shell.balances()
            if not b["quiescent"] or b["htlcs"]:
                reason = "updates pending on our channel"
        if reason is not None:
            log.info("declining rotation out of %s: %s", old.hex()[:16], reason)
            await conn.send_message(
                TurnoverRefuse(old_factory=Hex32(old), new_factory=Hex32(old), reason=reason)
            )
            return
        assert shell is not None
        balance = int(shell.balances()["local_msat"])
        rung = self._next_rung()
        self._set_pending(rung, balance, old)
        payout = bytes.fromhex(self.d._kv("payout_script") or "")
        await conn.send_message(
            JoinRequest(
                amount_sat=self.d.config.amount_sat,
                payout_script=Hex(payout),
                factory_key=PublicKeyHex.of(factory_key(self.d.key, rung).public_key),
                balance_msat=balance,
                rotating_from=Hex32(old),
            )
        )

    async def on_move_ptlc(
        self, shell: ChannelShell, htlc: Htlc, send: Callable[[Any], Awaitable[None]]
    ) -> list[chmsg.Effect]:
        """The LSP offered a PTLC in our channel: if it is our move (exact old balance, locked
        to our old factory key, expiring in time), reveal the key by fulfilling it — after
        recording the handover; otherwise fail it. Returns the channel's further notices."""
        d = self.d
        if d.config.misbehave(ClientMisbehaviour.WITHHOLD_KEY):
            return []  # dev-misbehave: keep the PTLC and our old key, neither fulfil nor fail
        row = d.db.execute(
            "SELECT * FROM ptlc_moves WHERE new_factory=? AND position=? AND role='client'",
            (shell.factory_id.hex(), shell.position),
        ).fetchone()
        try:
            scalar, ctx = self._check_move(row, htlc, shell)
        except LadderError as exc:
            log.info("failing PTLC %d: %s", htlc.id, exc)
            if row is not None:
                self._set_client_move(shell, "failed", f"{exc.code}: {exc}")
            return await shell.apply(chmsg.FailHtlc(htlc.id, str(exc)[:200].encode()), send)
        fulfil = chmsg.FulfillHtlc(htlc.id, scalar)
        assert shell.state is not None
        try:
            channel_step(shell.secrets, shell.state, fulfil)  # dry run: pure, nothing kept
        except ChannelError as exc:
            log.info("move PTLC %d cannot be fulfilled yet: %s", htlc.id, exc)
            return []
        with d.db.transaction() as c:  # persisted before the key leaves us
            save_client_handover(c, ctx)
            c.execute(
                "UPDATE ptlc_moves SET stage='fulfilled', htlc_id=?, cltv_expiry=?, updated=?"
                " WHERE new_factory=? AND position=? AND role='client'",
                (htlc.id, htlc.cltv_expiry, now(), shell.factory_id.hex(), shell.position),
            )
        crash_point("client-before-move-fulfil")
        if d.config.misbehave(ClientMisbehaviour.EXIT_THEN_FULFIL):
            await d.dev_exit_old(ctx.old_factory)  # dev-misbehave: exit first, then take it
        log.info("move PTLC %d: fulfilling with our old factory key", htlc.id)
        return await shell.apply(fulfil, send)

    def _check_move(
        self, row: Any, htlc: Htlc, shell: ChannelShell
    ) -> tuple[bytes, TurnoverContext]:
        d = self.d
        if row is None:
            raise LadderError("no move into this factory: unexpected PTLC")
        old = bytes.fromhex(row["old_factory"])
        key = self.key_for(old)
        ctx = TurnoverContext(old, shell.factory_id, key.public_key, d.config.lsp_pubkey)
        if row["stage"] == "fulfilled":  # handed over already (a restart): finish the job
            if htlc.point != key.public_key or htlc.amount_msat != move_amount(
                int(row["amount_msat"])
            ):
                raise LadderError("a second, different move PTLC")
            return key.to_bytes(), ctx
        if d.config.refuse_turnover:
            raise LadderError("client declines to move (refuses key turnover)")
        old_row = d.db.execute(
            "SELECT position, propose, state FROM factories WHERE factory_id=? AND role='client'",
            (old.hex(),),
        ).fetchone()
        if old_row is None or old_row["state"] != "funded":
            raise LadderError("our old factory is not open")
        old_shell = load_channel(d.db, self.key_for(old), old, int(old_row["position"]))
        ob = old_shell.balances() if old_shell is not None else {"open": False}
        if not ob["open"] or int(ob["local_msat"]) != int(row["amount_msat"]):
            raise LadderError("our old channel no longer holds the balance being moved")
        propose = decode(old_row["propose"])
        assert isinstance(propose, FactoryPropose)
        assert shell.state is not None
        new_row = self._factory_row(shell.factory_id)
        if new_row is None:
            raise LadderError("the new factory is unknown", code="unknown-factory")
        scalar = check_move_ptlc(
            htlc,
            expected_msat=int(row["amount_msat"]),
            key=key,
            # our own view of the height: the chain's tip, never below the channel's
            height=max(shell.state.chain_height, d.chain.get_block_count()),
            min_cltv_delta=CHANNEL_CONFIG.min_cltv_delta,
            old_timeout=int(propose.cltv_timeout),
            new_exit_delay=self.verified(new_row).worst_case_exit_delay,
        )
        return scalar, ctx

    # -- safety nets: which factories still hold our money, and their deadlines ----------------

    def _factory_row(self, fid: bytes) -> Any:
        return self.d.db.execute(
            "SELECT * FROM factories WHERE factory_id=? AND role='client'", (fid.hex(),)
        ).fetchone()

    def verified(self, row: Any) -> VerifiedView:
        """Our checked view of factory `row` (cached per factory: the daemon's own cache
        holds only the current one, and checking costs O(N) key aggregation)."""
        fid = bytes.fromhex(row["factory_id"])
        cached = self._views.get(fid)
        if cached is None:
            current = self.d._verified
            if current is not None and current[0] == fid:
                cached = current[1]
            else:
                msg = decode(row["propose"])
                assert isinstance(msg, FactoryPropose)
                expect = self.d._expectation(params_of(msg), self.key_for(fid).public_key)
                cached = verify_view(view_of(msg, self.d.config.lsp_pubkey), expect)
            self._views[fid] = cached
        return cached

    def handed_over(self, fid: bytes) -> bool:
        """Evidence that factory `fid` is no longer ours: we gave our key in it away (the
        handover is recorded, in the fulfil's own transaction, before the key leaves)."""
        row = self.d.db.execute(
            "SELECT 1 FROM turnovers WHERE old_factory=? AND role='client' AND stage=?",
            (fid.hex(), ClientStage.HANDED_OVER.value),
        ).fetchone()
        return row is not None

    def holding(self) -> list[Any]:
        """Funded factories that still hold our money: no handover, our channel there open
        with something on our side (oldest first)."""
        out = []
        for row in self.d.db.execute(
            "SELECT * FROM factories WHERE role='client' AND state IN ('funded', 'closing')"
            " ORDER BY created, rowid"
        ).fetchall():
            fid = bytes.fromhex(row["factory_id"])
            if self.handed_over(fid):
                continue
            b = self.channel_balances(row)
            if b.get("open") and int(b["local_msat"]) > 0:
                out.append(row)
        return out

    def channel_balances(self, row: Any) -> dict[str, Any]:
        """Our channel in factory `row`, loaded by factory id (not the daemon's current one)."""
        fid = bytes.fromhex(row["factory_id"])
        shell = self.d.channel
        if shell is None or shell.factory_id != fid:
            shell = load_channel(self.d.db, self.key_for(fid), fid, int(row["position"]))
        return shell.balances() if shell is not None and shell.state is not None else {}

    def _is_old(self, row: Any) -> bool:
        newer = self.d.db.execute(
            "SELECT 1 FROM factories WHERE role='client' AND state IN ('ready', 'funded',"
            " 'closed') AND rowid > (SELECT rowid FROM factories WHERE factory_id=?)",
            (row["factory_id"],),
        ).fetchone()
        return newer is not None

    def exit_deadline(self, row: Any) -> int:
        """The height at which we start the exit of factory `row` at the latest: our whole
        exit path (its worst case) plus a margin before its CLTV timeout, and a margin
        before its distribution locktime, so our root kickoff confirms before the
        distribution tx is valid (client constants, nothing from the LSP)."""
        msg = decode(row["propose"])
        assert isinstance(msg, FactoryPropose)
        worst = self.verified(row).worst_case_exit_delay
        deadline = int(msg.cltv_timeout) - worst - DEADLINE_MARGIN_BLOCKS
        dist = self.d.db.execute(
            "SELECT locktime FROM distributions WHERE factory_id=?", (row["factory_id"],)
        ).fetchone()
        if dist is not None:
            deadline = min(deadline, int(dist["locktime"]) - DEADLINE_MARGIN_BLOCKS)
        return deadline

    def deadline_exit_reason(self, row: Any, height: int) -> str | None:
        """Why we must start the unilateral exit of factory `row` now (None: not needed).

        A factory we moved out of but never handed our key over in (the LSP never offered
        the move PTLC, or we refused it) still holds our balance, and no one else will
        close it for us: at its CLTV the LSP's timeout path takes it. Its distribution tx
        pays us our *opening* balance; if that is not our channel balance, go on chain
        ourselves before the deadline."""
        fid = bytes.fromhex(row["factory_id"])
        if not self._is_old(row) or self.handed_over(fid) or exit_requested(self.d.db, fid):
            return None
        if height < self.exit_deadline(row):
            return None
        b = self.channel_balances(row)
        if not b.get("open"):
            return None
        local = int(b["local_msat"])
        dist = self.d.db.execute(
            "SELECT payout_sat, state FROM distributions WHERE factory_id=?", (fid.hex(),)
        ).fetchone()
        script = bytes.fromhex(self.d._kv("payout_script") or "")
        if (
            dist is not None
            and dist["state"] != "unsigned"
            and dist["payout_sat"] is not None
            and client_payout_sat(local, script) == int(dist["payout_sat"])
        ):
            return None  # its distribution tx pays us exactly our balance
        return (
            f"factory {fid.hex()[:16]} still holds our {local} msat (no key handed over) and"
            f" its deadline {self.exit_deadline(row)} is here (height {height})"
        )

    def _shell(self, row: Any) -> ChannelShell | None:
        """Our channel in factory `row`: the daemon's live one, else loaded by its id."""
        fid = bytes.fromhex(row["factory_id"])
        shell = self.d.channel
        if shell is None or shell.factory_id != fid:
            shell = load_channel(self.d.db, self.key_for(fid), fid, int(row["position"]))
        return shell

    def secrets(self, fid: bytes, position: int) -> dict[bytes, bytes]:
        """Payment hash → secret of what we received and revealed (or will reveal) in
        factory `fid`: the preimages of our invoices paid, and a move PTLC we fulfilled
        (its scalar: our key in the factory we left). Read from our own database."""
        out = {
            bytes.fromhex(r["payment_hash"]): bytes.fromhex(r["preimage"])
            for r in self.d.db.execute(
                "SELECT payment_hash, preimage FROM invoices WHERE state='paid'"
            )
        }
        for r in self.d.db.execute(
            "SELECT old_factory FROM ptlc_moves WHERE new_factory=? AND position=?"
            " AND role='client' AND stage='fulfilled'",
            (fid.hex(), position),
        ):
            key = self.key_for(bytes.fromhex(r["old_factory"]))
            out[ptlc_payment_hash(key.public_key)] = key.to_bytes()
        return out

    def claims(self, row: Any, shell: ChannelShell | None = None) -> list[Claim]:
        """Received HTLCs/PTLCs still in our latest commitment in factory `row` whose secret
        we hold (`ladder.enforce.revealed_claims`): our exit claims them on chain."""
        shell = shell if shell is not None else self._shell(row)
        if shell is None or shell.state is None or shell.state.local_commit is None:
            return []
        fid = bytes.fromhex(row["factory_id"])
        return revealed_claims(
            shell.state.local_commit.spec, self.secrets(fid, int(row["position"]))
        )

    def claim_budget(self, row: Any) -> tuple[int, int]:
        """(worst-case exit delay, confirmation margin) of our path in factory `row`, from
        our own verified view of it."""
        v = self.verified(row)
        return v.worst_case_exit_delay, confirmation_margin(len(v.view.steps))

    def claim_exit_reason(self, row: Any, height: int) -> str | None:
        """Why we must exit factory `row` now to claim an HTLC/PTLC whose secret we revealed
        (None: not needed). The LSP learnt the secret from our fulfil; if it never sends
        the update that removes the HTLC from our commitment, it can take the secret and
        time the HTLC out on chain at its expiry. So once `ladder.enforce.claims_due` says
        our exit would not fit before the expiry any later, we go on chain alone."""
        fid = bytes.fromhex(row["factory_id"])
        if exit_requested(self.d.db, fid) or self.handed_over(fid):
            return None
        held = self.claims(row)
        if not held:
            return None
        delay, margin = self.claim_budget(row)
        due = claims_due(height, held, delay, margin)
        if not due:
            return None
        first = min(due, key=lambda c: c.cltv_expiry)
        return (
            f"HTLC {first.htlc_id} ({first.amount_msat} msat) of factory {fid.hex()[:16]}"
            f" whose secret we revealed is still in our commitment: it expires at"
            f" {first.cltv_expiry}, our claim must start by"
            f" {enforce_height(first.cltv_expiry, delay, margin)} (height {height})"
        )

    async def check_deadlines(self) -> None:
        """Start the exit of every old factory whose deadline came, and of any factory
        holding an HTLC/PTLC we revealed the secret of whose claim is due (see above)."""
        d = self.d
        height = d.chain.get_block_count()
        rows = d.db.execute(
            "SELECT * FROM factories WHERE role='client' AND state IN ('funded', 'closing')"
            " ORDER BY created, rowid"
        ).fetchall()
        for row in rows:
            reason = self.deadline_exit_reason(row, height) or self.claim_exit_reason(row, height)
            if reason is None:
                continue
            log.warning("exiting on our own: %s", reason)
            await d.request_exit(bytes.fromhex(row["factory_id"]))

    async def run(self, interval: float = 1.0) -> None:
        """`check_deadlines` each `interval` seconds on the daemon's loop."""
        while True:
            try:
                await self.check_deadlines()
            except asyncio.CancelledError:
                raise
            except ChainUnavailable as exc:
                log.warning("deadline check: chain unavailable: %s", exc)
            except Exception:
                log.exception("deadline check failed")
            await asyncio.sleep(interval)

    def moves_status(self, db: Database) -> list[dict[str, Any]]:
        """Our moves for `status`: stage and the refusal (`code: message`) if any."""
        return [
            {
                "new_factory": r["new_factory"],
                "old_factory": r["old_factory"],
                "amount_msat": int(r["amount_msat"]),
                "stage": r["stage"],
                "cltv_expiry": r["cltv_expiry"],
                "reason": r["reason"],
            }
            for r in db.execute("SELECT * FROM ptlc_moves WHERE role='client' ORDER BY updated")
        ]

    def _set_client_move(self, shell: ChannelShell, stage: str, reason: str) -> None:
        with self.d.db.transaction() as c:
            c.execute(
                "UPDATE ptlc_moves SET stage=?, reason=?, updated=? WHERE new_factory=?"
                " AND position=? AND role='client'",
                (stage, reason[:500], now(), shell.factory_id.hex(), shell.position),
            )


def _offered_ptlc(shell: ChannelShell, point: PublicKey) -> Htlc | None:
    """Our PTLC locked to `point` anywhere in the channel (proposed, signed or committed)."""
    state = shell.state
    if state is None:
        return None
    specs = [state.remote_commit.spec]
    if state.local_commit is not None:
        specs.append(state.local_commit.spec.mirror())
    if state.remote_next_commit is not None:
        specs.append(state.remote_next_commit.spec)
    for spec in specs:
        for h in spec.received():  # the peer's side: what we offered
            if h.point == point:
                return h
    for u in state.local_changes.all():
        if isinstance(u, UpdateAddHtlc) and u.htlc.point == point:
            return u.htlc
    return None
