"""PTLC key turnover over BOLT-8 and SQLite: the I/O shell around `ladder.turnover`.

Both sides persist every state change in the `turnovers` table *before* the
message that depends on it goes out:

- LSP: the pre-signature is stored (stage `presigned`) before `turnover_presig`
  is sent; after a crash the stored one is sent again (same nonce, so a
  signature completing either copy reveals the same key). The extracted
  client key is stored (stage `done`) as soon as it is checked.
- Client: the handover (stage `handed_over`) and the new current factory are
  stored in one transaction before `turnover_sig` is sent: from then on the
  client treats the old factory as the LSP's.

A refusal is an ordinary answer (`turnover_refuse` with a reason), never a
disconnect; anything malformed or unexpected gets the peer a wire `Error`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from superscalar.crypto.adaptor import AdaptorSignature
from superscalar.crypto.errors import CryptoError
from superscalar.crypto.keys import PublicKey, SecretKey
from superscalar.ladder.errors import LadderError
from superscalar.ladder.turnover import (
    ClientStage,
    ClientTurnover,
    LspEvent,
    LspStage,
    LspTransition,
    LspTurnover,
    PresigReceived,
    ReadinessChanged,
    RefusalReceived,
    Refuse,
    Rejected,
    SendPresig,
    SendSignature,
    SignatureReceived,
    TurnoverContext,
    client_step,
    lsp_step,
)
from superscalar.store.db import Database
from superscalar.wire.codec import Hex, Hex32, PublicKeyHex
from superscalar.wire.connection import PeerConnection
from superscalar.wire.errors import ProtocolViolationError
from superscalar.wire.messages import TurnoverPresig, TurnoverRefuse, TurnoverSig

from .common import now

__all__ = ["CURRENT_FACTORY_KEY", "ClientTurnovers", "LspTurnovers", "TurnoverFault"]

CURRENT_FACTORY_KEY = "current_factory"
"""node_kv key: the factory id a client currently relies on (the newest it moved into)."""


class TurnoverFault(Exception):
    """The peer answered a turnover with something wrong; it got a wire Error."""


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

    def _save(self, state: LspTurnover) -> None:
        ctx = state.ctx
        with self.db.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO turnovers VALUES (?, ?, 'lsp', ?, ?, ?, ?, ?, ?, ?)",
                (
                    ctx.old_factory.hex(),
                    ctx.client_key.hex(),
                    ctx.new_factory.hex(),
                    ctx.lsp_key.hex(),
                    state.stage.value,
                    state.presig.to_bytes().hex() if state.presig else None,
                    state.secret.to_bytes().hex() if state.secret else None,
                    state.reason,
                    now(),
                ),
            )

    def step(self, state: LspTurnover, event: LspEvent) -> LspTransition:
        """Step the core and persist the new state before anything is sent."""
        t = lsp_step(self.key, state, event)
        if t.state != state or self.get(state.ctx.old_factory, state.ctx.client_key) is None:
            self._save(t.state)
        return t

    async def turn_over(
        self,
        conn: PeerConnection,
        ctx: TurnoverContext,
        *,
        moved: bool,
        pending_htlcs: int,
        timeout: float = 30.0,
    ) -> LspTurnover:
        """Ask the client on `conn` for its key in `ctx.old_factory`; returns the new state.

        DONE: the key is stored; REFUSED: the reason is stored; WAITING: nothing
        was sent (a blocker); PRESIGNED after a timeout means ask again later.
        """
        state = self.get(ctx.old_factory, ctx.client_key) or LspTurnover(ctx)
        if state.ctx != ctx:
            raise LadderError("a turnover for this client and factory names another target")
        t = self.step(state, ReadinessChanged(moved, pending_htlcs))
        send = next((e for e in t.effects if isinstance(e, SendPresig)), None)
        if send is None:
            return t.state
        await conn.send_message(
            TurnoverPresig(
                old_factory=Hex32(ctx.old_factory),
                new_factory=Hex32(ctx.new_factory),
                client_key=PublicKeyHex.of(ctx.client_key),
                presig=Hex(send.presig.to_bytes()),
            )
        )
        try:
            reply = await conn.receive_message(timeout)
        except TimeoutError:
            return t.state
        ids = (bytes(getattr(reply, "old_factory", b"")), bytes(getattr(reply, "new_factory", b"")))
        if ids != (ctx.old_factory, ctx.new_factory):
            await self._fault(conn, f"expected a turnover answer, got {reply.type_tag}")
        if isinstance(reply, TurnoverRefuse):
            return self.step(t.state, RefusalReceived(reply.reason)).state
        assert isinstance(reply, TurnoverSig)
        done = self.step(t.state, SignatureReceived(bytes(reply.signature)))
        rejected = next((e for e in done.effects if isinstance(e, Rejected)), None)
        if rejected is not None:
            await self._fault(conn, rejected.reason)
        return done.state

    @staticmethod
    async def _fault(conn: PeerConnection, reason: str) -> None:
        await conn.fail(ProtocolViolationError(reason))
        raise TurnoverFault(reason)

    def recovered_keys(self, old_factory: bytes) -> dict[bytes, SecretKey]:
        """Client factory keys handed over for `old_factory`, by compressed public key."""
        rows = self.db.execute(
            "SELECT client_key, secret FROM turnovers WHERE old_factory=? AND role='lsp'"
            " AND stage='done'",
            (old_factory.hex(),),
        ).fetchall()
        return {bytes.fromhex(r["client_key"]): SecretKey(bytes.fromhex(r["secret"])) for r in rows}


class ClientTurnovers:
    """The client's side. `factory_key(old_factory)` is its key there (None if not a member)."""

    def __init__(
        self,
        db: Database,
        lsp_key: PublicKey,
        factory_key: Callable[[bytes], SecretKey | None],
    ) -> None:
        self.db = db
        self.lsp_key = lsp_key
        self.factory_key = factory_key

    def get(self, old_factory: bytes) -> ClientTurnover:
        row = self.db.execute(
            "SELECT stage, new_factory FROM turnovers WHERE old_factory=? AND role='client'",
            (old_factory.hex(),),
        ).fetchone()
        if row is None:
            return ClientTurnover(old_factory)
        return ClientTurnover(
            old_factory, ClientStage(row["stage"]), bytes.fromhex(row["new_factory"])
        )

    def current_factory(self) -> bytes | None:
        row = self.db.execute(
            "SELECT value FROM node_kv WHERE key=?", (CURRENT_FACTORY_KEY,)
        ).fetchone()
        return None if row is None else bytes.fromhex(row["value"])

    async def answer(
        self,
        conn: PeerConnection,
        msg: TurnoverPresig,
        *,
        moved: bool,
        pending_htlcs: int,
        willing: bool = True,
    ) -> ClientTurnover:
        """Hand over our key in `msg.old_factory` if it is safe to, else refuse with a reason."""
        old, new = bytes(msg.old_factory), bytes(msg.new_factory)
        state = self.get(old)
        key = self.factory_key(old)
        try:
            if key is None:
                raise LadderError("we are not a member of that factory")
            ctx = TurnoverContext(old, new, msg.client_key.to_key(), self.lsp_key)
            presig = AdaptorSignature.from_bytes(bytes(msg.presig))
        except (LadderError, CryptoError) as exc:
            await self._refuse(conn, old, new, str(exc))
            return state
        t = client_step(key, state, PresigReceived(ctx, presig, moved, pending_htlcs, willing))
        for effect in t.effects:
            if isinstance(effect, Refuse):
                await self._refuse(conn, old, new, effect.reason)
            elif isinstance(effect, SendSignature):
                if t.state != state:
                    self._save_handover(ctx)
                await conn.send_message(
                    TurnoverSig(
                        old_factory=Hex32(old),
                        new_factory=Hex32(new),
                        signature=Hex(effect.signature),
                    )
                )
        return t.state

    def _save_handover(self, ctx: TurnoverContext) -> None:
        with self.db.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO turnovers"
                " VALUES (?, ?, 'client', ?, ?, ?, NULL, NULL, '', ?)",
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
                "INSERT OR REPLACE INTO node_kv VALUES (?, ?)",
                (CURRENT_FACTORY_KEY, ctx.new_factory.hex()),
            )

    @staticmethod
    async def _refuse(conn: PeerConnection, old: bytes, new: bytes, reason: str) -> None:
        await conn.send_message(
            TurnoverRefuse(old_factory=Hex32(old), new_factory=Hex32(new), reason=reason[:1000])
        )
