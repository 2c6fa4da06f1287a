"""Feeding watchtowers: one encrypted hint per revoked commitment, persisted before it is sent.

`TowerPusher` turns every new `channel_revoked` row into a penalty ladder
(built from the channel state, which holds every revealed secret), seals it
as a hint (`watch.hints.encrypt_hint`), and writes one outbox row per tower
in the same transaction that advances its cursor — so a crash loses nothing
and never queues twice. Unsent rows go out over BOLT-8 and are marked sent
only on the tower's ack; after a restart (or a tower outage) they are resent.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass

from superscalar.channel.errors import ChannelError
from superscalar.channel.revocation import RevokedCommitment
from superscalar.channel.state import ChannelState
from superscalar.crypto.keys import PublicKey, SecretKey
from superscalar.store.db import Database
from superscalar.watch import WatchError, encrypt_hint
from superscalar.watch.responses import penalty_entry
from superscalar.wire.codec import Hex, Init
from superscalar.wire.connection import exchange_init, open_connection
from superscalar.wire.errors import WireError
from superscalar.wire.messages import Hex16, TowerAck, TowerHint

from .chancodec import decode_state, decode_value
from .channels import channel_anchor, channel_secrets
from .common import factory_signing_key

__all__ = ["TowerAddress", "TowerPusher"]

log = logging.getLogger(__name__)
CURSOR = "tower_revoked_rowid"


@dataclass(frozen=True)
class TowerAddress:
    """`<pubkey>@host:port`, as `--watchtower` takes it."""

    pubkey: PublicKey
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> TowerAddress:
        key, at, addr = text.partition("@")
        host, colon, port = addr.rpartition(":")
        if not at or not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected <pubkey>@host:port, got {text!r}")
        return cls(PublicKey.from_hex(key), host, int(port))

    def __str__(self) -> str:
        return f"{self.pubkey.hex()}@{self.host}:{self.port}"


class TowerPusher:
    """See the module docstring; `run()` loops until cancelled."""

    def __init__(
        self, db: Database, key: SecretKey, towers: list[TowerAddress], poll_seconds: float = 1.0
    ) -> None:
        self.db = db
        self.key = key
        self.towers = towers
        self.poll_seconds = poll_seconds
        self.sent: dict[str, int] = {str(t): 0 for t in towers}
        self.errors: dict[str, str | None] = {str(t): None for t in towers}

    def queue_new(self) -> int:
        """Seal a hint for every revocation since the cursor; returns how many."""
        row = self.db.execute("SELECT value FROM node_kv WHERE key=?", (CURSOR,)).fetchone()
        cursor = int(row["value"]) if row is not None else 0
        rows = self.db.execute(
            "SELECT rowid, factory_id, position, revoked FROM channel_revoked WHERE rowid > ?"
            " ORDER BY rowid",
            (cursor,),
        ).fetchall()
        if not rows:
            return 0
        states: dict[tuple[str, int], ChannelState] = {}
        queued: list[tuple[str, str, bytes]] = []
        for r in rows:
            fid, pos = str(r["factory_id"]), int(r["position"])
            if (fid, pos) not in states:
                srow = self.db.execute(
                    "SELECT state FROM channels WHERE factory_id=? AND position=?", (fid, pos)
                ).fetchone()
                if srow is None:
                    raise LookupError(f"revocation for unknown channel {fid}/{pos}")
                states[(fid, pos)] = decode_state(srow["state"])
            state = states[(fid, pos)]
            revoked = decode_value(json.loads(r["revoked"]))
            assert isinstance(revoked, RevokedCommitment)
            secrets = channel_secrets(
                factory_signing_key(self.db, self.key, bytes.fromhex(fid)),
                bytes.fromhex(fid),
                pos,
                channel_anchor(self.db, bytes.fromhex(fid), pos),
            )
            try:
                entry = penalty_entry(secrets, state, revoked, state.local_close_script)
            except (ChannelError, WatchError) as exc:
                log.warning("no hint for revoked commitment %d: %s", revoked.number, exc)
                continue
            hint = encrypt_hint(entry)
            queued += [(str(t), hint.hint_id.hex(), hint.blob) for t in self.towers]
        with self.db.transaction() as c:
            c.executemany("INSERT OR IGNORE INTO watch_outbox VALUES (?, ?, ?, 0)", queued)
            c.execute(
                "INSERT OR REPLACE INTO node_kv VALUES (?, ?)", (CURSOR, str(rows[-1]["rowid"]))
            )
        return len(rows)

    async def flush(self, tower: TowerAddress) -> int:
        """Send this tower's unsent hints, marking each sent on its ack; returns how many."""
        pending = self.db.execute(
            "SELECT hint_id, blob FROM watch_outbox WHERE tower=? AND sent=0", (str(tower),)
        ).fetchall()
        if not pending:
            return 0
        conn = await open_connection(tower.host, tower.port, self.key, tower.pubkey)
        try:
            await exchange_init(conn, Init(user_agent="superscalar-client"))
            for r in pending:
                hint_id = Hex16(bytes.fromhex(r["hint_id"]))
                await conn.send_message(TowerHint(hint_id=hint_id, blob=Hex(bytes(r["blob"]))))
                ack = await conn.receive_message(timeout=30)
                if not isinstance(ack, TowerAck) or bytes(ack.hint_id) != hint_id:
                    raise WireError(f"tower answered {ack.type_tag}, not the ack")
                with self.db.transaction() as c:
                    c.execute(
                        "UPDATE watch_outbox SET sent=1 WHERE tower=? AND hint_id=?",
                        (str(tower), r["hint_id"]),
                    )
                self.sent[str(tower)] += 1
        finally:
            await conn.close()
        return len(pending)

    async def run(self) -> None:
        while True:
            try:
                self.queue_new()
            except Exception:  # keep pushing what is queued; the cursor did not move
                log.exception("could not seal hints for new revocations; retrying")
            for tower in self.towers:
                try:
                    await self.flush(tower)
                    self.errors[str(tower)] = None
                except (WireError, OSError) as exc:
                    self.errors[str(tower)] = f"{type(exc).__name__}: {exc}"
                    log.warning("watchtower %s: %s", tower.host, self.errors[str(tower)])
            await asyncio.sleep(self.poll_seconds)
