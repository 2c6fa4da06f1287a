"""The client daemon: joins the LSP's factory, checks its tree, signs its path, closes.

State of the current factory (`factories.state`, role 'client'):

    proposed → nonces_sent → psigs_sent → ready → funded → closed   (or aborted)
                                                     ↕        ↑
                                                  closing ────┘  (a close we signed, see `closing`)

Rules this shell keeps (the checks themselves are `factory.verify_view` and
`factory.cooperative_close`):

- Nothing is signed before `verify_view` accepted the tree rebuilt from PROPOSE.
- The row saying "nonces generated for this attempt" is committed before the
  nonces are sent, and the move to `psigs_sent` before the partial signatures
  are sent. Secret nonces live only in memory, so after a crash an attempt in
  `proposed`/`nonces_sent` is aborted, never resumed.
- A message that does not fit the current state gets a wire `Error` and the
  connection is dropped; the state is untouched. The daemon then reconnects.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from superscalar.bitcoin.fees import Feerate
from superscalar.bitcoin.tx import Transaction, TxOut
from superscalar.chain.bitcoind import BitcoindClient, ChainResponseError, ChainUnavailable
from superscalar.chain.rpc import RpcError, RpcServer
from superscalar.channel import (
    AddHtlc,
    ChannelError,
    ChannelOpen,
    ChannelReestablish,
    ChannelSecrets,
    DataLossDetected,
    Effect,
    FailHtlc,
    FulfillHtlc,
    Funding,
    IncomingHtlcCommitted,
    OutgoingHtlcFailed,
    OutgoingHtlcFulfilled,
    UpdateFulfillHtlc,
    accept_open,
    open_message,
    resend_funding_signed,
)
from superscalar.crypto import schnorr
from superscalar.crypto.keys import PublicKey, SecretKey
from superscalar.factory import (
    AggNonceBundle,
    ClientExpectation,
    FundingRef,
    FundingSpend,
    SignatureBundle,
    Signer,
    VerifiedView,
    funding_close,
    verify_view,
)
from superscalar.factory.errors import FactoryError
from superscalar.factory.safety import (
    ClientSafety,
    TermsRefused,
    check_exit_window,
    check_params,
    safety_for,
)
from superscalar.factory.shape import FactoryParams
from superscalar.ladder.enforce import confirmation_margin, htlc_expiry_limit, must_enforce
from superscalar.store.db import Database
from superscalar.wire.codec import Error, ErrorCode, Hex, Init, Message, decode, encode
from superscalar.wire.connection import PeerConnection, exchange_init, open_connection
from superscalar.wire.errors import HandshakeError, ProtocolViolationError, WireError
from superscalar.wire.messages import (
    ChannelMsg,
    CloseAggNonce,
    CloseDone,
    CloseNonce,
    ClosePropose,
    ClosePsig,
    FactoryAbort,
    FactoryAggNonces,
    FactoryFunded,
    FactoryNonces,
    FactoryPropose,
    FactoryPsigs,
    FactoryReady,
    FactoryReadyAck,
    LeafAdvanceAggNonce,
    LeafAdvanceDone,
    LeafAdvancePropose,
    LeafAdvanceRefuse,
    RotationInvite,
)

from .advance import AdvanceRefused, ClientAdvance
from .chancodec import decode_message
from .channels import (
    CHANNEL_CONFIG,
    ChannelFrozen,
    ChannelShell,
    channel_capacity,
    channel_secrets,
    load_channel,
    view_funding,
)
from .closing import (
    CLOSE_EXIT_BLOCKS,
    CLOSE_EXIT_BLOCKS_REGTEST,
    CloseVerdict,
    Closing,
    SignedClose,
    clear_closing,
    close_verdict,
    closing_status,
    load_closing,
    observe,
    save_closing,
)
from .common import (
    client_step_timeout,
    crash_point,
    now,
    open_db,
    params_of,
    record_close_nonce_use,
    view_of,
)
from .control import write_control_port
from .distribution import (
    client_terms_refusal,
    distribute_loop,
    record_signed,
    record_terms,
    stored_terms,
    view_distribution,
)
from .exit import ExitRefused, exit_loop, exit_requested, exit_status, exit_tick, plan_exit
from .ladder import ClientLadder
from .lsp import script_for_address, status_snapshot
from .misbehave import ClientMisbehaviour, Misbehaviour
from .watcher import DaemonWatch

__all__ = ["ClientConfig", "ClientDaemon", "Refused"]

log = logging.getLogger(__name__)

LIVE = ("psigs_sent", "ready", "funded", "closing", "closed")

FINAL_EXPIRY_SLACK = 6
"""Blocks of reaction time a payee wants before an incoming HTLC's claim would be due."""

PAY_CLTV_DELTA = 300
"""Blocks ahead a payment's HTLC expires by default (capped by the factory's life)."""


class Refused(Exception):
    """The message does not fit our state or fails our checks: Error + disconnect.

    `code` (when set) is a short machine-readable reason, also the message's prefix."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message if code is None else f"{code}: {message}")
        self.code = code


@dataclass(frozen=True)
class ClientConfig:
    """Everything `superscalar client` takes on its command line."""

    datadir: Path
    lsp_host: str
    lsp_port: int
    lsp_pubkey: PublicKey
    amount_sat: int
    step_timeout: float | None = None
    """Seconds to wait for the LSP's next ceremony message once we are in one (None:
    `client_step_timeout(N)`, which outlasts the LSP's own default step timeout)."""
    watch: bool = True
    dev_tools: bool = False
    watchtowers: tuple[str, ...] = ()
    refuse_turnover: bool = False
    """Decline every rotation invite (stay on a dying factory; for tests and cautious users)."""
    misbehave: Misbehaviour[ClientMisbehaviour] = field(default_factory=Misbehaviour)
    """Dev-only attacks on the LSP (`--dev-misbehave`, regtest + --dev-tools)."""
    close_exit_blocks: int | None = None
    """Blocks a close we signed may stay unconfirmed before we exit alone (None:
    `CLOSE_EXIT_BLOCKS`, or `CLOSE_EXIT_BLOCKS_REGTEST` on regtest)."""
    safety: tuple[tuple[str, int], ...] = ()
    """Our bounds on proposed factory terms (`factory.safety.ClientSafety` field, value),
    over the chain's network defaults (`--min-factory-life`, `--confirm-margin`, ...)."""
    advance_done_blocks: int = 144
    """Blocks we wait for a signed leaf advance's DONE (channel frozen) before exiting."""


