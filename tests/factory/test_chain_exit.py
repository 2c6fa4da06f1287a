"""Factory transactions on the embedded regtest chain: mined by the kernel at the right height.

Each test opens a real factory (funding tx from the node's wallet), then drives
one way out: a unilateral exit node by node with CPFP on the anchors, DW
ordering of two states, the LSP's CLTV recovery, an L-stock burn, the
cooperative close and the distribution tx. Where a lock applies, the
transaction is shown to be refused one block early — by the mempool and, for
consensus, by the kernel itself when forced into a block.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from superscalar.bitcoin.fees import Feerate
from superscalar.bitcoin.script import P2A_SCRIPT, p2tr_script
from superscalar.bitcoin.tx import OutPoint, Transaction, TxOut
from superscalar.chain.kernel import BlockRejectedError
from superscalar.chain.mempool import TxRejectedError
from superscalar.chain.node import RegtestNode
from superscalar.factory import (
    FactoryTree,
    LStockSecrets,
    SignedTree,
    SigningPlan,
    TreeOutput,
    TxKind,
    build_shape,
    cooperative_close,
    distribution_tx,
    funding_output_ref,
    lstock_burn_tx,
    lstock_output_ref,
    onchain_node_outputs,
    run_ceremony,
    sign_tree,
    timeout_recovery_tx,
    tx_output_ref,
    unilateral_exit,
    verify_burn_secret,
)
from superscalar.factory.outputs import timeout_output

from .helpers import LSTOCK_SEED, initial_state, keys_for, make_params, make_spec, secret

MINER = P2A_SCRIPT  # coinbase destination nobody needs to spend
FEERATE = Feerate.from_sat_per_vb(2)
LSP_SWEEP = p2tr_script(secret(0).xonly_public_key)


def open_factory(node: RegtestNode, n: int, cltv_in: int = 300, anchor: int = 240) -> SignedTree:
    """Fund the factory's N+1-of-N+1 output from the wallet, then build and sign the tree."""
    params = make_params(cltv=node.height + cltv_in, anchor=anchor)
    draft = make_spec(n, params)
    keys = [draft.lsp, *(c.key for c in draft.clients)]
    script = timeout_output(keys, draft.lsp.xonly(), params.cltv_timeout).script_pubkey
    funding_tx = node.send_to(script, draft.funding_amount)
    node.mine(1, MINER)
    vout = next(i for i, o in enumerate(funding_tx.outputs) if o.script_pubkey == script)
    shape = build_shape(replace(draft, funding_outpoint=OutPoint(funding_tx.txid, vout)))
    tree = FactoryTree.build(shape, initial_state(shape))
    assert tree.funding_txout == funding_tx.outputs[vout]
    return sign_tree(tree, keys_for(n))


def confirmed(node: RegtestNode, tx: Transaction) -> bool:
    status = node.transaction(tx.txid)
    return status is not None and status.height is not None


@pytest.mark.parametrize("anchor", [240, 0], ids=["anchor-240", "ephemeral-anchor"])
def test_unilateral_exit_confirms_node_by_node_each_at_its_relative_lock(
    node: RegtestNode, anchor: int
) -> None:
    signed = open_factory(node, 4, anchor=anchor)
    path = unilateral_exit(signed, 2)
    for step in path.steps:
        if step.relative_delay:
            node.mine(step.relative_delay - 2, MINER)
            early = node.submit_with_cpfp(step.tx, FEERATE)
            assert not early.ok
            assert "non-BIP68-final" in str(early.errors[step.tx.wtxid])
            node.mine(1, MINER)
        result = node.submit_with_cpfp(step.tx, FEERATE)
        assert result.ok, result
        node.mine(1, MINER)
        assert confirmed(node, step.tx)
    assert node.utxo(path.channel_outpoint) == (path.channel_txout, 1, False)


def _advanced_leaf(signed: SignedTree) -> SignedTree:
    tree = signed.tree
    adv = tree.state.odometer.advance_leaf(tree.shape, 0)
    secrets = LStockSecrets(LSTOCK_SEED)
    points = [secrets.point(leaf, g) for leaf, g in enumerate(adv.after.generations)]
    new_tree = tree.with_state(tree.state.advanced(adv, points))
    plan = SigningPlan.for_tree(new_tree, adv.resign_txs)
    result = run_ceremony(plan, {p: secret(p) for p in plan.participants})
    return signed.updated(new_tree, result.signatures)


def test_newer_dw_state_confirms_before_the_older_one_can(node: RegtestNode) -> None:
    old = open_factory(node, 2)  # one node: kickoff, then the leaf state
    new = _advanced_leaf(old)
    old_state, new_state = old.signed_tx(1), new.signed_tx(1)
    assert (old_state.inputs[0].sequence, new_state.inputs[0].sequence) == (30, 20)
    assert node.submit_with_cpfp(old.signed_tx(0), FEERATE).ok
    node.mine(1, MINER)
    node.mine(20 - 1, MINER)  # the newer state is final for the next block, the older is not
    assert isinstance(node.test_accept([old_state])[0], TxRejectedError)
    with pytest.raises(BlockRejectedError) as early:
        node.mine_transactions([old_state], MINER)
    assert early.value.reason == "bad-txns-nonfinal"
    node.mine_transactions([new_state], MINER)
    assert confirmed(node, new_state)
    node.mine(10, MINER)  # the old state's lock has passed, but its input is gone
    with pytest.raises(BlockRejectedError) as late:
        node.mine_transactions([old_state], MINER)
    assert late.value.reason == "bad-txns-inputs-missingorspent"


