"""The embedded regtest node: kernel chainstate + indexes + mempool + wallet.

One `RegtestNode` owns one datadir. Every public method takes the node lock, so
the RPC server's threads (and tests) can call it concurrently. Blocks are
assembled here and validated by the kernel; our index and mempool follow only
after the kernel has connected a block.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from superscalar.bitcoin.address import Network, address_to_script_pubkey
from superscalar.bitcoin.block import Block, coinbase_transaction
from superscalar.bitcoin.cpfp import cpfp_child
from superscalar.bitcoin.fees import Feerate
from superscalar.bitcoin.script import is_p2a
from superscalar.bitcoin.tx import COIN, OutPoint, Transaction, TxOut
from superscalar.chain.index import ChainIndex, Coin, TxLocation
from superscalar.chain.kernel import KernelChain
from superscalar.chain.mempool import (
    COINBASE_MATURITY,
    DEFAULT_MIN_RELAY_FEERATE,
    Mempool,
    MempoolEntry,
    PackageResult,
    TxRejectedError,
)
from superscalar.chain.wallet import Spendable, Wallet

__all__ = ["HALVING_INTERVAL", "RegtestNode", "TxStatus", "block_subsidy"]

HALVING_INTERVAL = 150
"""Regtest halves the subsidy every 150 blocks (mainnet: 210,000)."""
MAX_BLOCK_TX_WEIGHT = 4_000_000 - 8_000  # room for the header and coinbase
WALLET_FEERATE = Feerate(2000)


def block_subsidy(height: int) -> int:
    halvings = height // HALVING_INTERVAL
    return 0 if halvings >= 64 else (50 * COIN) >> halvings


@dataclass(frozen=True, slots=True)
class TxStatus:
    """Where a transaction is: mined at `height` (position `pos`) or in the mempool."""

    tx: Transaction
    height: int | None
    pos: int | None
    mempool: MempoolEntry | None


class RegtestNode:
    """A regtest chain validated by libbitcoinkernel, with a mempool and a wallet."""

    network = Network.REGTEST

    def __init__(
        self,
        datadir: Path | str,
        *,
        min_relay: Feerate = DEFAULT_MIN_RELAY_FEERATE,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.datadir = Path(datadir)
        self.datadir.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.kernel = KernelChain(self.datadir)
        try:
            self.index = ChainIndex(self.datadir / "index.sqlite")
        except BaseException:
            self.kernel.close()
            raise
        # The saved mempool has its own connection without an fsync per commit:
        # it survives a killed process (WAL), and like bitcoind's mempool.dat it
        # may lose its newest entries to a power cut. Blocks keep synchronous=FULL.
        self._mempool_db = sqlite3.connect(
            self.index.path, check_same_thread=False, isolation_level=None
        )
        self._mempool_db.execute("PRAGMA synchronous=NORMAL")
        self._mempool_db.execute(
            "CREATE TABLE IF NOT EXISTS mempool(seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " txid BLOB NOT NULL UNIQUE, raw BLOB NOT NULL)"
        )
        self.index.reconcile(
            self.kernel.height,
            self.kernel.block_hash,
            self.kernel.read_block,
            self.kernel.process_block,
            progress,
        )
        self._mtp_cache: dict[int, int] = {}
        self.mempool = Mempool(self, min_relay)
        self.wallet = self._open_wallet()
        self._restore_mempool()

    def close(self) -> None:
        with self.lock:
            self._wallet_db.close()
            self._mempool_db.close()
            self.index.close()
            self.kernel.close()

    def __enter__(self) -> RegtestNode:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- ChainState (what the mempool reads) --------------------------------------------

    @property
    def height(self) -> int:
        return self.index.height

    def coin(self, outpoint: OutPoint) -> Coin | None:
        return self.index.coin(outpoint)

    def median_time_past(self) -> int:
        return self.median_time_past_at(self.height)

    def median_time_past_at(self, height: int) -> int:
        cached = self._mtp_cache.get(height)
        if cached is None:
            rows = self.index.db.execute(
                "SELECT time FROM blocks WHERE height BETWEEN ? AND ?", (height - 10, height)
            ).fetchall()
            times = sorted(int(r[0]) for r in rows)
            cached = times[len(times) // 2] if times else 0
            if height < self.height:
                self._mtp_cache[height] = cached
        return cached

    def has_transaction(self, txid: bytes) -> bool:
        row = self.index.db.execute("SELECT 1 FROM txs WHERE txid=?", (txid,)).fetchone()
        return row is not None

    # -- mining ---------------------------------------------------------------------------

    def mine(self, count: int, script_pubkey: bytes) -> list[bytes]:
        """Mine `count` blocks paying `script_pubkey`, each validated by the kernel.

        Returns the block hashes (internal order). A block the kernel refuses
        raises `BlockRejectedError` with its reason: that is a bug in block
        assembly or in the mempool's checks, never something to paper over.
        """
        if count < 0:
            raise ValueError("cannot mine a negative number of blocks")
        hashes: list[bytes] = []
        with self.lock:
            for _ in range(count):
                hashes.append(self._mine_one(script_pubkey))
        return hashes

    def mine_transactions(self, txs: Sequence[Transaction], script_pubkey: bytes) -> bytes:
        """Mine one block holding exactly `txs`, bypassing the mempool's policy.

        For proving what consensus alone says (a lock one block early, say):
        the kernel is the only judge. Raises `BlockRejectedError` if it refuses.
        """
        with self.lock:
            spent = [i.prevout for tx in txs for i in tx.inputs]
            fees = 0
            made = {tx.txid: tx for tx in txs}
            for prevout in spent:
                parent = made.get(prevout.txid)
                coin = self.index.coin(prevout)
                if parent is not None and prevout.vout < len(parent.outputs):
                    fees += parent.outputs[prevout.vout].value
                elif coin is not None:
                    fees += coin.output.value
            fees -= sum(tx.total_out for tx in txs)
            return self._mine_one(script_pubkey, list(txs), max(fees, 0))

    def mine_to_address(self, count: int, address: str) -> list[bytes]:
        return self.mine(count, address_to_script_pubkey(address, self.network))

    def _mine_one(
        self, script_pubkey: bytes, chosen: list[Transaction] | None = None, fees: int = 0
    ) -> bytes:
        height = self.height + 1
        prev = self.kernel.block_hash(height - 1)
        if chosen is None:
            txs = self.mempool.select(MAX_BLOCK_TX_WEIGHT)
            fees = sum(self.mempool.entries[tx.txid].fee for tx in txs)
        else:
            txs = chosen
        coinbase = coinbase_transaction(
            height, [TxOut(block_subsidy(height) + fees, script_pubkey)], txs
        )
        block_time = max(int(time.time()), self.median_time_past() + 1)
        block = Block.assemble(prev, block_time, [coinbase, *txs])
        raw = block.serialize()
        self.kernel.process_block(raw)
        self.index.connect(height, block, len(raw))
        self.mempool.block_connected(block.transactions)
        self._persist_mempool([])
        return block.hash

    # -- transactions ---------------------------------------------------------------------

    def send(self, tx: Transaction) -> MempoolEntry:
        """sendrawtransaction: admit one transaction or raise `TxRejectedError`."""
        with self.lock:
            entry = self.mempool.accept(tx)
            self._persist_mempool([entry])
            return entry

    def test_accept(self, txs: Sequence[Transaction]) -> list[MempoolEntry | TxRejectedError]:
        """testmempoolaccept: judge each tx as if the earlier ones had been admitted."""
        with self.lock:
            return self.mempool.test_accept_sequence(txs)

    def submit_package(self, txs: Sequence[Transaction]) -> PackageResult:
        with self.lock:
            result = self.mempool.accept_package(txs)
            self._persist_mempool(list(result.accepted.values()))
            return result

    def cpfp_package(
        self, parent: Transaction, feerate: Feerate = WALLET_FEERATE, parent_fee: int = 0
    ) -> list[Transaction]:
        """[parent, child]: a wallet-paid child on the parent's P2A anchor brings the pair
        to `feerate`."""
        with self.lock:
            coin = max(self.spendable(min_conf=1), key=lambda c: c.output.value)
            change = self.wallet.new_script()
            self._save_wallet_index()
            child = cpfp_child(parent, coin.outpoint, coin.output, change, feerate, parent_fee)
            anchor = parent.outputs[child.inputs[0].prevout.vout]
            return [parent, self.wallet.sign(child, [anchor, coin.output])]

    def submit_with_cpfp(
        self, parent: Transaction, feerate: Feerate = WALLET_FEERATE, parent_fee: int = 0
    ) -> PackageResult:
        """Broadcast a zero-fee parent as a package with a wallet-paid child on its P2A anchor."""
        return self.submit_package(self.cpfp_package(parent, feerate, parent_fee))

    def transaction(self, txid: bytes) -> TxStatus | None:
        with self.lock:
            entry = self.mempool.entries.get(txid)
            if entry is not None:
                return TxStatus(entry.tx, None, None, entry)
            found: TxLocation | None = self.index.transaction(txid)
            if found is None:
                return None
            return TxStatus(found.tx, found.height, found.pos, None)

    def utxo(
        self, outpoint: OutPoint, include_mempool: bool = True
    ) -> tuple[TxOut, int, bool] | None:
        """An unspent output as (output, confirmations, coinbase); 0 confirmations = mempool."""
        with self.lock:
            if include_mempool and outpoint in self.mempool.spends:
                return None
            coin = self.index.coin(outpoint)
            if coin is not None:
                return coin.output, self.height - coin.height + 1, coin.coinbase
            if include_mempool:
                out = self.mempool.output(outpoint)
                if out is not None:
                    return out, 0, False
            return None

    # -- wallet ---------------------------------------------------------------------------

    def _open_wallet(self) -> Wallet:
        """The wallet lives in its own file: the indexes may be rebuilt, the seed may not."""
        self._wallet_db = sqlite3.connect(
            self.datadir / "wallet.sqlite", check_same_thread=False, isolation_level=None
        )
        self._wallet_db.execute("PRAGMA synchronous=FULL")
        self._wallet_db.execute(
            "CREATE TABLE IF NOT EXISTS wallet(key TEXT PRIMARY KEY, value BLOB NOT NULL)"
        )
        os.chmod(self.datadir / "wallet.sqlite", 0o600)
        seed = self._wallet_get("seed")
        if seed is None:
            seed = os.urandom(32)
            self._wallet_set("seed", seed)
        next_index = int.from_bytes(self._wallet_get("next") or b"\x00", "big")
        return Wallet(seed, next_index, self.network)

    def _wallet_get(self, key: str) -> bytes | None:
        row = self._wallet_db.execute("SELECT value FROM wallet WHERE key=?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def _wallet_set(self, key: str, value: bytes) -> None:
        self._wallet_db.execute("INSERT OR REPLACE INTO wallet VALUES(?, ?)", (key, value))

    def _save_wallet_index(self) -> None:
        self._wallet_set("next", self.wallet.next_index.to_bytes(4, "big"))

    def new_address(self) -> str:
        with self.lock:
            script = self.wallet.new_script()
            self._save_wallet_index()
            return self.wallet.address(script)

    def spendable(self, min_conf: int = 0) -> list[Spendable]:
        """Wallet coins that can be spent in the next block (mature; own mempool change too)."""
        with self.lock:
            tip = self.height
            coins: list[Spendable] = []
            for coin in self.index.coins_for_scripts(self.wallet.scripts):
                conf = tip - coin.height + 1
                if coin.coinbase and conf <= COINBASE_MATURITY:  # bitcoind wallet: 101 confs
                    continue
                if conf >= min_conf and coin.outpoint not in self.mempool.spends:
                    coins.append(Spendable(coin.outpoint, coin.output, conf))
            if min_conf == 0:
                for entry in self.mempool:
                    for vout, out in enumerate(entry.tx.outputs):
                        op = OutPoint(entry.txid, vout)
                        if self.wallet.owns(out.script_pubkey) and op not in self.mempool.spends:
                            coins.append(Spendable(op, out, 0))
            return coins

    def balance(self) -> int:
        """Confirmed, mature, not-yet-spent wallet satoshis (bitcoind's getbalance)."""
        return sum(c.output.value for c in self.spendable(min_conf=1))

    def send_to(
        self,
        script_pubkey: bytes,
        amount: int,
        feerate: Feerate = WALLET_FEERATE,
        subtract_fee: bool = False,
    ) -> Transaction:
        """Pay `amount` sat to `script_pubkey` from the wallet and admit it to the mempool."""
        with self.lock:
            change = self.wallet.new_script()
            self._save_wallet_index()
            tx = self.wallet.build_payment(
                self.spendable(), [TxOut(amount, script_pubkey)], feerate, change, subtract_fee
            )
            self.send(tx)
            return tx

    def fund(self, outputs: Sequence[TxOut], feerate: Feerate = WALLET_FEERATE) -> Transaction:
        """fundrawtransaction: add wallet inputs and change to pay `outputs`; unsigned."""
        with self.lock:
            change = self.wallet.new_script()
            self._save_wallet_index()
            tx, _ = self.wallet.fund_payment(self.spendable(), outputs, feerate, change)
            return tx

    def sign_with_wallet(
        self, tx: Transaction, prevouts: Mapping[OutPoint, TxOut] | None = None
    ) -> tuple[Transaction, bool]:
        """signrawtransactionwithwallet: sign the inputs the wallet owns; (tx, complete).

        `prevouts` (bitcoind's `prevtxs`) describes inputs not yet known to the
        node, e.g. the anchor of a zero-fee parent that will go in one package.
        """
        with self.lock:
            spent: list[TxOut] = []
            for txin in tx.inputs:
                found = self.utxo(txin.prevout, include_mempool=True)
                if found is None and prevouts is not None and txin.prevout in prevouts:
                    found = (prevouts[txin.prevout], 0, False)
                if found is None:
                    return tx, False
                spent.append(found[0])
            signed = self.wallet.sign(tx, spent)
            complete = all(  # a P2A anchor is spent with an empty witness
                txin.witness or is_p2a(out.script_pubkey)
                for txin, out in zip(signed.inputs, spent, strict=True)
            )
            return signed, complete

    # -- mempool persistence ----------------------------------------------------------------

    def _persist_mempool(self, entries: Sequence[MempoolEntry]) -> None:
        """Keep the saved mempool in step: drop what left (mined, replaced), add `entries`."""
        gone, self.mempool.removed = self.mempool.removed, []
        self._mempool_db.executemany("DELETE FROM mempool WHERE txid=?", ((t,) for t in gone))
        self._mempool_db.executemany(
            "INSERT OR IGNORE INTO mempool(txid, raw) VALUES(?, ?)",
            ((e.txid, e.tx.to_bytes()) for e in entries),
        )

    def _restore_mempool(self) -> None:
        """Re-admit the saved mempool (as bitcoind's mempool.dat); drop what no longer fits."""
        rows = self._mempool_db.execute("SELECT txid, raw FROM mempool ORDER BY seq").fetchall()
        txs = [Transaction.from_bytes(bytes(raw)) for _, raw in rows]
        dropped: list[bytes] = []
        held: list[Transaction] = []
        for tx in txs:
            try:
                self.mempool.accept(tx)
            except TxRejectedError:
                held.append(tx)
        for tx in held:  # zero-fee parents come back with their child as a package
            if tx.txid in self.mempool:
                continue
            children = [c for c in txs if any(i.prevout.txid == tx.txid for i in c.inputs)]
            if not children or not self.mempool.accept_package([tx, children[0]]).ok:
                dropped.append(tx.txid)
        self._mempool_db.executemany("DELETE FROM mempool WHERE txid=?", ((t,) for t in dropped))
