"""Watcher benchmarks: how fast a watcher catches up on blocks, and how fast it answers a breach.

Real components throughout: blocks validated by libbitcoinkernel and fetched
over the JSON-RPC loopback socket, a SQLite database, and a response that
passes the full mempool checks. The watcher holds 1,000 entries besides the
one that fires (a client with a long payment history).
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import time
from pathlib import Path
from typing import Any

from superscalar.bitcoin.fees import Feerate
from superscalar.bitcoin.script import P2A_SCRIPT
from superscalar.bitcoin.sighash import taproot_sighash
from superscalar.bitcoin.taproot import TaprootSpendInfo
from superscalar.bitcoin.tx import OutPoint, Transaction, TxIn, TxOut
from superscalar.chain.node import RegtestNode
from superscalar.chain.service import serve_node
from superscalar.crypto import schnorr
from superscalar.crypto.keys import SecretKey
from superscalar.node.watcher import ChainWatcher
from superscalar.store.db import Database
from superscalar.store.schema import DAEMON_MIGRATIONS
from superscalar.watch import EntryKind, WatchEntry

from .chain import Progress, _rate, _spends, prepare_node

__all__ = ["run"]


def _decoys(count: int) -> list[WatchEntry]:
    out = []
    for i in range(count):
        txid = hashlib.sha256(b"decoy %d" % i).digest()
        spend = Transaction(2, (TxIn(OutPoint(txid, 0)),), (TxOut(1_000, P2A_SCRIPT),))
        out.append(WatchEntry(EntryKind.PENALTY, txid, (spend,), 0, 143))
    return out


def _breach_pair(node: RegtestNode) -> tuple[Transaction, Transaction]:
    """A 'cheater's' tx paying a key we hold, and our pre-signed spend of it."""
    key = SecretKey.generate()
    info = TaprootSpendInfo(key.xonly_public_key)
    tweaked = info.tweak_secret_key(key)
    funding = node.wallet.build_payment(
        node.spendable(), [TxOut(200_000, info.script_pubkey)], node.mempool.min_relay,
        node.wallet.new_script(),
    )  # fmt: skip
    vout = next(i for i, o in enumerate(funding.outputs) if o.script_pubkey == info.script_pubkey)
    node.send(funding)
    node.mine(1, P2A_SCRIPT)

    def spend(prev: Transaction, n: int, value: int, dest: bytes) -> Transaction:
        unsigned = Transaction(2, (TxIn(OutPoint(prev.txid, n)),), (TxOut(value, dest),))
        sig = schnorr.sign(tweaked, taproot_sighash(unsigned, 0, [prev.outputs[n]]))
        return unsigned.with_witness(0, [sig])

    cheat = spend(funding, vout, 199_000, info.script_pubkey)
    fee = Feerate.from_sat_per_vb(5).fee_for_vsize(cheat.vsize)
    response = spend(cheat, 0, 199_000 - fee, node.wallet.new_script())
    return cheat, response


def run(quick: bool, progress: Progress | None = None) -> dict[str, Any]:
    say = progress or (lambda _text: None)
    n_blocks, per_block = (100, 5) if quick else (500, 10)
    with (
        tempfile.TemporaryDirectory(prefix="superscalar-bench-watch-") as tmp,
        RegtestNode(Path(tmp) / "node") as node,
    ):
        say("filling blocks")
        prepare_node(node)
        cheat, response = _breach_pair(node)
        spends = _spends(node, n_blocks * per_block)
        start = node.height
        for b in range(n_blocks):
            for tx, _ in spends[b * per_block : (b + 1) * per_block]:
                node.send(tx)
            node.mine(1, P2A_SCRIPT)
        with serve_node(node) as (_, rpc):
            db = Database.open(Path(tmp) / "watch.sqlite3", DAEMON_MIGRATIONS)
            watcher = ChainWatcher(db, rpc, name="bench")
            watcher.load(start_height=start)
            watcher.add_entries(
                [*_decoys(1000), WatchEntry(EntryKind.PENALTY, cheat.txid, (response,), 0, 143)]
            )
            say(f"catching up on {n_blocks} blocks")
            t0 = time.perf_counter()
            scanned = asyncio.run(watcher.catch_up())
            scan_s = time.perf_counter() - t0
            say("answering a breach")
            node.mine_transactions([cheat], P2A_SCRIPT)
            t0 = time.perf_counter()
            asyncio.run(watcher.catch_up())
            answer_ms = (time.perf_counter() - t0) * 1000
            answered = response.txid in node.mempool
            db.close()
            rpc.close()
    return {
        "entries": 1001,
        "catch_up": {
            "blocks": scanned,
            "txs_per_block": per_block + 1,
            "seconds": round(scan_s, 3),
            "blocks_per_s": _rate(scanned, scan_s),
        },
        "breach_block_to_response_in_mempool_ms": round(answer_ms, 1),
        "response_in_mempool": answered,
    }