def test_lsp_recovers_the_funding_output_after_the_cltv_and_not_before(
    node: RegtestNode,
) -> None:
    signed = open_factory(node, 4, cltv_in=12)
    cltv = signed.tree.shape.params.cltv_timeout
    tx = timeout_recovery_tx([funding_output_ref(signed.tree)], cltv, secret(0), LSP_SWEEP, FEERATE)
    node.mine(cltv - 1 - node.height, MINER)  # next block is at height cltv: still locked
    with pytest.raises(TxRejectedError, match="non-final"):
        node.send(tx)
    with pytest.raises(BlockRejectedError) as early:
        node.mine_transactions([tx], MINER)
    assert early.value.reason == "bad-txns-nonfinal"
    node.mine(1, MINER)
    node.send(tx)
    node.mine(1, MINER)
    assert confirmed(node, tx)


def test_superseded_leaf_state_on_chain_has_its_lstock_burnt(node: RegtestNode) -> None:
    old = open_factory(node, 2)
    _advanced_leaf(old)  # clients now hold generation 0's secret...
    revealed = LStockSecrets(LSTOCK_SEED).secret(0, 0)
    # ...and the LSP publishes the superseded state anyway, once its lock allows.
    assert node.submit_with_cpfp(old.signed_tx(0), FEERATE).ok
    node.mine(30, MINER)
    assert node.submit_with_cpfp(old.signed_tx(1), FEERATE).ok
    node.mine(1, MINER)
    ref = lstock_output_ref(old.tree, 0)
    burn = lstock_burn_tx(ref, verify_burn_secret(old.tree.state.lstock_points[0], revealed))
    node.send(burn)
    node.mine(1, MINER)
    assert confirmed(node, burn)
    assert node.utxo(ref.outpoint) is None


def test_cooperative_close_confirms_paying_everyone(node: RegtestNode) -> None:
    signed = open_factory(node, 4)
    payouts = [TxOut(120_000, p2tr_script(secret(c + 1).xonly_public_key)) for c in range(4)]
    close = cooperative_close(signed.tree.scripts, payouts, LSP_SWEEP, FEERATE)
    result = run_ceremony(SigningPlan([close.session]), keys_for(4))
    tx = close.signed(result.signatures[0])
    node.send(tx)
    node.mine(1, MINER)
    assert confirmed(node, tx)


def test_distribution_tx_confirms_only_after_its_locktime(node: RegtestNode) -> None:
    signed = open_factory(node, 4, cltv_in=12)
    tree = signed.tree
    cltv = tree.shape.params.cltv_timeout
    payouts = [TxOut(100_000, p2tr_script(secret(c + 1).xonly_public_key)) for c in range(4)]
    dist = distribution_tx(tree.scripts, payouts, LSP_SWEEP, cltv)
    tx = dist.signed(run_ceremony(SigningPlan([dist.session]), keys_for(4)).signatures[0])
    node.mine(cltv - 1 - node.height, MINER)
    early = node.submit_with_cpfp(tx, FEERATE)
    assert not early.ok and "non-final" in str(early.errors[tx.wtxid])
    node.mine(1, MINER)
    assert node.submit_with_cpfp(tx, FEERATE).ok
    node.mine(1, MINER)
    assert confirmed(node, tx)


def _walk(node: RegtestNode, signed: SignedTree) -> tuple[TreeOutput, ...]:
    def unspent(op: OutPoint) -> bool:
        found = node.utxo(op)
        return found is not None and found[1] > 0

    return onchain_node_outputs(signed.tree, unspent, lambda txid: confirmed_txid(node, txid))


def confirmed_txid(node: RegtestNode, txid: bytes) -> bool:
    status = node.transaction(txid)
    return status is not None and status.height is not None


def _mine_tree_tx(node: RegtestNode, signed: SignedTree, index: int) -> None:
    """Tree tx `index` with CPFP, once its relative lock allows, then one block."""
    tx = signed.signed_tx(index)
    if signed.tree.txs[index].kind is TxKind.STATE:
        node.mine((tx.inputs[0].sequence & 0xFFFF) - 1, MINER)
    assert node.submit_with_cpfp(tx, FEERATE).ok
    node.mine(1, MINER)
    assert confirmed(node, tx)


def test_untouched_tree_is_swept_at_its_funding_output(node: RegtestNode) -> None:
    signed = open_factory(node, 4)
    assert _walk(node, signed) == (funding_output_ref(signed.tree),)


def test_timeout_sweep_takes_every_unspent_node_output_of_a_partly_broadcast_tree(
    node: RegtestNode,
) -> None:
    """Root kickoff and state, then only node 1's kickoff: the sweep spends node 2's output
    (root state vout 1) and node 1's kickoff output, nothing else, at the CLTV."""
    signed = open_factory(node, 4, cltv_in=80)
    tree = signed.tree
    assert [n.children for n in tree.shape.nodes] == [(1, 2), (), ()]
    for index in (0, 1, 2):  # root kickoff, root state, node 1's kickoff
        _mine_tree_tx(node, signed, index)
    expected = (tx_output_ref(tree, 1, 1), tx_output_ref(tree, 2, 0))
    assert _walk(node, signed) == expected
    cltv = tree.shape.params.cltv_timeout
    tx = timeout_recovery_tx(expected, cltv, secret(0), LSP_SWEEP, FEERATE)
    node.mine(cltv - node.height, MINER)
    node.send(tx)
    node.mine(1, MINER)
    assert confirmed(node, tx)
    assert [i.prevout for i in tx.inputs] == [r.outpoint for r in expected]
    total = sum(r.txout.value for r in expected)
    assert tx.outputs == (TxOut(total - FEERATE.fee_for_vsize(tx.vsize), LSP_SWEEP),)
    assert _walk(node, signed) == ()  # nothing left: channels and L-stock are not node outputs
