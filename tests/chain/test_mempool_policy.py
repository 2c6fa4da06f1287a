"""Mempool acceptance and the consensus locks behind it, each proven by the kernel.

For every lock: the mempool refuses the spend one block early, a block holding
it one block early is refused by the kernel itself, and at the lock height the
spend is admitted and mined.
"""

from __future__ import annotations

import pytest

from superscalar.bitcoin.script import csv_delay_leaf_script, p2a_script, timeout_leaf_script
from superscalar.bitcoin.taproot import TapLeaf, TaprootSpendInfo
from superscalar.bitcoin.tx import COIN, OutPoint, Transaction, TxIn, TxOut
from superscalar.chain.kernel import BlockRejectedError
from superscalar.chain.mempool import RejectKind, TxRejectedError
from superscalar.chain.node import RegtestNode
from superscalar.crypto.keys import SecretKey

from .chain_support import MINER, fund, keypath_spend, scriptpath_spend

OWNER = SecretKey.from_int(0xA11CE)
INTERNAL = SecretKey.from_int(0xB0B)


def _dest(node: RegtestNode) -> tuple[TxOut, ...]:
    return (TxOut(COIN - 1000, node.wallet.scripts[0]),)


def _assert_kernel_refuses(node: RegtestNode, tx: Transaction) -> None:
    height = node.height
    with pytest.raises(BlockRejectedError) as info:
        node.mine_transactions([tx], MINER)
    assert info.value.reason == "bad-txns-nonfinal"
    assert node.height == height


def test_keypath_spend_is_admitted_and_mined(node: RegtestNode) -> None:
    info = TaprootSpendInfo(OWNER.xonly_public_key)
    prevout, spent = fund(node, info.script_pubkey, COIN)
    tx = keypath_spend(info, OWNER, prevout, spent, _dest(node))
    node.send(tx)
    node.mine(1, MINER)
    assert node.transaction(tx.txid).height == node.height  # type: ignore[union-attr]


def test_bad_signature_is_refused_as_a_script_failure(node: RegtestNode) -> None:
    info = TaprootSpendInfo(OWNER.xonly_public_key)
    prevout, spent = fund(node, info.script_pubkey, COIN)
    wrong_amount = TxOut(COIN + 1, spent.script_pubkey)  # signs a different sighash
    tx = keypath_spend(info, OWNER, prevout, wrong_amount, _dest(node))
    with pytest.raises(TxRejectedError) as exc:
        node.send(tx)
    assert exc.value.reason.startswith("mandatory-script-verify-flag-failed")


def test_cltv_script_path_is_refused_one_block_early_and_accepted_at_its_height(
    node: RegtestNode,
) -> None:
    lock = node.height + 6
    leaf = TapLeaf(timeout_leaf_script(lock, OWNER.xonly_public_key))
    info = TaprootSpendInfo(INTERNAL.xonly_public_key, leaf)
    prevout, spent = fund(node, info.script_pubkey, COIN)
    tx = scriptpath_spend(
        info, 0, OWNER, prevout, spent, _dest(node), sequence=0xFFFFFFFE, locktime=lock
    )
    node.mine(lock - 1 - node.height, MINER)  # next block: `lock`, and nLockTime must be below it
    with pytest.raises(TxRejectedError) as exc:
        node.send(tx)
    assert exc.value.reason == "non-final"
    _assert_kernel_refuses(node, tx)
    node.mine(1, MINER)  # next block: lock + 1
    node.send(tx)
    node.mine(1, MINER)
    assert node.transaction(tx.txid).height == lock + 1  # type: ignore[union-attr]


def test_csv_spend_is_refused_one_block_early_and_accepted_at_its_delay(
    node: RegtestNode,
) -> None:
    delay = 10
    leaf = TapLeaf(csv_delay_leaf_script(delay, OWNER.xonly_public_key))
    info = TaprootSpendInfo(INTERNAL.xonly_public_key, leaf)
    prevout, spent = fund(node, info.script_pubkey, COIN)
    confirmed_at = node.height
    tx = scriptpath_spend(info, 0, OWNER, prevout, spent, _dest(node), sequence=delay, locktime=0)
    node.mine(
        delay - 2, MINER
    )  # the next block would give the coin delay - 1 confirmations... early
    assert node.height + 1 == confirmed_at + delay - 1
    with pytest.raises(TxRejectedError) as exc:
        node.send(tx)
    assert exc.value.reason == "non-BIP68-final"
    _assert_kernel_refuses(node, tx)
    node.mine(1, MINER)
    node.send(tx)
    node.mine(1, MINER)
    assert node.transaction(tx.txid).height == confirmed_at + delay  # type: ignore[union-attr]


def test_spending_a_missing_output_is_missing_inputs(node: RegtestNode) -> None:
    info = TaprootSpendInfo(OWNER.xonly_public_key)
    nowhere = OutPoint(b"\x11" * 32, 0)
    tx = keypath_spend(info, OWNER, nowhere, TxOut(COIN, info.script_pubkey), _dest(node))
    with pytest.raises(TxRejectedError) as exc:
        node.send(tx)
    assert exc.value.kind is RejectKind.MISSING_INPUTS