class ClientDaemon:
    """See the module docstring. `run()` connects (and reconnects) until cancelled."""

    def __init__(self, config: ClientConfig, key: SecretKey, chain: BitcoindClient) -> None:
        self.config = config
        self.key = key
        self.chain = chain
        self.db: Database = open_db(config.datadir)
        self._signer: Signer | None = None
        self._close_signer: Signer | None = None
        self.control: RpcServer | None = None
        self.connected = False
        self.last_error: str | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.conn: PeerConnection | None = None
        self.channel: ChannelShell | None = None
        self._our_open: tuple[ChannelOpen, Any] | None = None
        self._waiting: dict[bytes, asyncio.Future[bytes]] = {}
        self._lsp_reestablish: ChannelMsg | None = None
        """The LSP's channel_reestablish, held while we finish an open a crash interrupted."""
        self._ceremony_wait: float | None = None
        """Set while we wait for AGG_NONCES/READY of an attempt; None: wait indefinitely."""
        self._verified: tuple[bytes, VerifiedView] | None = None
        self._holding = False
        """dev-misbehave hold-htlc: we dropped the LSP's fulfil and ignore its channel."""
        """The current factory's checked view (checking it costs O(N) key aggregation)."""
        self.ladder = ClientLadder(self)
        """Per-factory keys, moves into the next factory, key turnover."""
        self.advance = ClientAdvance(self)
        """Leaf advances: buying inbound liquidity, re-anchoring our channel."""
        self.watch: DaemonWatch | None = None
        self._exit_after: int | None = None
        self._safety_policy: ClientSafety | None = None

    # -- state ---------------------------------------------------------------------------

    def _kv(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM node_kv WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row["value"])

    def _current(self) -> Any:
        return self.db.execute(
            "SELECT * FROM factories WHERE role='client' AND state != 'aborted'"
            " ORDER BY created DESC, rowid DESC LIMIT 1"
        ).fetchone()

    def _set_state(self, fid: bytes, state: str, **cols: str) -> None:
        sets = "".join(f", {k}=?" for k in cols)
        with self.db.transaction() as c:
            c.execute(
                f"UPDATE factories SET state=?, updated=?{sets} WHERE factory_id=?",
                (state, now(), *cols.values(), fid.hex()),
            )

    def _abort_dead_attempts(self) -> None:
        """Attempts before `psigs_sent` die with the connection (or the process): the LSP
        aborts them when we vanish, and our secret nonces are gone or must not be reused."""
        self._signer = None
        with self.db.transaction() as c:
            c.execute(
                "UPDATE factories SET state='aborted', updated=? WHERE role='client' AND state IN"
                " ('proposed', 'nonces_sent')",
                (now(),),
            )

    def _recover(self) -> None:
        self._abort_dead_attempts()
        self._drop_unsigned_close()
        self.advance.recover()
        with self.db.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO node_kv VALUES ('lsp_pubkey', ?)",
                (self.config.lsp_pubkey.hex(),),
            )
        if self._kv("payout_script") is None:
            script = script_for_address(self.chain.get_new_address())
            with self.db.transaction() as c:
                c.execute("INSERT INTO node_kv VALUES ('payout_script', ?)", (script.hex(),))

    # -- main loop -----------------------------------------------------------------------

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._recover()
        watch = DaemonWatch(self.db, self.key, self.chain, name="client",
                            datadir=self.config.datadir, enabled=self.config.watch,
                            dev_tools=self.config.dev_tools,
                            towers=self.config.watchtowers)  # fmt: skip
        self.watch = watch
        row = self._current()
        if row is not None and row["state"] in ("funded", "closing"):
            self.advance.add_watch_entries(bytes.fromhex(row["factory_id"]))
        handlers = {**self._rpc_handlers(), **watch.handlers()}
        self.control = RpcServer(handlers, port=0, cookie_dir=self.config.datadir)
        self.control.start()
        write_control_port(self.config.datadir, self.control.port)
        watch.start()
        distribute = asyncio.create_task(
            distribute_loop(self.db, self.chain, "client", self._may_distribute, self._distributed)
        )
        exits = asyncio.create_task(exit_loop(self.db, self.chain))
        deadlines = asyncio.create_task(self.ladder.run())
        closes = asyncio.create_task(self._closing_loop())
        advances = asyncio.create_task(self.advance.loop())
        try:
            while True:
                if self._exiting():
                    await asyncio.sleep(1.0)  # no channel updates once we are leaving
                    continue
                try:
                    await self._session()
                except HandshakeError as exc:
                    self.last_error = f"handshake with the LSP failed (wrong --lsp-pubkey?): {exc}"
                    log.error("%s", self.last_error)
                except (WireError, Refused) as exc:
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.warning("disconnected: %s", self.last_error)
                self.connected = False
                await asyncio.sleep(1.0)
        finally:
            distribute.cancel()
            exits.cancel()
            deadlines.cancel()
            closes.cancel()
            advances.cancel()
            await watch.stop()
            self.control.stop()
            self.db.close()

    def _exiting(self) -> bool:
        """An exit from our current (newest) factory was requested: the LSP is not talked
        to. Exits of older factories leave the session to the current one alone."""
        row = self._current()
        return row is not None and exit_requested(self.db, bytes.fromhex(row["factory_id"]))

    async def request_exit(self, factory: bytes | None = None) -> list[dict[str, Any]]:
        """Start our unilateral exit (see `exit`) of `factory`, or of every factory still
        holding our money (`ClientLadder.holding`: funded, no key handed over, something on
        our side); each is planned and stored, then carried out by the exit loop. Exiting
        the current factory drops the LSP; an older one's channel is loaded by its id."""
        if factory is None:
            rows = [
                r
                for r in self.ladder.holding()
                if not exit_requested(self.db, bytes.fromhex(r["factory_id"]))
            ]
            running = [
                r
                for r in self.db.execute(
                    "SELECT f.* FROM factories f JOIN exits e ON e.factory_id = f.factory_id"
                    " WHERE f.role='client' AND e.state='running'"
                )
            ]
            rows += running
            if not rows:
                row = self._current()
                have = "no factory" if row is None else f"factory is {row['state']}"
                raise ExitRefused(f"no funded factory to exit from ({have})")
        else:
            row = self.db.execute(
                "SELECT * FROM factories WHERE role='client' AND factory_id=?", (factory.hex(),)
            ).fetchone()
            if row is None or row["state"] not in ("funded", "closing"):
                have = "unknown" if row is None else f"factory is {row['state']}"
                raise ExitRefused(f"no funded factory to exit from ({have})")
            if self.ladder.handed_over(factory):
                raise ExitRefused("we handed our key in that factory over: nothing of ours left")
            rows = [row]
        fids = []
        for row in rows:
            fid = bytes.fromhex(row["factory_id"])
            fids.append(fid.hex())
            if not exit_requested(self.db, fid):
                await self._plan_exit(row)
        return [e for e in exit_status(self.db) if e["factory_id"] in fids]

    async def _plan_exit(self, row: Any) -> None:
        fid, pos = bytes.fromhex(row["factory_id"]), int(row["position"])
        current = self._current()
        is_current = current is not None and current["factory_id"] == row["factory_id"]
        shell = self.channel
        if shell is None or shell.factory_id != fid:
            shell = load_channel(self.db, self.ladder.key_for(fid), fid, pos, _record_payments)
        if shell is None:
            raise ExitRefused("our channel is not open: nothing to exit with")
        payout = bytes.fromhex(self._kv("payout_script") or "")
        async with shell.lock:
            plan_exit(
                self.db,
                fid,
                pos,
                self.ladder.verified(row),
                shell,
                payout,
                self.chain.get_block_count(),
                signed_advance=self.advance.pending_exit(fid, pos),
                claims=self.ladder.claims(row, shell),
            )
        log.warning("unilateral exit from factory %s requested", fid.hex()[:16])
        if is_current:
            self.channel = shell
            if self.conn is not None:
                await self.conn.close()

    async def dev_exit_old(self, fid: bytes) -> None:
        """dev-misbehave `exit-then-fulfil`: plan a unilateral exit of factory `fid` (one we
        are moving out of) and push its first step (the root kickoff) now; the exit loop
        drives the rest. Honest clients never call this."""
        row = self.db.execute(
            "SELECT * FROM factories WHERE factory_id=? AND role='client'", (fid.hex(),)
        ).fetchone()
        if row is None or exit_requested(self.db, fid):
            return
        pos = int(row["position"])
        shell = load_channel(self.db, self.ladder.key_for(fid), fid, pos, _record_payments)
        if shell is None:
            return
        payout = bytes.fromhex(self._kv("payout_script") or "")
        async with shell.lock:
            plan_exit(
                self.db, fid, pos, self._verified_of(row), shell, payout,
                self.chain.get_block_count(),
            )  # fmt: skip
        exit_tick(self.db, self.chain)
        log.warning("dev-misbehave: exit of factory %s started before the move", fid.hex()[:16])

    def _may_distribute(self, fid: bytes) -> bool:
        """Broadcast factory `fid`'s distribution tx unless we handed our key in it over (the
        evidence: the handover recorded when we fulfilled the move PTLC). Merely joining a
        newer factory disarms nothing: a move whose PTLC never came left our balance here."""
        return not self.ladder.handed_over(fid)

    def _distributed(self, fid: bytes, tx: Transaction) -> None:
        with self.db.transaction() as c:
            c.execute(
                "UPDATE factories SET state='closed', close_txid=?, updated=? WHERE factory_id=?",
                (tx.txid_hex, now(), fid.hex()),
            )
            clear_closing(c, fid)

    # -- a close we signed (see `closing`) ---------------------------------------------------

    def _close_exit_blocks(self) -> int:
        if self.config.close_exit_blocks is not None:
            return self.config.close_exit_blocks
        if self._exit_after is None:
            regtest = self.chain.get_blockchain_info().get("chain") == "regtest"
            self._exit_after = CLOSE_EXIT_BLOCKS_REGTEST if regtest else CLOSE_EXIT_BLOCKS
        return self._exit_after

    def _freeze(self, fid: bytes, shell: ChannelShell | None) -> None:
        """Our channel in `fid` takes no update while a close we signed may confirm."""
        if shell is not None and shell.factory_id == fid:
            shell.frozen = f"a close of factory {fid.hex()[:16]} we signed is pending"

    def _frozen(self, fid: bytes) -> bool:
        row = self.db.execute(
            "SELECT state FROM factories WHERE factory_id=?", (fid.hex(),)
        ).fetchone()
        return row is not None and row["state"] in ("closing", "closed")

    def _drop_unsigned_close(self) -> None:
        """A new session (or process): the close whose nonces we sent died with the last
        one (its secret nonces are gone). Without any signed close the factory is plain
        funded again and the channel thaws; closes we did sign stay pending."""
        self._close_signer = None
        rows = self.db.execute(
            "SELECT factory_id FROM factories WHERE role='client' AND state='closing'"
        ).fetchall()
        for row in rows:  # the current factory's, or an older one's (a stayer close)
            fid = bytes.fromhex(row["factory_id"])
            closing = load_closing(self.db, fid)
            with self.db.transaction() as c:
                if closing is None or not closing.signed:
                    clear_closing(c, fid)
                    c.execute(
                        "UPDATE factories SET state='funded', updated=? WHERE factory_id=?"
                        " AND state='closing'",
                        (now(), fid.hex()),
                    )
                elif closing.pending is not None:
                    save_closing(c, fid, Closing(closing.signed, None, closing.signed_height))
            if closing is None or not closing.signed:
                log.info("close of factory %s never signed: dropped", fid.hex()[:16])
                if self.channel is not None and self.channel.factory_id == fid:
                    self.channel.frozen = None

    async def _closing_loop(self, interval: float = 1.0) -> None:
        while True:
            try:
                await self._closing_tick()
            except asyncio.CancelledError:
                raise
            except ChainUnavailable as exc:
                log.warning("close watch: chain unavailable: %s", exc)
            except Exception:
                log.exception("close watch failed")
            await asyncio.sleep(interval)

    async def _closing_tick(self) -> None:
        """Judge each close we signed by the chain: confirmed → closed; its input spent by
        another tx → abandoned (funded again, thawed); unconfirmed past our deadline →
        our own unilateral exit (the distribution tx stays armed throughout)."""
        rows = self.db.execute(
            "SELECT factory_id, state FROM factories WHERE role='client'"
            " AND state IN ('funded', 'closing')"
        ).fetchall()
        for row in rows:
            fid = bytes.fromhex(row["factory_id"])
            closing = load_closing(self.db, fid)
            if closing is None:
                continue
            view = observe(self.chain, closing)
            verdict = close_verdict(closing, view, self._close_exit_blocks())
            if verdict is CloseVerdict.CONFIRMED:
                seen = view.confirmed
                with self.db.transaction() as c:
                    c.execute(
                        "UPDATE factories SET state='closed', close_txid=?, updated=?"
                        " WHERE factory_id=?",
                        (seen, now(), fid.hex()),
                    )
                    clear_closing(c, fid)
                log.warning("factory %s closed: our close %s confirmed", fid.hex()[:16], seen)
            elif verdict is CloseVerdict.ABANDONED:
                with self.db.transaction() as c:
                    c.execute(
                        "UPDATE factories SET state='funded', updated=? WHERE factory_id=?"
                        " AND state='closing'",
                        (now(), fid.hex()),
                    )
                    clear_closing(c, fid)
                if self.channel is not None and self.channel.factory_id == fid:
                    self.channel.frozen = None
                log.warning(
                    "close of factory %s abandoned: its input was spent by another tx",
                    fid.hex()[:16],
                )
            elif verdict is CloseVerdict.EXIT and not exit_requested(self.db, fid):
                log.warning(
                    "the close of factory %s we signed is unconfirmed after %d blocks:"
                    " exiting alone",
                    fid.hex()[:16],
                    self._close_exit_blocks(),
                )
                await self.request_exit(fid)

    async def _session(self) -> None:
        cfg = self.config
        self._abort_dead_attempts()
        self._drop_unsigned_close()
        conn = await open_connection(cfg.lsp_host, cfg.lsp_port, self.key, cfg.lsp_pubkey)
        self.conn = conn
        self._our_open = None
        self._lsp_reestablish = None
        try:
            await exchange_init(conn, Init(user_agent="superscalar-client"))
            self.connected = True
            row = self._current()
            fid = bytes.fromhex(row["factory_id"]) if row is not None else None
            payout = bytes.fromhex(self._kv("payout_script") or "")
            await conn.send_message(self.ladder.join_request(fid, payout))
            self._ceremony_wait = None
            while True:
                msg = await conn.receive_message(self._ceremony_wait)
                if isinstance(msg, ChannelMsg):
                    await self._on_channel(msg)
                    continue
                if isinstance(msg, RotationInvite):
                    await self.ladder.on_invite(conn, msg)
                    continue
                if isinstance(
                    msg,
                    LeafAdvancePropose | LeafAdvanceAggNonce | LeafAdvanceDone | LeafAdvanceRefuse,
                ):
                    await self._on_advance(conn, msg)
                    continue
                if isinstance(msg, Error):
                    # a factory the LSP never funded (it died before every READY was
                    # acknowledged) is dead: it no longer knows it
                    if row is not None and row["state"] in ("psigs_sent", "ready"):
                        self._set_state(bytes.fromhex(row["factory_id"]), "aborted")
                    raise ProtocolViolationError(f"LSP error: {msg.code}: {msg.message}")
                try:
                    reply = self._dispatch(msg)
                except Refused as exc:
                    await conn.fail(ProtocolViolationError(str(exc)), ErrorCode.UNEXPECTED_MESSAGE)
                    raise
                if reply is not None:
                    await conn.send_message(reply)
                if isinstance(msg, FactoryFunded):
                    await self._maybe_open()
        finally:
            self.conn = None
            self.advance.disconnected()
            await conn.close()

    async def _on_advance(
        self,
        conn: PeerConnection,
        msg: LeafAdvancePropose | LeafAdvanceAggNonce | LeafAdvanceDone | LeafAdvanceRefuse,
    ) -> None:
        try:
            if isinstance(msg, LeafAdvancePropose) and self._frozen(bytes(msg.factory_id)):
                raise Refused("a close we signed is pending", code=ChannelFrozen.code)
            if isinstance(msg, LeafAdvancePropose):
                await self.advance.on_propose(conn, msg)
            elif isinstance(msg, LeafAdvanceAggNonce):
                await self.advance.on_agg(conn, msg)
            elif isinstance(msg, LeafAdvanceDone):
                self.advance.on_done(msg)
            else:
                self.advance.on_refuse(msg)
        except Refused as exc:
            self.advance.on_refuse(LeafAdvanceRefuse(factory_id=msg.factory_id, reason=str(exc)))
            await conn.fail(ProtocolViolationError(str(exc)), ErrorCode.UNEXPECTED_MESSAGE)
            raise

    # -- the leaf channel -----------------------------------------------------------------

    async def _send_channel(self, msg: ChannelMsg) -> None:
        if self.conn is None:
            raise WireError("not connected")
        await self.conn.send_message(msg)

    async def _maybe_open(self) -> None:
        """Once the factory is funded: load our channel, or send our half of the open."""
        row = self._current()
        if row is None or row["state"] not in ("funded", "closing"):
            return
        fid, pos = bytes.fromhex(row["factory_id"]), int(row["position"])
        if self.channel is None or self.channel.factory_id != fid:
            self.channel = load_channel(
                self.db, self.ladder.key_for(fid), fid, pos, _record_payments
            )
        if row["state"] == "closing":
            self._freeze(fid, self.channel)
        if self.channel is not None and self.channel.ready.is_set():
            await self._reestablish(self.channel)
            return
        # first open, or redo one a crash interrupted (deterministic: same signatures)
        secrets = channel_secrets(self.ladder.key_for(fid), fid, pos)
        funding = view_funding(self._verified_of(row))
        close_script = bytes.fromhex(self._kv("payout_script") or "")
        ours = self._open_message(secrets, fid, funding, close_script)
        self.channel = ChannelShell(self.db, secrets, fid, pos, journal=_record_payments)
        self._our_open = (ours, funding)
        await self._send_channel(self.channel.wrap(ours))

    def _open_message(
        self, secrets: ChannelSecrets, fid: bytes, funding: Funding, close_script: bytes
    ) -> ChannelOpen:
        """Our half of the open: deterministic, so a redone open is the same open."""
        return open_message(
            secrets,
            funding,
            CHANNEL_CONFIG,
            is_initiator=False,
            balance_msat=self.ladder.opening_msat(fid),
            close_script=close_script,
        )

    async def _reestablish(self, shell: ChannelShell) -> None:
        """Every new connection starts the channel with channel_reestablish (both sides)."""
        try:
            notices = await shell.reestablish(self._send_channel)
        except ChannelError as exc:
            raise Refused(f"channel cannot reestablish: {exc}") from exc
        for n in notices:
            await self._on_notice(shell, n)

    async def _on_channel(self, msg: ChannelMsg) -> None:
        shell = self.channel
        if shell is None or bytes(msg.factory_id) != shell.factory_id:
            raise Refused("channel message for no channel of ours")
        if msg.position != shell.position:
            raise Refused("channel message for another position")
        try:
            cmsg = decode_message(msg.payload)
            if self.config.misbehave(ClientMisbehaviour.HOLD_HTLC) and (
                self._holding or isinstance(cmsg, UpdateFulfillHtlc)
            ):
                # dev-misbehave: the payee was paid; we never settle the LSP's fulfil
                # (nor sign or revoke anything after it) and stay connected, silent
                self._holding = True
                log.warning("dev-misbehave: dropping %s", type(cmsg).__name__)
                return
            frozen = self.advance.frozen(shell.factory_id)
            if frozen is not None and not isinstance(cmsg, ChannelOpen | ChannelReestablish):
                raise Refused(frozen)
            if isinstance(cmsg, ChannelOpen) and shell.ready.is_set():
                await self._resend_funding_signed(shell, cmsg)
                return
            if isinstance(cmsg, ChannelReestablish) and not shell.ready.is_set():
                self._lsp_reestablish = msg  # we crashed mid-open: answer once we are open
                return
            if isinstance(cmsg, ChannelOpen):
                if self._our_open is None:
                    raise Refused("channel_open we did not ask for")
                ours, funding = self._our_open
                t = accept_open(
                    shell.secrets, funding, ours, cmsg, chain_height=self.chain.get_block_count()
                )
                shell.state = t.state
                notices = await shell.run_effects(t.effects, self._send_channel)
            elif shell.state is None:
                raise Refused(f"expected the LSP's channel_open, got {type(cmsg).__name__}")
            else:
                notices = await shell.apply(cmsg, self._send_channel)
                if shell.ready.is_set() and self._lsp_reestablish is not None:
                    held, self._lsp_reestablish = self._lsp_reestablish, None
                    await self._reestablish(shell)
                    notices += await shell.apply(decode_message(held.payload), self._send_channel)
        except Refused:
            raise
        except ChannelFrozen as exc:
            raise Refused(str(exc)) from exc
        except Exception as exc:  # refused or ill-typed: our state was not touched
            raise Refused(f"channel error: {exc!r}") from exc
        for n in notices:
            await self._on_notice(shell, n)

    async def _resend_funding_signed(self, shell: ChannelShell, theirs: ChannelOpen) -> None:
        """The LSP's open again while we are open: it died before storing our funding_signed
        and holds our channel_reestablish until it has it. We sign the *same* commitment 0
        again (checked by redoing the open), and only while it is its only commitment."""
        state = shell.state
        assert state is not None
        if state.remote_commit.number != 0 or state.remote_next_commit is not None:
            return  # it has signed later commitments, so it stored our funding_signed
        ours = self._open_message(
            shell.secrets, shell.factory_id, state.funding, state.local_close_script
        )
        signed = resend_funding_signed(shell.secrets, state, ours, theirs)
        await self._send_channel(shell.wrap(signed))

    async def _on_notice(self, shell: ChannelShell, notice: Effect) -> None:
        if isinstance(notice, DataLossDetected):
            self.last_error = f"channel stopped: {notice.reason}"
            log.error("%s", self.last_error)
        elif isinstance(notice, IncomingHtlcCommitted) and notice.htlc.point is not None:
            for n in await self.ladder.on_move_ptlc(shell, notice.htlc, self._send_channel):
                await self._on_notice(shell, n)
        elif isinstance(notice, IncomingHtlcCommitted):
            # also re-announced after a reestablish if our fulfill never got through
            htlc = notice.htlc
            row = self.db.execute(
                "SELECT preimage, amount_msat, state FROM invoices WHERE payment_hash=?"
                " AND state IN ('open', 'paid')",
                (htlc.payment_hash.hex(),),
            ).fetchone()
            if row is None or htlc.amount_msat < int(row["amount_msat"]):
                more = await shell.apply(FailHtlc(htlc.id, b"unknown payment"), self._send_channel)
            elif row["state"] == "open" and self._too_late_to_claim(shell, htlc.cltv_expiry):
                # never reveal a preimage we could not enforce on chain before the expiry
                more = await shell.apply(
                    FailHtlc(htlc.id, b"final-expiry-too-soon"), self._send_channel
                )
            else:
                with self.db.transaction() as c:
                    c.execute(
                        "UPDATE invoices SET state='paid' WHERE payment_hash=?",
                        (htlc.payment_hash.hex(),),
                    )
                crash_point("payee-before-fulfill")
                more = await shell.apply(
                    FulfillHtlc(htlc.id, bytes.fromhex(row["preimage"])), self._send_channel
                )
            for n in more:
                await self._on_notice(shell, n)
        elif isinstance(notice, OutgoingHtlcFulfilled | OutgoingHtlcFailed):
            fut = self._waiting.pop(notice.htlc.payment_hash, None)
            if fut is not None and not fut.done():
                if isinstance(notice, OutgoingHtlcFulfilled):
                    fut.set_result(notice.preimage)
                else:
                    reason = notice.reason.decode(errors="replace")
                    fut.set_exception(RuntimeError(f"payment failed: {reason}"))

    def _too_late_to_claim(self, shell: ChannelShell, expiry: int) -> bool:
        """Would a claim of an HTLC expiring at `expiry` already be due (or within
        `FINAL_EXPIRY_SLACK` blocks)? Then our exit could not confirm the claim in time, so
        we fail the HTLC rather than hand the LSP a preimage it could keep for nothing."""
        row = self.db.execute(
            "SELECT * FROM factories WHERE factory_id=?", (shell.factory_id.hex(),)
        ).fetchone()
        if row is None or row["propose"] is None or shell.state is None:
            return False
        delay, margin = self.ladder.claim_budget(row)
        height = max(shell.state.chain_height, self.chain.get_block_count())
        return must_enforce(height + FINAL_EXPIRY_SLACK, expiry, delay, margin)

    def _default_expiry(self, shell: ChannelShell) -> int:
        """`PAY_CLTV_DELTA` blocks ahead, but early enough for the LSP to enforce it on chain
        within the factory's life: before the distribution locktime + our own path's exit
        delay and confirmation margin (`ladder.enforce.htlc_expiry_limit`, the LSP's
        limit), and before the CLTV timeout. The LSP forwards it with the factory's delta
        (`ladder.enforce.forward_cltv_delta`, announced in its status as
        `htlc_cltv_delta`), so the payee sees it that much earlier."""
        assert shell.state is not None
        cltv = shell.state.chain_height + PAY_CLTV_DELTA
        terms = stored_terms(self.db, shell.factory_id)
        if terms is None:
            return cltv
        limit = terms.locktime
        row = self.db.execute(
            "SELECT * FROM factories WHERE factory_id=?", (shell.factory_id.hex(),)
        ).fetchone()
        if row is not None and row["propose"] is not None:
            verified = self._verified_of(row)
            budget = (
                verified.worst_case_exit_delay,
                confirmation_margin(len(verified.view.steps)),
            )
            limit = min(
                htlc_expiry_limit(terms.locktime, *budget), verified.view.params.cltv_timeout
            )
        return min(cltv, limit - 1)

    async def pay(
        self,
        payee: PublicKey,
        payment_hash: bytes,
        amount_msat: int,
        cltv_expiry: int | None = None,
    ) -> dict[str, Any]:
        """Offer an HTLC to the LSP for `payee`; wait for the preimage."""
        shell = self.channel
        if self._exiting():
            raise RuntimeError("we are exiting this factory unilaterally: no new payments")
        if shell is not None:  # frozen says so, connected or not
            if shell.frozen is not None or self._frozen(shell.factory_id):
                raise RuntimeError(f"{ChannelFrozen.code}: a close we signed is pending")
            frozen = self.advance.frozen(shell.factory_id)
            if frozen is not None:
                raise RuntimeError(frozen)
        if self.conn is None or shell is None or shell.state is None or not shell.ready.is_set():
            raise RuntimeError("no open channel with the LSP (yet)")
        loop = asyncio.get_running_loop()
        start = loop.time()
        with self.db.transaction() as c:
            c.execute(
                "INSERT INTO payments VALUES (?, ?, ?, 'pending', NULL, ?, ?)",
                (payment_hash.hex(), payee.hex(), amount_msat, now(), now()),
            )
        fut: asyncio.Future[bytes] = loop.create_future()
        self._waiting[payment_hash] = fut
        cltv = self._default_expiry(shell) if cltv_expiry is None else cltv_expiry
        try:
            await shell.apply(
                AddHtlc(amount_msat, payment_hash, cltv, payee.data), self._send_channel
            )
        except ChannelError as exc:
            self._waiting.pop(payment_hash, None)
            raise RuntimeError(f"cannot pay: {exc}") from exc
        except WireError:
            pass  # the add is stored: the reestablish on reconnect commits or fails it
        crash_point("payer-after-add")
        preimage = await asyncio.wait_for(fut, 60)
        return {
            "payment_hash": payment_hash.hex(),
            "preimage": preimage.hex(),
            "amount_msat": amount_msat,
            "ms": round((loop.time() - start) * 1000, 1),
        }

    # -- the protocol ----------------------------------------------------------------------

    def _dispatch(self, msg: Message) -> Message | None:
        handlers: dict[type[Message], Callable[[Any], Message | None]] = {
            FactoryPropose: self._on_propose,
            FactoryAggNonces: self._on_agg_nonces,
            FactoryReady: self._on_ready,
            FactoryFunded: self._on_funded,
            FactoryAbort: self._on_abort,
            ClosePropose: self._on_close_propose,
            CloseAggNonce: self._on_close_agg,
            CloseDone: self._on_close_done,
        }
        handler = handlers.get(type(msg))
        if handler is None:
            raise Refused(f"unexpected {msg.type_tag}")
        return handler(msg)

    def _expect_row(self, fid: bytes, *states: str) -> Any:
        row = self._current()
        if row is None or bytes.fromhex(row["factory_id"]) != fid or row["state"] not in states:
            have = "nothing" if row is None else row["state"]
            raise Refused(f"message for factory {fid.hex()[:16]} not expected ({have})")
        return row

    def _factory_row(self, fid: bytes, *states: str) -> Any:
        """Factory `fid` in one of `states`, current or older: a close may come for a factory
        we moved (or tried to move) out of, while our newest one is another."""
        row = self.db.execute(
            "SELECT * FROM factories WHERE role='client' AND factory_id=?", (fid.hex(),)
        ).fetchone()
        if row is None or row["state"] not in states:
            have = "nothing" if row is None else row["state"]
            raise Refused(f"message for factory {fid.hex()[:16]} not expected ({have})")
        return row

    def _safety(self) -> ClientSafety:
        """Our own bounds on factory terms: the network's defaults (read from the chain, as
        the ladder does) with our configuration over them. Never from the LSP."""
        if self._safety_policy is None:
            chain = str(self.chain.get_blockchain_info().get("chain", "regtest"))
            self._safety_policy = safety_for(chain, **dict(self.config.safety))
        return self._safety_policy

    def _expectation(self, params: FactoryParams, key: PublicKey) -> ClientExpectation:
        """What we accept: our factory `key` (one per factory, see `ladder`) at our amount,
        with `params` that already passed our own policy (`_check_terms`) — or, for a
        stored PROPOSE, the parameters we accepted when we signed it."""
        return ClientExpectation(
            key,
            channel_capacity(self.config.amount_sat),
            self.config.lsp_pubkey,
            params,
            initial=True,
        )

    def _verified_of(self, row: Any) -> VerifiedView:
        """Our stored view, checked again after a restart (it is what we signed)."""
        fid = bytes.fromhex(row["factory_id"])
        if self._verified is not None and self._verified[0] == fid:
            return self._verified[1]
        msg = decode(row["propose"])
        assert isinstance(msg, FactoryPropose)
        expect = self._expectation(params_of(msg), self.ladder.key_for(fid).public_key)
        verified = verify_view(view_of(msg, self.config.lsp_pubkey), expect)
        self._verified = (fid, verified)
        return verified

    def _on_propose(self, msg: FactoryPropose) -> Message:
        """Check a new factory with our own bounds before anything is stored or signed: its
        parameters (`factory.safety.check_params`, against the height we read), its path
        view (`verify_view`), our distribution payout, and that our exit fits before the
        CLTV timeout both now and from the distribution locktime (`check_exit_window`)."""
        if not self.ladder.proposal_allowed(self._current()):
            raise Refused("already in a factory")
        fkey = self.ladder.proposed_key()
        if self.config.misbehave(ClientMisbehaviour.STALL_ROTATION) and self.ladder.rotating():
            # dev-misbehave: accept every rotation invite, then wreck its ceremony
            return FactoryNonces(factory_id=msg.factory_id, attempt=msg.attempt, bundle=Hex(b"\0"))
        try:
            height = self.chain.get_block_count()
            safety = self._safety()
        except (ChainUnavailable, ChainResponseError, RpcError) as exc:
            raise Refused(f"cannot read the chain to check the proposal: {exc}") from exc
        try:
            params = params_of(msg)
            check_params(safety, params, height)
            view_in = view_of(msg, self.config.lsp_pubkey)
            verified = verify_view(view_in, self._expectation(params, fkey.public_key))
        except (FactoryError, ValueError) as exc:
            raise Refused(f"proposed factory refused: {exc}") from exc
        view = verified.view
        pos = view.client
        fid = bytes(msg.factory_id)
        payout_script = bytes.fromhex(self._kv("payout_script") or "")
        opening_msat = self._proposed_opening_msat(msg, pos)
        refusal = client_terms_refusal(
            msg.distribution,
            pos,
            len(view.participants),
            payout_script,
            opening_msat,
            msg.cltv_timeout,
        )
        if refusal is not None:
            raise Refused(f"proposed factory refused: {refusal}")
        assert msg.distribution is not None
        try:
            check_exit_window(
                safety,
                params.cltv_timeout,
                height,
                verified.worst_case_exit_delay,
                msg.distribution.locktime,
            )
        except TermsRefused as exc:
            raise Refused(f"proposed factory refused: {exc}") from exc
        try:
            distribution = view_distribution(verified, msg.distribution)
        except (FactoryError, ValueError) as exc:
            raise Refused(f"proposed distribution tx refused: {exc}") from exc
        with self.db.transaction() as c:
            c.execute(
                "INSERT INTO factories (factory_id, role, attempt, state, position, propose,"
                " funding_txid, created, updated) VALUES (?, 'client', ?, 'nonces_sent', ?, ?, ?,"
                " ?, ?)",
                (
                    fid.hex(),
                    msg.attempt,
                    pos,
                    encode(msg).decode(),
                    view.funding_outpoint.txid[::-1].hex(),
                    now(),
                    now(),
                ),
            )
            c.execute(
                "INSERT INTO nonce_use VALUES (?, ?, 'tree', ?)", (fid.hex(), msg.attempt, now())
            )
            self.ladder.record_join(c, fid, pos, opening_msat)
            record_terms(
                c,
                fid,
                msg.distribution,
                msg.distribution.payouts[pos].amount_sat,
            )
        self._verified = (fid, verified)
        n = len(view.participants)
        wait = self.config.step_timeout
        self._ceremony_wait = client_step_timeout(n) if wait is None else wait
        self._signer = Signer(pos + 1, fkey, [*verified.sessions, distribution.session])
        bundle = self._signer.nonces()
        return FactoryNonces(
            factory_id=msg.factory_id, attempt=msg.attempt, bundle=Hex(bundle.to_bytes())
        )

    def _on_agg_nonces(self, msg: FactoryAggNonces) -> Message:
        fid = bytes(msg.factory_id)
        self._expect_row(fid, "nonces_sent")
        signer = self._signer
        if signer is None:
            raise Refused("no nonces for this attempt (restarted?)")
        try:
            agg = AggNonceBundle.from_bytes(bytes(msg.bundle))
        except (FactoryError, ValueError) as exc:
            raise Refused(f"bad aggregate nonces: {exc}") from exc
        self._set_state(fid, "psigs_sent")
        self._signer = None
        try:
            psigs = signer.sign(agg)
        except (FactoryError, ValueError) as exc:
            raise Refused(f"cannot sign: {exc}") from exc
        return FactoryPsigs(
            factory_id=msg.factory_id, attempt=msg.attempt, bundle=Hex(psigs.to_bytes())
        )

    def _proposed_opening_msat(self, msg: FactoryPropose, pos: int) -> int:
        """Our opening balance in the factory being proposed: 0 for a move (the balance
        comes later as the move PTLC), else what the LSP credits us, which its distribution
        tx must pay us (any credit is the LSP's gift: we never claim one), at most our
        channel's capacity."""
        pending = self.ladder._pending()
        if pending is not None and pending["rotating_from"] is not None:
            return 0
        payouts = () if msg.distribution is None else msg.distribution.payouts
        granted = payouts[pos].amount_sat * 1000 if pos < len(payouts) else 0
        return min(granted, channel_capacity(self.config.amount_sat) * 1000)

    def _distribution_of(self, row: Any) -> FundingSpend | None:
        """The factory's distribution tx as we agreed to it (None: a factory from before)."""
        terms = stored_terms(self.db, bytes.fromhex(row["factory_id"]))
        return None if terms is None else view_distribution(self._verified_of(row), terms)

    def _on_ready(self, msg: FactoryReady) -> Message | None:
        fid = bytes(msg.factory_id)
        row = self._expect_row(fid, "psigs_sent", "ready", "funded", "closing", "closed")
        pos = int(row["position"])
        try:
            bundle = SignatureBundle.from_bytes(bytes(msg.bundle))
        except (FactoryError, ValueError) as exc:
            raise Refused(f"bad signatures: {exc}") from exc
        if row["state"] == "psigs_sent":
            crash_point("client-before-ready")
        distribution = self._distribution_of(row)
        sessions = {s.id: s for s in self._verified_of(row).sessions}
        if distribution is not None:
            sessions[distribution.session.id] = distribution.session
        sigs = bundle.as_dict()
        if bundle.signer != pos + 1 or set(sigs) != set(sessions):
            raise Refused("signatures do not cover our path")
        for sid, sig in sigs.items():
            s = sessions[sid]
            if not schnorr.verify(s.keyagg.xonly, s.msg, sig):
                raise Refused(f"signature for session {sid} does not verify")
        with self.db.transaction() as c:
            c.executemany(
                "INSERT OR REPLACE INTO tree_signatures VALUES (?, ?, ?)",
                [(fid.hex(), sid, sig.hex()) for sid, sig in sigs.items()],
            )
            if distribution is not None:
                record_signed(c, fid, distribution.signed(sigs[distribution.session.id]))
            if row["state"] == "psigs_sent":
                c.execute(
                    "UPDATE factories SET state='ready', updated=? WHERE factory_id=?",
                    (now(), fid.hex()),
                )
        self._ceremony_wait = None
        if row["state"] == "psigs_sent":  # once: a resent READY gets no second ack
            return FactoryReadyAck(factory_id=msg.factory_id, attempt=msg.attempt)
        return None

    def _on_funded(self, msg: FactoryFunded) -> None:
        fid = bytes(msg.factory_id)
        row = self._expect_row(fid, "ready", "funded", "closing", "closed")
        verified = self._verified_of(row)
        outpoint = verified.view.funding_outpoint
        if bytes(msg.txid) != outpoint.txid:
            raise Refused("funding txid differs from the proposed one")
        if row["state"] == "ready":
            # what we signed spends an output keyed by the participants our view listed:
            # only the chain can say the funding tx really pays that key that amount
            try:
                info = self.chain.get_tx_out(outpoint.txid[::-1].hex(), outpoint.vout)
            except (ChainUnavailable, ChainResponseError, RpcError) as exc:
                raise Refused(f"cannot look up the funding output: {exc}") from exc
            if info is None or info.txout != verified.funding_txout:
                raise Refused("the funding output on chain is not the one our view describes")
            self._set_state(fid, "funded")
        return None

    def _on_abort(self, msg: FactoryAbort) -> None:
        fid = bytes(msg.factory_id)
        row = self._current()
        if (
            row is not None
            and bytes.fromhex(row["factory_id"]) == fid
            and row["state"]
            in (
                "nonces_sent",
                "psigs_sent",
            )
        ):
            self._set_state(fid, "aborted")
            self._signer = None
        self._ceremony_wait = None
        return None

    def _close_spend(self, row: Any, msg: ClosePropose) -> Any:
        """The close tx `msg` proposes, rebuilt from our own view; refused unless it pays
        us at least our channel balance and our channel is idle (nothing in flight that
        the close's fixed amounts would not reflect)."""
        verified = self.ladder.verified(row)
        view = verified.view
        fid, pos = bytes.fromhex(row["factory_id"]), int(row["position"])
        moved = set(msg.moved)
        if (
            len(msg.payouts) + len(moved) != len(view.participants)
            or pos in moved
            or any(m >= len(view.participants) for m in moved)
        ):
            raise Refused("close pays a different set of clients")
        ours = msg.payouts[pos - sum(1 for m in moved if m < pos)]
        expected = self.ladder.opening_msat(fid) // 1000
        shell = self.channel
        if shell is None or shell.factory_id != fid:  # not loaded yet: what we stored
            shell = load_channel(self.db, self.ladder.key_for(fid), fid, pos)
        if shell is not None and shell.state is not None and shell.state.local_commit is not None:
            b = shell.balances()
            if not b["quiescent"]:
                raise Refused("our channel has updates in flight", code="close-channel-busy")
            expected = int(b["local_msat"]) // 1000
        if bytes(ours.script).hex() != self._kv("payout_script") or ours.amount_sat < expected:
            raise Refused("close does not pay us our channel balance")
        try:
            # O(N): the close pays every client, and we sign the whole tx
            ref = FundingRef(
                view.funding_outpoint, view.funding_amount, view.lsp, view.participants
            )
            if msg.from_kickoff:  # the root kickoff (path tx 0) has the funding key's output
                root = view.steps[0].tx
                ref = FundingRef(root.outpoint(0), root.outputs[0].value, ref.lsp, ref.clients)
            return funding_close(
                verified.funding_output,
                ref,
                [TxOut(p.amount_sat, bytes(p.script)) for p in msg.payouts],
                bytes(msg.lsp_script),
                Feerate(msg.feerate_sat_per_kvb),
            )
        except (FactoryError, ValueError) as exc:
            raise Refused(f"close refused: {exc}") from exc

    def _on_close_propose(self, msg: ClosePropose) -> Message:
        """Commit to a close: the nonce use, the close tx and the channel freeze in one
        transaction, before our nonces go out (`closing`). A re-proposal while a close we
        signed is pending is fine: the channel is frozen, so it pays the same balance."""
        fid = bytes(msg.factory_id)
        if exit_requested(self.db, fid):
            raise Refused("we are exiting this factory", code="close-exiting")
        row = self._factory_row(fid, "funded", "closing")
        spend = self._close_spend(row, msg)
        pos = int(row["position"])
        closing = load_closing(self.db, fid) or Closing()
        with self.db.transaction() as c:
            record_close_nonce_use(c, fid, spend.tx)
            save_closing(c, fid, closing.with_pending(SignedClose.of(spend.tx)))
            c.execute(
                "UPDATE factories SET state='closing', updated=? WHERE factory_id=?",
                (now(), fid.hex()),
            )
        self._freeze(fid, self.channel)
        self._close_signer = Signer(pos + 1, self.ladder.key_for(fid), [spend.session])
        return CloseNonce(
            factory_id=msg.factory_id, bundle=Hex(self._close_signer.nonces().to_bytes())
        )

    def _on_close_agg(self, msg: CloseAggNonce) -> Message:
        """Our partial signature: the close it completes is recorded as signed (with the
        height the exit deadline counts from) before it goes out."""
        fid = bytes(msg.factory_id)
        self._factory_row(fid, "closing")
        signer = self._close_signer
        closing = load_closing(self.db, fid)
        if signer is None or closing is None or closing.pending is None:
            raise Refused("no close in progress", code="close-not-pending")
        self._close_signer = None
        try:
            psig = signer.sign(AggNonceBundle.from_bytes(bytes(msg.bundle)))
            height = self.chain.get_block_count()
        except (FactoryError, ValueError, ChainUnavailable, ChainResponseError, RpcError) as exc:
            raise Refused(f"cannot sign the close: {exc}") from exc
        with self.db.transaction() as c:
            save_closing(c, fid, closing.with_signed(closing.pending, height))
        crash_point("client-close-signed")
        return ClosePsig(factory_id=msg.factory_id, bundle=Hex(psig.to_bytes()))

    def _on_close_done(self, msg: CloseDone) -> None:
        """The LSP says it broadcast a close: believed only for a close we signed, and even
        then nothing is disarmed: the chain, not this message, makes the factory closed."""
        fid = bytes(msg.factory_id)
        row = self._factory_row(fid, "funded", "closing", "closed")
        txid = bytes(msg.txid)[::-1].hex()
        if row["state"] == "closed":
            return None  # settled on chain already
        closing = load_closing(self.db, fid)
        if closing is None or not closing.signed:
            raise Refused(f"close {txid} announced, but we signed none", code="close-not-signed")
        if not closing.knows(txid):
            raise Refused(f"close {txid} is not one we signed", code="close-unknown-txid")
        log.info(
            "LSP reports close %s of factory %s: waiting for it on chain", txid, fid.hex()[:16]
        )
        return None

    # -- control RPC ------------------------------------------------------------------------

    def _closing_snapshot(self) -> dict[str, Any] | None:
        """The close in progress for `status` (read on the RPC thread: its own db handle)."""
        db = open_db(self.config.datadir)
        try:
            row = db.execute(
                "SELECT factory_id FROM factories WHERE role='client' AND state != 'aborted'"
                " ORDER BY created DESC, rowid DESC LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            closing = load_closing(db, bytes.fromhex(row["factory_id"]))
        finally:
            db.close()
        exit_after = self.config.close_exit_blocks or self._exit_after or 0
        return closing_status(closing, exit_after)

    def _rpc_handlers(self) -> dict[str, Callable[..., Any]]:
        datadir = self.config.datadir

        def status() -> dict[str, Any]:
            db = open_db(datadir)
            try:
                exits = exit_status(db)
                moves = self.ladder.moves_status(db)
            finally:
                db.close()
            return status_snapshot(
                datadir,
                "client",
                self.key.public_key,
                extra={
                    "closing": self._closing_snapshot(),
                    "lsp": f"{self.config.lsp_host}:{self.config.lsp_port}",
                    "lsp_pubkey": self.config.lsp_pubkey.hex(),
                    "amount_sat": self.config.amount_sat,
                    "connected": self.connected,
                    "last_error": self.last_error,
                    "exits": exits,
                    "moves": moves,
                },
            )

        def invoice(amount_msat: int, description: str = "") -> dict[str, Any]:
            return make_invoice(datadir, amount_msat, description)

        def pay(
            payee: str, payment_hash: str, amount_msat: int, cltv_expiry: int | None = None
        ) -> dict[str, Any]:
            if self.loop is None:
                raise RpcError(-1, "daemon not running")
            try:
                key = PublicKey.from_hex(payee)
                h = bytes.fromhex(payment_hash)
                if len(h) != 32 or amount_msat <= 0:
                    raise ValueError("payment hash must be 32 bytes, amount positive")
            except ValueError as exc:
                raise RpcError(-8, str(exc)) from exc
            future = asyncio.run_coroutine_threadsafe(
                self.pay(key, h, amount_msat, cltv_expiry), self.loop
            )
            try:
                return future.result(timeout=90)
            except TimeoutError as exc:
                raise RpcError(
                    -1, "no answer within 90 s: the payment is still pending (see `status`)"
                ) from exc
            except RuntimeError as exc:
                raise RpcError(-1, f"payment failed: {exc}") from exc

        def exit_(factory_id: str | None = None) -> list[dict[str, Any]]:
            if self.loop is None:
                raise RpcError(-1, "daemon not running")
            try:
                fid = None if factory_id is None else bytes.fromhex(factory_id)
                if fid is not None and len(fid) != 32:
                    raise ValueError("a factory id is 32 bytes")
            except ValueError as exc:
                raise RpcError(-8, f"bad factory id: {exc}") from exc
            future = asyncio.run_coroutine_threadsafe(self.request_exit(fid), self.loop)
            try:
                return future.result(timeout=60)
            except ExitRefused as exc:
                raise RpcError(-1, f"exit refused: {exc}") from exc

        def liquidity(amount_sat: int, position: int | None = None) -> dict[str, Any]:
            if self.loop is None:
                raise RpcError(-1, "daemon not running")
            if position is not None:
                raise RpcError(-8, "a client buys for its own channel: no --client")
            if int(amount_sat) <= 0:
                raise RpcError(-8, "amount must be positive")
            future = asyncio.run_coroutine_threadsafe(
                self.advance.request(int(amount_sat)), self.loop
            )
            try:
                return future.result(timeout=150)
            except (AdvanceRefused, WireError, TimeoutError) as exc:
                why = str(exc) or type(exc).__name__
                raise RpcError(-1, f"liquidity refused: {why}") from exc

        return {
            "status": status,
            "report": status,
            "invoice": invoice,
            "pay": pay,
            "liquidity": liquidity,
            "exit": exit_,
        }


def _record_payments(c: sqlite3.Connection, pos: int, effects: tuple[Effect, ...]) -> None:
    """Our payment's outcome, in the same transaction as the channel step that settles it."""
    for e in effects:
        if isinstance(e, OutgoingHtlcFulfilled | OutgoingHtlcFailed):
            ok = isinstance(e, OutgoingHtlcFulfilled)
            c.execute(
                "UPDATE payments SET state=?, preimage=?, updated=? WHERE payment_hash=?"
                " AND state='pending'",
                (
                    "complete" if ok else "failed",
                    e.preimage.hex() if isinstance(e, OutgoingHtlcFulfilled) else None,
                    now(),
                    e.htlc.payment_hash.hex(),
                ),
            )


def make_invoice(datadir: Path, amount_msat: int, description: str = "") -> dict[str, Any]:
    """A fresh preimage and its SHA256 payment hash, stored before the hash is handed out
    (a payment to a hash we cannot settle would be stuck until its timeout)."""
    if amount_msat <= 0:
        raise RpcError(-8, "amount_msat must be positive")
    preimage = os.urandom(32)
    payment_hash = hashlib.sha256(preimage).digest()
    db = open_db(datadir)
    try:
        with db.transaction() as c:
            c.execute(
                "INSERT INTO invoices (payment_hash, preimage, amount_msat, description, created)"
                " VALUES (?, ?, ?, ?, ?)",
                (payment_hash.hex(), preimage.hex(), amount_msat, description[:256], now()),
            )
    finally:
        db.close()
    return {
        "payment_hash": payment_hash.hex(),
        "preimage": preimage.hex(),
        "amount_msat": amount_msat,
    }
