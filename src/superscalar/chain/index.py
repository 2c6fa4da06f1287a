"""The node's own SQLite indexes: blocks, transactions (txindex) and the UTXO set.

The kernel has no UTXO lookup API, so we keep one. It is derived data: each
block is applied in one SQLite transaction after the kernel connected it, and
`reconcile` rebuilds whatever is missing or ahead from the kernel's block files
after a crash or if the database is lost.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from superscalar.bitcoin.block import Block
from superscalar.bitcoin.script import Op
from superscalar.bitcoin.tx import OutPoint, Transaction, TxOut

__all__ = ["BlockRecord", "ChainIndex", "Coin", "TxLocation"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS blocks(
    height INTEGER PRIMARY KEY, hash BLOB NOT NULL UNIQUE, time INTEGER NOT NULL,
    ntx INTEGER NOT NULL, size INTEGER NOT NULL, weight INTEGER NOT NULL, raw BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS txs(
    txid BLOB PRIMARY KEY, height INTEGER NOT NULL, pos INTEGER NOT NULL,
    raw BLOB NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS txs_height ON txs(height, pos);
CREATE TABLE IF NOT EXISTS utxos(
    txid BLOB NOT NULL, vout INTEGER NOT NULL, value INTEGER NOT NULL,
    script BLOB NOT NULL, height INTEGER NOT NULL, coinbase INTEGER NOT NULL,
    PRIMARY KEY(txid, vout)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS utxos_script ON utxos(script);
"""


@dataclass(frozen=True, slots=True)
class Coin:
    """An unspent output as the chain knows it (height of the block that made it)."""

    outpoint: OutPoint
    output: TxOut
    height: int
    coinbase: bool


@dataclass(frozen=True, slots=True)
class BlockRecord:
    height: int
    hash: bytes
    time: int
    ntx: int
    size: int
    weight: int


@dataclass(frozen=True, slots=True)
class TxLocation:
    tx: Transaction
    height: int
    pos: int


def _unspendable(script: bytes) -> bool:
    return bool(script) and script[0] == Op.OP_RETURN


