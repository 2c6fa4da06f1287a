"""The chain-following shell around `watch.core`, shared by the client, the LSP and the tower.

`ChainWatcher.run()` polls the tip and scans *every* block since the persisted
scan height, so a daemon that was down catches up on what it missed; each
block is one `on_block` step whose effects are carried out here: the scan
height, new entries and breach records are written in one SQLite transaction
*before* anything is broadcast, then responses go out (a self-paying penalty
with `sendrawtransaction`, a zero-fee anchored tx as a package with a
wallet-funded CPFP child; later, higher-feerate children RBF the first).

Where entries come from is the caller's: `detect(tx)` is asked about every
transaction before the core sees the block (the daemons look for revoked
commitments of their own channels; the tower opens its encrypted hints), and
`add_entries` takes entries known in advance. After a restart, breaches not
yet resolved are rescanned from their block, so the response resumes.

Chain calls run in a worker thread (the RPC client keeps a connection per
thread); the database is only touched on the event-loop thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from superscalar.bitcoin.block import Block
from superscalar.bitcoin.tx import Transaction
from superscalar.chain.bitcoind import BitcoindClient, ChainResponseError, ChainUnavailable
from superscalar.chain.rpc import RpcError
from superscalar.crypto.keys import SecretKey
from superscalar.factory.exits import cpfp_child
from superscalar.store.db import Database
from superscalar.watch import (
    BreachDetected,
    Broadcast,
    BroadcastPackage,
    Effect,
    EntryKind,
    PersistScanHeight,
    Resolved,
    WatchEntry,
    WatcherState,
    on_block,
    reactivate,
)
from superscalar.watch.hints import decode_entry, encode_entry

from .common import now
from .detector import ChannelDetector, fundings
from .towerclient import TowerAddress, TowerPusher

__all__ = [
    "ChainWatcher",
    "DaemonWatch",
    "WatchStats",
    "breach_report",
    "channel_watcher",
]

log = logging.getLogger(__name__)

Detector = Callable[[Transaction], WatchEntry | None]
Rebuilder = Callable[[WatchEntry, list[Transaction]], WatchEntry | None]


@dataclass
class WatchStats:
    """What the watcher has done since it started (for `status` and the benchmarks)."""

    blocks: int = 0
    seconds: float = 0.0
    breaches: int = 0
    broadcasts: int = 0
    last_error: str | None = None

    @property
    def blocks_per_second(self) -> float:
        return self.blocks / self.seconds if self.seconds > 0 else 0.0


class ChainWatcher:
    """Follows the chain for one daemon; see the module docstring."""

    def __init__(
        self,
        db: Database,
        chain: BitcoindClient,
        *,
        name: str,
        detect: Detector | None = None,
        start_txids: Callable[[], list[str]] | None = None,
        rebuild: Rebuilder | None = None,
        poll_seconds: float = 0.5,
    ) -> None:
        self.db = db
        self.chain = chain
        self.name = name
        self.detect = detect
        self.start_txids = start_txids
        self.rebuild = rebuild
        """Asked for a new response when the cheater spent part of what ours spends."""
        self._foreign: dict[bytes, list[Transaction]] = {}
        """A fresh watcher scans from the earliest block holding one of these (our fundings)."""
        self.poll_seconds = poll_seconds
        self.stats = WatchStats()
        self.state = WatcherState(scan_height=-1)
        self._children: dict[bytes, Transaction] = {}
        """Our CPFP child per anchored response (parent txid): later bumps RBF it."""
        self._wake = asyncio.Event()
        self.breaches: list[dict[str, Any]] = []
        """`breach_report` as of the last block (read by the control RPC's thread)."""

    # -- persistence --------------------------------------------------------------------

    def load(self, start_height: int) -> None:
        """Restore entries and the scan height; rewind to the oldest unresolved breach."""
        entries = [
            decode_entry(bytes.fromhex(r["trigger_txid"]), bytes(r["entry"]))
            for r in self.db.execute("SELECT trigger_txid, entry FROM watch_entries")
        ]
        row = self.db.execute("SELECT height FROM watch_scan WHERE id=1").fetchone()
        height = int(row["height"]) if row is not None else start_height
        open_breach = self.db.execute(
            "SELECT MIN(height) AS h FROM watch_breaches WHERE won IS NULL"
        ).fetchone()
        if open_breach is not None and open_breach["h"] is not None:
            height = min(height, int(open_breach["h"]) - 1)
        self.state = WatcherState(scan_height=height).with_entries(entries)
        if row is None and height >= 0:  # the starting point is remembered from now on
            self._persist([], [PersistScanHeight(height)])
        self.breaches = breach_report(self.db)

    def add_entries(self, entries: Iterable[WatchEntry], *, replace: bool = False) -> None:
        """Watch for these too (persisted first); `replace`: a newer answer to the same
        trigger (a leaf advanced again) takes the stored one's place."""
        entries = list(entries)
        with self.db.transaction() as c:
            if replace:
                c.executemany(
                    "DELETE FROM watch_entries WHERE trigger_txid=?",
                    [(e.trigger_txid.hex(),) for e in entries],
                )
            self._store_entries(c, entries)
        self.state = self.state.with_entries(entries)

    @staticmethod
    def _store_entries(c: Any, entries: list[WatchEntry]) -> None:
        c.executemany(
            "INSERT OR IGNORE INTO watch_entries VALUES (?, ?, ?, ?, ?)",
            [
                (e.trigger_txid.hex(), e.kind.value, e.label, encode_entry(e), now())
                for e in entries
            ],
        )

    def _rebuild_lost(
        self, state: WatcherState, height: int, txs: list[Transaction], effects: list[Effect]
    ) -> tuple[WatcherState, list[Effect], list[WatchEntry]]:
        """A race lost on *some* outputs is not lost: answer again with what is left."""
        assert self.rebuild is not None
        by_id = {tx.txid: tx for tx in txs}
        kept: list[Effect] = []
        more: list[Effect] = []
        rebuilt: list[WatchEntry] = []
        for effect in effects:
            if isinstance(effect, Resolved) and not effect.won:
                spenders = self._foreign.setdefault(effect.entry.trigger_txid, [])
                spenders.append(by_id[effect.spender])
                entry = self.rebuild(effect.entry, list(spenders))
                if entry is not None:
                    log.warning(
                        "%s watcher: cheater spent part of %s in %s: penalty rebuilt",
                        self.name,
                        effect.entry.trigger_txid[::-1].hex(),
                        effect.spender[::-1].hex(),
                    )
                    state, answer = reactivate(state, entry, effect.since, height)
                    more += answer
                    rebuilt.append(entry)
                    continue
            kept.append(effect)
        return state, more + kept, rebuilt

    def _persist(
        self, new: list[WatchEntry], effects: list[Effect], rebuilt: Sequence[WatchEntry] = ()
    ) -> None:
        with self.db.transaction() as c:
            self._store_entries(c, new)
            c.executemany(
                "INSERT OR REPLACE INTO watch_entries VALUES (?, ?, ?, ?, ?)",
                [
                    (e.trigger_txid.hex(), e.kind.value, e.label, encode_entry(e), now())
                    for e in rebuilt
                ],
            )
            for effect in effects:
                if isinstance(effect, BreachDetected):
                    e = effect.entry
                    c.execute(
                        "INSERT OR IGNORE INTO watch_breaches"
                        " (trigger_txid, kind, label, height, detected) VALUES (?, ?, ?, ?, ?)",
                        (e.trigger_txid.hex(), e.kind.value, e.label, effect.height, now()),
                    )
                elif isinstance(effect, Resolved):
                    c.execute(
                        "UPDATE watch_breaches SET spender=?, won=?, resolved_height=?"
                        " WHERE trigger_txid=?",
                        (
                            effect.spender.hex(),
                            int(effect.won),
                            effect.height,
                            effect.entry.trigger_txid.hex(),
                        ),
                    )
                elif isinstance(effect, PersistScanHeight):
                    c.execute("INSERT OR REPLACE INTO watch_scan VALUES (1, ?)", (effect.height,))

    # -- the loop -----------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """For `status`: how far we scanned, how fast, what we found."""
        return {
            "scan_height": self.state.scan_height,
            "entries": len(self.state.entries),
            "blocks_scanned": self.stats.blocks,
            "blocks_per_second": round(self.stats.blocks_per_second, 1),
            "broadcasts": self.stats.broadcasts,
            "last_error": self.stats.last_error,
            "breaches": list(self.breaches),
        }

    def poke(self) -> None:
        """Check the tip now instead of at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Follow the chain until cancelled; chain errors are logged and retried."""
        while True:
            try:
                await self.catch_up()
                self.stats.last_error = None
            except (ChainUnavailable, ChainResponseError, RpcError, OSError) as exc:
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("%s watcher: %s", self.name, self.stats.last_error)
            except Exception as exc:  # a bug must not silently end the watching: retry, loudly
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("%s watcher failed on the next block; retrying", self.name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            self._wake.clear()

    async def catch_up(self) -> int:
        """Scan every block up to the tip; the number scanned."""
        tip = await asyncio.to_thread(self.chain.get_block_count)
        if self.state.scan_height < 0:  # fresh: from our earliest funding, or from now
            txids = self.start_txids() if self.start_txids is not None else []
            start = await asyncio.to_thread(self._earliest, txids, tip)
            self.state = replace(self.state, scan_height=start)
            self._persist([], [PersistScanHeight(start)])
        scanned = 0
        while self.state.scan_height < tip:
            height = self.state.scan_height + 1
            started = time.perf_counter()
            block = await asyncio.to_thread(self._fetch, height)
            await self.process_block(height, block.transactions)
            self.stats.seconds += time.perf_counter() - started
            self.stats.blocks += 1
            scanned += 1
        return scanned

    def _earliest(self, txids: list[str], tip: int) -> int:
        """The height just before the first of `txids` confirmed (`tip` if none did)."""
        start = tip
        for txid in txids:
            try:
                info = self.chain.get_raw_transaction_verbose(txid)
            except (RpcError, ChainResponseError):
                continue
            if info.confirmations > 0:
                start = min(start, tip - info.confirmations)
        return start

    def _fetch(self, height: int) -> Block:
        raw = self.chain.get_block(self.chain.get_block_hash(height), 0)
        return Block.from_bytes(raw)

    async def process_block(self, height: int, txs: Iterable[Transaction]) -> list[Effect]:
        """One block: detect, step the core, persist, then broadcast."""
        txs = list(txs)
        new: list[WatchEntry] = []
        if self.detect is not None:
            for tx in txs[1:]:  # never the coinbase
                if tx.txid in self.state.entries:
                    continue
                entry = self.detect(tx)
                if entry is not None:
                    new.append(entry)
        state = self.state.with_entries(new) if new else self.state
        state, effects = on_block(state, height, txs)
        rebuilt: list[WatchEntry] = []
        if self.rebuild is not None:
            state, effects, rebuilt = self._rebuild_lost(state, height, txs, effects)
        self._persist(new, effects, rebuilt)
        self.state = state
        if any(isinstance(e, BreachDetected | Resolved) for e in effects):
            self.breaches = breach_report(self.db)
        for effect in effects:
            await self._carry_out(effect)
        return effects

    async def _carry_out(self, effect: Effect) -> None:
        if isinstance(effect, BreachDetected):
            self.stats.breaches += 1
            log.warning(
                "%s watcher: BREACH %s: %s confirmed at height %d",
                self.name,
                effect.entry.kind.value,
                effect.entry.trigger_txid[::-1].hex(),
                effect.height,
            )
        elif isinstance(effect, Resolved):
            log.warning(
                "%s watcher: breach %s resolved at height %d by %s (%s)",
                self.name,
                effect.entry.trigger_txid[::-1].hex(),
                effect.height,
                effect.spender[::-1].hex(),
                "our response" if effect.won else "someone else",
            )
        elif isinstance(effect, Broadcast):
            # a burn pays everything to fees: lift the node's absurd-fee guard for it
            burn = effect.entry.kind is EntryKind.LSTOCK_BURN
            await self._send(effect.tx, 0 if burn else None)
        elif isinstance(effect, BroadcastPackage):
            await self._send_package(effect)

    async def _send(self, tx: Transaction, max_fee_rate: int | None = None) -> None:
        try:
            await asyncio.to_thread(self.chain.send_raw_transaction, tx, max_fee_rate)
            self.stats.broadcasts += 1
            log.warning("%s watcher: broadcast response %s", self.name, tx.txid_hex)
        except (RpcError, ChainResponseError) as exc:
            # already in the mempool / already replaced by a higher rung: fine
            log.info("%s watcher: %s not accepted: %s", self.name, tx.txid_hex, exc)

    def _child(self, effect: BroadcastPackage) -> Transaction:
        parent = effect.parent
        anchor_vout = len(parent.outputs) - 1
        anchor = parent.outputs[anchor_vout]
        previous = self._children.get(parent.txid)
        if previous is not None:  # RBF: same wallet coin, higher fee
            coin_outpoint = previous.inputs[1].prevout
            coin_txout = self.chain.get_raw_transaction(coin_outpoint.txid_hex).outputs[
                coin_outpoint.vout
            ]
        else:
            coin = max(self.chain.list_unspent(1), key=lambda u: u.amount_sat)
            coin_outpoint, coin_txout = coin.outpoint, coin.txout
        change = coin_txout.script_pubkey  # back to the wallet coin's own script
        unsigned = cpfp_child(parent, coin_outpoint, coin_txout, change, effect.feerate)
        # both prevouts given: the coin is already spent by our previous child (RBF)
        prevouts = {parent.outpoint(anchor_vout): anchor, coin_outpoint: coin_txout}
        return self.chain.sign_with_wallet(unsigned, prevouts)

    async def _send_package(self, effect: BroadcastPackage) -> None:
        try:
            child = await asyncio.to_thread(self._child, effect)
            in_mempool = effect.parent.txid_hex in await asyncio.to_thread(
                self.chain.get_raw_mempool
            )
            if in_mempool:
                await asyncio.to_thread(self.chain.send_raw_transaction, child)
            else:
                result = await asyncio.to_thread(self.chain.submit_package, [effect.parent, child])
                if not result.success:
                    raise ChainResponseError(f"package refused: {result}")
            self._children[effect.parent.txid] = child
            self.stats.broadcasts += 1
            log.warning(
                "%s watcher: broadcast %s + CPFP child %s at %d sat/kvB",
                self.name,
                effect.parent.txid_hex,
                child.txid_hex,
                effect.feerate.sat_per_kvb,
            )
        except (RpcError, ChainResponseError, ValueError) as exc:
            log.info("%s watcher: package for %s: %s", self.name, effect.parent.txid_hex, exc)


def breach_report(db: Database) -> list[dict[str, Any]]:
    """Every breach seen, for `status`: what, where, and who won the race."""
    return [
        {
            "txid": bytes.fromhex(r["trigger_txid"])[::-1].hex(),
            "kind": r["kind"],
            "label": r["label"],
            "height": r["height"],
            "resolved_height": r["resolved_height"],
            "spender": None if r["spender"] is None else bytes.fromhex(r["spender"])[::-1].hex(),
            "won": None if r["won"] is None else bool(r["won"]),
        }
        for r in db.execute("SELECT * FROM watch_breaches ORDER BY height, trigger_txid")
    ]


def channel_watcher(db: Database, key: SecretKey, chain: BitcoindClient, name: str) -> ChainWatcher:
    """The watcher a daemon runs over its own channels, resumed from its database."""
    detector = ChannelDetector(db, key)
    watcher = ChainWatcher(
        db,
        chain,
        name=name,
        detect=detector,
        start_txids=lambda: fundings(db),
        rebuild=detector.rebuild,
    )
    watcher.load(start_height=-1)
    return watcher


class DaemonWatch:
    """The hook a daemon needs: start/stop its channel watcher, and its control-RPC methods.

    `enabled=False` (`--no-watch`) runs no watcher at all: a client that is not
    home (the scenario tests show what that costs). `dev_tools` adds the
    regtest-only cheating helpers of `node.devtools`.
    """

    def __init__(
        self,
        db: Database,
        key: SecretKey,
        chain: BitcoindClient,
        *,
        name: str,
        datadir: Path,
        enabled: bool = True,
        dev_tools: bool = False,
        towers: Sequence[str] = (),
    ) -> None:
        self.watcher = channel_watcher(db, key, chain, name) if enabled else None
        addresses = [TowerAddress.parse(t) for t in towers]
        self.pusher = TowerPusher(db, key, addresses) if addresses else None
        self._push: asyncio.Task[None] | None = None
        self.key = key
        self.datadir = datadir
        self.dev_tools = dev_tools
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.watcher is not None:
            self._task = asyncio.create_task(self.watcher.run(), name="watcher")
        if self.pusher is not None:
            self._push = asyncio.create_task(self.pusher.run(), name="tower-pusher")

    async def stop(self) -> None:
        for task in (self._task, self._push):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def handlers(self) -> dict[str, Callable[..., Any]]:
        def watch() -> dict[str, Any]:
            out: dict[str, Any] = {"enabled": False, "breaches": []}
            if self.watcher is not None:
                out = {"enabled": True, **self.watcher.summary()}
            if self.pusher is not None:
                out["towers"] = {
                    t: {"hints_sent": n, "last_error": self.pusher.errors[t]}
                    for t, n in self.pusher.sent.items()
                }
            return out

        out: dict[str, Callable[..., Any]] = {"watch": watch}
        if self.dev_tools:
            from .devtools import dev_handlers

            out.update(dev_handlers(self.datadir, self.key))
        return out


def open_readonly(datadir: Path) -> tuple[sqlite3.Connection, SecretKey]:
    """Another daemon's database (read-only, never migrated) and node key, for a tower
    run by the same operator: it watches that daemon's channels from its own process."""
    path = datadir / "node.sqlite3"
    if not path.exists():
        raise FileNotFoundError(f"no daemon database at {path}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=True)
    conn.row_factory = sqlite3.Row
    key = SecretKey.from_hex((datadir / "node_key").read_text().strip())
    return conn, key