def test_fee_below_the_minimum_relay_fee_is_refused(node: RegtestNode) -> None:
    info = TaprootSpendInfo(OWNER.xonly_public_key)
    prevout, spent = fund(node, info.script_pubkey, COIN)
    tx = keypath_spend(info, OWNER, prevout, spent, (TxOut(COIN - 50, node.wallet.scripts[0]),))
    with pytest.raises(TxRejectedError) as exc:
        node.send(tx)
    assert exc.value.reason == "min relay fee not met"
    assert exc.value.detail == f"50 < {tx.vsize}"


def test_immature_coinbase_spend_is_refused(node: RegtestNode) -> None:
    coinbase = node.index.transaction(node.index.block_txids(node.height)[0])
    assert coinbase is not None
    txid = coinbase.tx.txid
    tx = node.wallet.sign(
        Transaction(2, (TxIn(OutPoint(txid, 0)),), (TxOut(COIN, node.wallet.scripts[0]),)),
        [coinbase.tx.outputs[0]],
    )
    with pytest.raises(TxRejectedError) as exc:
        node.send(tx)
    assert exc.value.reason == "bad-txns-premature-spend-of-coinbase"


def _zero_fee_parent(node: RegtestNode) -> tuple[Transaction, TxOut]:
    info = TaprootSpendInfo(OWNER.xonly_public_key)
    prevout, spent = fund(node, info.script_pubkey, COIN)
    parent = keypath_spend(
        info,
        OWNER,
        prevout,
        spent,
        (TxOut(COIN, node.wallet.scripts[0]), TxOut(0, p2a_script())),
        version=3,
    )
    return parent, parent.outputs[1]


def _anchor_child(node: RegtestNode, parent: Transaction, fee: int) -> Transaction:
    coin = max(node.spendable(min_conf=1), key=lambda c: c.output.value)
    unsigned = Transaction(
        3,
        (TxIn(OutPoint(parent.txid, 1)), TxIn(coin.outpoint)),
        (TxOut(coin.output.value - fee, node.wallet.scripts[0]),),
    )
    return node.wallet.sign(unsigned, [parent.outputs[1], coin.output])


def test_zero_fee_parent_alone_is_refused(node: RegtestNode) -> None:
    parent, _ = _zero_fee_parent(node)
    with pytest.raises(TxRejectedError):
        node.send(parent)


def test_zero_fee_parent_with_p2a_child_is_accepted_as_a_package_and_mined(
    node: RegtestNode,
) -> None:
    parent, _ = _zero_fee_parent(node)
    child = _anchor_child(node, parent, fee=1000)
    result = node.submit_package([parent, child])
    assert result.ok, result.errors
    assert set(result.accepted) == {parent.wtxid, child.wtxid}
    node.mine(1, MINER)
    assert node.transaction(parent.txid).height == node.height  # type: ignore[union-attr]
    assert node.transaction(child.txid).height == node.height  # type: ignore[union-attr]


def test_package_whose_child_pays_too_little_admits_nothing(node: RegtestNode) -> None:
    parent, _ = _zero_fee_parent(node)
    child = _anchor_child(node, parent, fee=100)
    result = node.submit_package([parent, child])
    assert not result.ok
    assert parent.txid not in node.mempool and child.txid not in node.mempool


def test_replacement_paying_more_evicts_the_original(node: RegtestNode) -> None:
    info = TaprootSpendInfo(OWNER.xonly_public_key)
    prevout, spent = fund(node, info.script_pubkey, COIN)
    first = keypath_spend(info, OWNER, prevout, spent, (TxOut(COIN - 1000, info.script_pubkey),))
    node.send(first)
    better = keypath_spend(info, OWNER, prevout, spent, (TxOut(COIN - 2000, info.script_pubkey),))
    node.send(better)
    assert better.txid in node.mempool and first.txid not in node.mempool


def test_replacement_without_enough_extra_fee_is_refused(node: RegtestNode) -> None:
    info = TaprootSpendInfo(OWNER.xonly_public_key)
    prevout, spent = fund(node, info.script_pubkey, COIN)
    node.send(keypath_spend(info, OWNER, prevout, spent, (TxOut(COIN - 1000, info.script_pubkey),)))
    stingy = keypath_spend(info, OWNER, prevout, spent, (TxOut(COIN - 1050, info.script_pubkey),))
    with pytest.raises(TxRejectedError) as exc:
        node.send(stingy)
    assert exc.value.reason == "insufficient fee"
    assert stingy.txid not in node.mempool


def test_cpfp_child_can_be_rebumped_by_a_richer_child(node: RegtestNode) -> None:
    parent, _ = _zero_fee_parent(node)
    first = _anchor_child(node, parent, fee=1000)
    assert node.submit_package([parent, first]).ok
    richer = _anchor_child(node, parent, fee=3000)
    result = node.submit_package([parent, richer])
    assert result.ok, result.errors
    assert richer.txid in node.mempool and first.txid not in node.mempool
    node.mine(1, MINER)
    assert node.transaction(richer.txid).height == node.height  # type: ignore[union-attr]


def test_replaced_transaction_does_not_come_back_after_restart(node: RegtestNode) -> None:
    info = TaprootSpendInfo(OWNER.xonly_public_key)
    prevout, spent = fund(node, info.script_pubkey, COIN)
    first = keypath_spend(info, OWNER, prevout, spent, (TxOut(COIN - 1000, info.script_pubkey),))
    node.send(first)
    better = keypath_spend(info, OWNER, prevout, spent, (TxOut(COIN - 3000, info.script_pubkey),))
    node.send(better)
    node.close()
    with RegtestNode(node.datadir) as again:
        assert better.txid in again.mempool and first.txid not in again.mempool
