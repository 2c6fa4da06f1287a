"""`superscalar watchtower`: a standalone tower that learns nothing until a breach happens.

It runs apart from the LSP: its own process, node key, datadir and SQLite,
and its own view of the chain. Clients connect over BOLT-8 (mutually
authenticated by node key, encrypted) and push `tower_hint` messages: a
16-byte id and an encrypted blob per revoked commitment (`watch.hints`). Each
hint is on disk before its `tower_ack` goes back. The tower follows the chain
with the same `ChainWatcher` as the daemons; its detector looks up every
transaction's `txid[:16]` among the stored ids and, on a hit, opens the blob
with the full txid and answers with the penalty it holds. Until then the blob
is noise to it: it cannot tell whose channel, which amounts, or even whether
a hint is real.

Run by the LSP's own operator, it can instead (or also) be fed read-only
from a daemon's database (`--from-datadir`): then it needs no hints, but it
reads that daemon's node key and channel states, so it is the same trust
domain, only a separate process (and database) that keeps watching if the
daemon is down.

Why BOLT-8 and not the control RPC: a tower is meant to be remote and run by
someone else, so clients need an authenticated, encrypted channel to it; the
control RPC is a local operator socket (cookie in the datadir).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from superscalar.bitcoin.tx import Transaction
from superscalar.chain.bitcoind import BitcoindClient
from superscalar.chain.rpc import RpcServer
from superscalar.crypto.keys import SecretKey
from superscalar.watch import HintError, WatchEntry, decrypt_hint
from superscalar.watch.hints import MAX_BLOB
from superscalar.wire.codec import Init
from superscalar.wire.connection import PeerConnection, PeerServer, exchange_init, start_server
from superscalar.wire.errors import ProtocolViolationError, WireError
from superscalar.wire.messages import TowerAck, TowerHint

from .common import now, open_db
from .control import write_control_port
from .detector import ChannelDetector
from .watcher import ChainWatcher, open_readonly

__all__ = ["TowerConfig", "WatchtowerDaemon"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TowerConfig:
    """What `superscalar watchtower` takes on its command line."""

    datadir: Path
    host: str
    port: int
    poll_seconds: float = 0.5
    from_datadir: Path | None = None
    """Also watch this daemon's channels, reading its database read-only (same operator)."""
    max_hints_per_client: int = 1_000_000
    """A client pushing more is refused (disk is the tower's to protect)."""


class WatchtowerDaemon:
    """See the module docstring. `run()` serves until cancelled."""

    def __init__(self, config: TowerConfig, key: SecretKey, chain: BitcoindClient) -> None:
        self.config = config
        self.key = key
        self.chain = chain
        config.datadir.mkdir(parents=True, exist_ok=True)
        self.db = open_db(config.datadir)
        self.hints: dict[bytes, list[bytes]] = {}
        self.per_client: dict[str, int] = {
            str(r["client"]): int(r["n"])
            for r in self.db.execute(
                "SELECT client, COUNT(*) AS n FROM watch_hints GROUP BY client"
            )
        }
        for r in self.db.execute("SELECT hint_id, blob FROM watch_hints"):
            self.hints.setdefault(bytes.fromhex(r["hint_id"]), []).append(bytes(r["blob"]))
        self.channels: ChannelDetector | None = None
        if config.from_datadir is not None:
            conn, their_key = open_readonly(config.from_datadir)
            self.channels = ChannelDetector(conn, their_key)
        self.watcher = ChainWatcher(
            self.db,
            chain,
            name="tower",
            detect=self._detect,
            rebuild=None if self.channels is None else self.channels.rebuild,
            poll_seconds=config.poll_seconds,
        )
        self.watcher.load(start_height=-1)
        self.server: PeerServer | None = None

    def _detect(self, tx: Transaction) -> WatchEntry | None:
        if self.channels is not None:
            entry = self.channels(tx)
            if entry is not None:
                return entry
        for blob in self.hints.get(tx.txid[:16], ()):
            try:
                return decrypt_hint(tx.txid, blob)
            except HintError as exc:  # a colliding id or a junk hint: not this breach
                log.info("hint %s does not open for %s: %s", tx.txid[:16].hex(), tx.txid_hex, exc)
        return None

    async def _handle(self, conn: PeerConnection) -> None:
        client = conn.remote_pubkey.hex()
        await exchange_init(conn, Init(user_agent="superscalar-watchtower"))
        while True:
            msg = await conn.receive_message()
            if not isinstance(msg, TowerHint):
                await conn.fail(ProtocolViolationError(f"unexpected {msg.type_tag}"))
                return
            blob = bytes(msg.blob)
            if len(blob) > MAX_BLOB:
                await conn.fail(ProtocolViolationError(f"hint blob over {MAX_BLOB} bytes"))
                return
            if self.per_client.get(client, 0) >= self.config.max_hints_per_client:
                limit = self.config.max_hints_per_client
                await conn.fail(ProtocolViolationError(f"hint quota of {limit} reached"))
                return
            hint_id = bytes(msg.hint_id)
            with self.db.transaction() as c:
                inserted = c.execute(
                    "INSERT OR IGNORE INTO watch_hints VALUES (?, ?, ?, ?)",
                    (hint_id.hex(), client, blob, now()),
                ).rowcount
            if inserted:
                self.hints.setdefault(hint_id, []).append(blob)
                self.per_client[client] = self.per_client.get(client, 0) + 1
            await conn.send_message(TowerAck(hint_id=msg.hint_id))

    async def _serve(self, conn: PeerConnection) -> None:
        try:
            await self._handle(conn)
        except WireError as exc:
            log.info("client %s gone: %s", conn.remote_pubkey.hex()[:16], exc)

    def _rpc_handlers(self) -> dict[str, Callable[..., Any]]:
        def status() -> dict[str, Any]:
            return {
                "role": "watchtower",
                "pubkey": self.key.public_key.hex(),
                "listen": f"{self.config.host}:{self.server.port if self.server else 0}",
                "hints": sum(len(v) for v in self.hints.values()),
                "from_datadir": None
                if self.config.from_datadir is None
                else str(self.config.from_datadir),
                "watch": self.watcher.summary(),
            }

        return {"status": status, "watch": lambda: {"enabled": True, **self.watcher.summary()}}

    async def run(self) -> None:
        self.server = await start_server(self.key, self._serve, self.config.host, self.config.port)
        control = RpcServer(self._rpc_handlers(), port=0, cookie_dir=self.config.datadir)
        control.start()
        write_control_port(self.config.datadir, control.port)
        log.info("watchtower listening on %s:%d", self.config.host, self.server.port)
        task = asyncio.create_task(self.watcher.run(), name="tower-watcher")
        try:
            await asyncio.Event().wait()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            control.stop()
            await self.server.close()
            self.db.close()
