"""The embedded node: kernel-validated mining, wallet, restart and index rebuild."""

from __future__ import annotations

from pathlib import Path

import pytest

from superscalar.bitcoin.block import Block, coinbase_transaction
from superscalar.bitcoin.tx import COIN, TxOut
from superscalar.chain.kernel import BlockRejectedError
from superscalar.chain.node import RegtestNode, block_subsidy

from .chain_support import MINER


def test_mined_blocks_are_the_kernels_active_chain(node: RegtestNode) -> None:
    assert node.kernel.height == node.height == 110
    assert node.index.block(110) is not None
    assert node.index.block(110).hash == node.kernel.block_hash(110)  # type: ignore[union-attr]


def test_wallet_balance_counts_only_coinbases_with_101_confirmations(tmp_path: Path) -> None:
    with RegtestNode(tmp_path / "n") as n:
        n.mine_to_address(101, n.new_address())
        assert n.balance() == 50 * COIN


def test_subsidy_halves_every_150_blocks_on_regtest() -> None:
    assert block_subsidy(149) == 50 * COIN
    assert block_subsidy(150) == 25 * COIN
    assert block_subsidy(150 * 64) == 0


def test_kernel_refuses_a_coinbase_that_pays_too_much_with_its_reason(node: RegtestNode) -> None:
    height = node.height + 1
    coinbase = coinbase_transaction(height, [TxOut(block_subsidy(height) + 1, MINER)])
    block = Block.assemble(
        node.kernel.block_hash(height - 1), node.median_time_past() + 1, [coinbase]
    )
    with pytest.raises(BlockRejectedError) as info:
        node.kernel.process_block(block.serialize())
    assert info.value.reason == "bad-cb-amount"
    assert node.kernel.height == height - 1


def test_payment_is_mined_and_indexed(node: RegtestNode) -> None:
    address = node.new_address()
    tx = node.send_to(node.wallet.scripts[-1], 7 * COIN)
    assert node.transaction(tx.txid).mempool is not None  # type: ignore[union-attr]
    node.mine(1, MINER)
    status = node.transaction(tx.txid)
    assert status is not None and status.height == node.height and status.mempool is None
    assert address.startswith("bcrt1p")


def test_restart_keeps_height_utxos_wallet_and_mempool(tmp_path: Path) -> None:
    with RegtestNode(tmp_path / "n") as n:
        n.mine_to_address(105, n.new_address())
        pending = n.send_to(n.wallet.scripts[0], COIN)
        before = (n.height, n.index.utxo_count(), n.spendable(min_conf=1))
    with RegtestNode(tmp_path / "n") as n:
        assert (n.height, n.index.utxo_count(), n.spendable(min_conf=1)) == before
        assert pending.txid in n.mempool


def test_lost_index_is_rebuilt_from_the_kernel_block_files(tmp_path: Path) -> None:
    with RegtestNode(tmp_path / "n") as n:
        n.mine_to_address(120, n.new_address())
        balance, utxos = n.balance(), n.index.utxo_count()
    for name in ("index.sqlite", "index.sqlite-wal", "index.sqlite-shm"):
        (tmp_path / "n" / name).unlink(missing_ok=True)
    with RegtestNode(tmp_path / "n") as n:
        assert n.height == 120
        assert (n.balance(), n.index.utxo_count()) == (balance, utxos)


def test_a_second_node_cannot_open_a_datadir_in_use(node: RegtestNode) -> None:
    with pytest.raises(RuntimeError):
        RegtestNode(node.datadir)
