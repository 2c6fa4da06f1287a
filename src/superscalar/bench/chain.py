"""Chain benchmarks: the embedded node's block, transaction and RPC throughput.

All figures go through the real components: blocks are validated and connected
by libbitcoinkernel, transactions pass the full mempool checks (kernel script
verification included), RPC calls cross a loopback HTTP socket.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from superscalar.bitcoin.script import P2A_SCRIPT
from superscalar.bitcoin.sighash import taproot_sighash
from superscalar.bitcoin.taproot import TaprootSpendInfo
from superscalar.bitcoin.tx import OutPoint, Transaction, TxIn, TxOut
from superscalar.chain.consensus import verify_transaction
from superscalar.chain.node import RegtestNode
from superscalar.crypto import schnorr
from superscalar.crypto.keys import SecretKey

Progress = Callable[[str], None]


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else float("inf")


def prepare_node(node: RegtestNode) -> None:
    """A chain whose wallet holds 20 mature coinbases (1,000 BTC) for funding bench txs."""
    node.mine(101, P2A_SCRIPT)
    node.mine(20, node.wallet.new_script())
    node.mine(100, P2A_SCRIPT)


def _blocks(node: RegtestNode, count: int) -> dict[str, Any]:
    start = time.perf_counter()
    node.mine(count, P2A_SCRIPT)
    elapsed = time.perf_counter() - start
    return {"blocks": count, "seconds": round(elapsed, 3), "blocks_per_s": _rate(count, elapsed)}


def _spends(node: RegtestNode, count: int) -> list[tuple[Transaction, TxOut]]:
    """`count` signed one-in-one-out taproot key-path spends of fresh outputs."""
    key = SecretKey.generate()
    info = TaprootSpendInfo(key.xonly_public_key)
    tweaked = info.tweak_secret_key(key)
    value = 100_000
    fanout: list[Transaction] = []
    for first in range(0, count, 500):
        outs = [TxOut(value, info.script_pubkey)] * min(500, count - first)
        tx = node.wallet.build_payment(
            node.spendable(), outs, node.mempool.min_relay, node.wallet.new_script()
        )
        node.send(tx)
        fanout.append(tx)
    node.mine(1, P2A_SCRIPT)
    spends: list[tuple[Transaction, TxOut]] = []
    pay = TxOut(value - 200, info.script_pubkey)
    for tx in fanout:
        for vout, out in enumerate(tx.outputs):
            if out.script_pubkey != info.script_pubkey:
                continue
            unsigned = Transaction(2, (TxIn(OutPoint(tx.txid, vout)),), (pay,))
            sig = schnorr.sign(tweaked, taproot_sighash(unsigned, 0, [out]))
            spends.append((unsigned.with_witness(0, [sig]), out))
    return spends


def _transactions(node: RegtestNode, count: int) -> dict[str, Any]:
    spends = _spends(node, count)
    start = time.perf_counter()
    for tx, out in spends:
        verify_transaction(tx, [out])
    script_s = time.perf_counter() - start
    start = time.perf_counter()
    for tx, _ in spends:
        node.send(tx)
    accept_s = time.perf_counter() - start
    start = time.perf_counter()
    node.mine(1, P2A_SCRIPT)
    block_s = time.perf_counter() - start
    return {
        "transactions": len(spends),
        "kernel_script_verify_per_s": _rate(len(spends), script_s),
        "mempool_accept_per_s": _rate(len(spends), accept_s),
        "block_with_all_seconds": round(block_s, 3),
        "block_validation_tx_per_s": _rate(len(spends), block_s),
    }


def _rpc(node: RegtestNode, calls: int) -> dict[str, Any]:
    from superscalar.chain.service import serve_node

    with serve_node(node) as (_server, client):
        client.get_block_count()
        start = time.perf_counter()
        for _ in range(calls):
            client.get_block_count()
        elapsed = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(calls // 4):
            client.get_blockchain_info()
        info_s = time.perf_counter() - start
    return {
        "getblockcount_round_trips_per_s": _rate(calls, elapsed),
        "getblockchaininfo_per_s": _rate(calls // 4, info_s),
    }


def run(quick: bool, progress: Progress | None = None) -> dict[str, Any]:
    say = progress or (lambda _text: None)
    with (
        tempfile.TemporaryDirectory(prefix="superscalar-bench-chain-") as tmp,
        RegtestNode(Path(tmp) / "node") as node,
    ):
        say("mining blocks")
        prepare_node(node)
        blocks = _blocks(node, 200 if quick else 1000)
        say("validating taproot spends")
        txs = _transactions(node, 200 if quick else 2000)
        say("RPC round trips")
        rpc = _rpc(node, 300 if quick else 3000)
    return {"blocks": blocks, "transactions": txs, "rpc": rpc}
