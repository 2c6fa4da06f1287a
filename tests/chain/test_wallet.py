"""The node's wallet: exact fees at any size, change rules, insufficient funds."""

from __future__ import annotations

import pytest

from superscalar.bitcoin.fees import Feerate
from superscalar.bitcoin.tx import COIN, TxOut
from superscalar.chain.node import RegtestNode
from superscalar.chain.wallet import InsufficientFundsError

from .chain_support import MINER


@pytest.mark.parametrize("outputs", [1, 2, 300])
def test_payment_fee_is_exactly_the_feerate_times_its_vsize(
    node: RegtestNode, outputs: int
) -> None:
    rate = Feerate(1000)
    pay = [TxOut(100_000, MINER)] * outputs
    tx = node.wallet.build_payment(node.spendable(), pay, rate, node.wallet.new_script())
    spent = sum(node.utxo(i.prevout)[0].value for i in tx.inputs)  # type: ignore[index]
    fee = spent - tx.total_out
    assert fee == rate.fee_for_vsize(tx.vsize)
    node.send(tx)  # the mempool's minimum relay fee is met exactly


def test_change_below_dust_goes_to_the_fee(node: RegtestNode) -> None:
    coin = max(node.spendable(), key=lambda c: c.output.value)
    rate = Feerate(1000)
    almost_all = coin.output.value - 200  # leaves less than fee + dust for change
    tx = node.wallet.build_payment(
        [coin], [TxOut(almost_all - 200, MINER)], rate, node.wallet.new_script()
    )
    assert len(tx.outputs) == 1


def test_subtract_fee_from_amount_pays_the_fee_from_the_output(node: RegtestNode) -> None:
    coin = max(node.spendable(), key=lambda c: c.output.value)
    tx = node.wallet.build_payment(
        [coin],
        [TxOut(coin.output.value, MINER)],
        Feerate(2000),
        node.wallet.new_script(),
        subtract_fee=True,
    )
    assert tx.total_out + Feerate(2000).fee_for_vsize(tx.vsize) == coin.output.value


def test_paying_more_than_the_wallet_holds_is_insufficient_funds(node: RegtestNode) -> None:
    with pytest.raises(InsufficientFundsError):
        node.send_to(MINER, 10_000 * COIN)