class ChainIndex:
    """Blocks, txindex and UTXO set in one SQLite file (WAL, synchronous=FULL)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)
        row = self.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None:
            self.db.execute("INSERT INTO meta VALUES('schema', ?)", (SCHEMA_VERSION,))
        elif int(row[0]) != SCHEMA_VERSION:
            raise RuntimeError(f"{self.path}: index schema {row[0]} is not {SCHEMA_VERSION}")

    def close(self) -> None:
        self.db.close()

    # -- meta ----------------------------------------------------------------------

    def get_meta(self, key: str) -> bytes | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def set_meta(self, key: str, value: bytes) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES(?, ?)", (key, value))

    # -- blocks --------------------------------------------------------------------

    @property
    def height(self) -> int:
        """Height of the last indexed block, -1 when empty."""
        row = self.db.execute("SELECT MAX(height) FROM blocks").fetchone()
        return -1 if row[0] is None else int(row[0])

    def block(self, height: int) -> BlockRecord | None:
        row = self.db.execute(
            "SELECT height, hash, time, ntx, size, weight FROM blocks WHERE height=?", (height,)
        ).fetchone()
        return None if row is None else BlockRecord(row[0], bytes(row[1]), *row[2:])

    def block_by_hash(self, block_hash: bytes) -> BlockRecord | None:
        row = self.db.execute(
            "SELECT height, hash, time, ntx, size, weight FROM blocks WHERE hash=?", (block_hash,)
        ).fetchone()
        return None if row is None else BlockRecord(row[0], bytes(row[1]), *row[2:])

    def raw_block(self, height: int) -> bytes | None:
        row = self.db.execute("SELECT raw FROM blocks WHERE height=?", (height,)).fetchone()
        return None if row is None else bytes(row[0])

    def block_txids(self, height: int) -> list[bytes]:
        rows = self.db.execute("SELECT txid FROM txs WHERE height=? ORDER BY pos", (height,))
        return [bytes(r[0]) for r in rows]

    # -- transactions and coins ----------------------------------------------------

    def transaction(self, txid: bytes) -> TxLocation | None:
        row = self.db.execute("SELECT raw, height, pos FROM txs WHERE txid=?", (txid,)).fetchone()
        if row is None:
            return None
        return TxLocation(Transaction.from_bytes(bytes(row[0])), int(row[1]), int(row[2]))

    def coin(self, outpoint: OutPoint) -> Coin | None:
        row = self.db.execute(
            "SELECT value, script, height, coinbase FROM utxos WHERE txid=? AND vout=?",
            (outpoint.txid, outpoint.vout),
        ).fetchone()
        if row is None:
            return None
        return Coin(outpoint, TxOut(int(row[0]), bytes(row[1])), int(row[2]), bool(row[3]))

    def coins_for_scripts(self, scripts: Iterable[bytes]) -> list[Coin]:
        out: list[Coin] = []
        for script in scripts:
            rows = self.db.execute(
                "SELECT txid, vout, value, height, coinbase FROM utxos WHERE script=?", (script,)
            )
            for txid, vout, value, height, coinbase in rows:
                out.append(
                    Coin(OutPoint(bytes(txid), vout), TxOut(value, script), height, bool(coinbase))
                )
        return out

    def utxo_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM utxos").fetchone()[0])

    # -- applying blocks -----------------------------------------------------------

    def connect(self, height: int, block: Block, size: int) -> None:
        """Apply a block the kernel has connected: one atomic SQLite transaction."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT INTO blocks VALUES(?, ?, ?, ?, ?, ?, ?)",
                (
                    height,
                    block.hash,
                    block.header.time,
                    len(block.transactions),
                    size,
                    block.weight,
                    block.serialize(),
                ),
            )
            db.executemany(
                "INSERT OR REPLACE INTO txs VALUES(?, ?, ?, ?)",
                (
                    (tx.txid, height, pos, tx.to_bytes())
                    for pos, tx in enumerate(block.transactions)
                ),
            )
            spent = [
                (txin.prevout.txid, txin.prevout.vout)
                for tx in block.transactions
                if not tx.is_coinbase
                for txin in tx.inputs
            ]
            db.executemany("DELETE FROM utxos WHERE txid=? AND vout=?", spent)
            if height > 0:  # the genesis coinbase is not spendable
                db.executemany(
                    "INSERT OR REPLACE INTO utxos VALUES(?, ?, ?, ?, ?, ?)",
                    self._new_coins(height, block.transactions),
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    @staticmethod
    def _new_coins(
        height: int, txs: Iterable[Transaction]
    ) -> Iterator[tuple[bytes, int, int, bytes, int, int]]:
        for tx in txs:
            coinbase = int(tx.is_coinbase)
            for vout, out in enumerate(tx.outputs):
                if not _unspendable(out.script_pubkey):
                    yield (tx.txid, vout, out.value, out.script_pubkey, height, coinbase)

    def wipe(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("DELETE FROM blocks")
        self.db.execute("DELETE FROM txs")
        self.db.execute("DELETE FROM utxos")
        self.db.execute("COMMIT")

    def reconcile(
        self,
        kernel_height: int,
        kernel_hash: Callable[[int], bytes],
        read_block: Callable[[int], bytes],
        replay: Callable[[bytes], None],
        progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Bring the kernel and the index to the same chain; returns blocks moved.

        After a crash the kernel may have lost blocks it had not flushed while
        the index (committed after each connect) still has them: those are fed
        back to the kernel with `replay`. If the index is behind, it catches up
        from the kernel's block files. If the two disagree about history, the
        kernel is the truth and the index is rebuilt from genesis.
        """
        mine = self.height
        moved = 0
        if mine > kernel_height:
            record = self.block(kernel_height)
            if record is not None and record.hash == kernel_hash(kernel_height):
                for height in range(kernel_height + 1, mine + 1):
                    raw = self.raw_block(height)
                    assert raw is not None
                    replay(raw)
                    moved += 1
                    if progress is not None:
                        progress(height, mine)
                return moved
        if mine >= 0:
            record = self.block(min(mine, kernel_height))
            if mine > kernel_height or record is None or record.hash != kernel_hash(record.height):
                self.wipe()
                mine = -1
        for height in range(mine + 1, kernel_height + 1):
            raw = read_block(height)
            self.connect(height, Block.from_bytes(raw), len(raw))
            moved += 1
            if progress is not None:
                progress(height, kernel_height)
        return moved
