"""Exits and closes: unilateral paths, CPFP, CLTV recovery, L-stock burn and sweep, closes."""

from __future__ import annotations

import pytest

from superscalar.bitcoin.fees import Feerate
from superscalar.bitcoin.script import P2A_SCRIPT, is_p2a, p2tr_script
from superscalar.bitcoin.sighash import SighashContext
from superscalar.bitcoin.taproot import taproot_output, tweak_secret_key
from superscalar.bitcoin.tx import OutPoint, TxOut
from superscalar.chain.consensus import ScriptVerifyError, verify_transaction
from superscalar.crypto import schnorr
from superscalar.crypto.shachain import ShachainStore, commitment_index
from superscalar.factory import (
    Advance,
    FactoryError,
    FactoryTree,
    LStockSecrets,
    SigningPlan,
    TxKind,
    cooperative_close,
    cpfp_child,
    distribution_tx,
    funding_output_ref,
    lstock_burn_tx,
    lstock_output_ref,
    lstock_sweep_tx,
    reveal_into_store,
    run_ceremony,
    sign_tree,
    timeout_recovery_tx,
    tx_output_ref,
    unilateral_exit,
    verify_burn_secret,
)
from superscalar.factory.exits import BURN_SCRIPT

from .helpers import CLTV, LSTOCK_SEED, keys_for, make_tree, secret

FEERATE = Feerate.from_sat_per_vb(5)
LSP_SWEEP = p2tr_script(secret(0).xonly_public_key)


def test_exit_path_is_kickoff_state_pairs_root_to_leaf_each_with_an_anchor() -> None:
    signed = sign_tree(make_tree(8), keys_for(8))
    path = unilateral_exit(signed, 5)
    assert [s.kind for s in path.steps] == [TxKind.KICKOFF, TxKind.STATE] * 3
    assert [s.relative_delay for s in path.steps] == [0, 30] * 3
    assert path.worst_case_delay == path.current_delay == 90
    for step in path.steps:
        assert step.anchor == step.tx.outpoint(len(step.tx.outputs) - 1)
        assert is_p2a(step.tx.outputs[-1].script_pubkey) and step.anchor_value == 240
    assert path.channel_outpoint == signed.tree.channel_outpoint(5)
    assert path.steps[-1].tx.outputs[path.channel_outpoint.vout] == path.channel_txout


def test_cpfp_child_spends_the_anchor_and_is_valid_by_consensus() -> None:
    signed = sign_tree(make_tree(2), keys_for(2))
    parent = unilateral_exit(signed, 0).steps[0].tx
    wallet = secret(50)
    wallet_out = taproot_output(wallet.xonly_public_key)
    fee_txout = TxOut(50_000, wallet_out.script_pubkey)
    fee_outpoint = OutPoint(bytes(range(32)), 0)
    child = cpfp_child(parent, fee_outpoint, fee_txout, LSP_SWEEP, FEERATE)
    spent = [parent.outputs[-1], fee_txout]
    msg = SighashContext(child, tuple(spent)).key_path(1)
    sig = schnorr.sign(tweak_secret_key(wallet, None), msg)
    signed_child = child.with_witnesses([(), (sig,)])
    verify_transaction(signed_child, spent)
    fee = 240 + 50_000 - signed_child.total_out
    assert fee >= FEERATE.fee_for_vsize(parent.vsize + signed_child.vsize)
    assert signed_child.version == parent.version == 3


def test_timeout_recovery_of_the_funding_output_is_valid_by_consensus() -> None:
    tree = make_tree(4)
    tx = timeout_recovery_tx([funding_output_ref(tree)], CLTV, secret(0), LSP_SWEEP, FEERATE)
    assert tx.locktime == CLTV
    verify_transaction(tx, [tree.funding_txout])
    assert tree.funding_txout.value - tx.total_out == FEERATE.fee_for_vsize(tx.vsize)


def test_timeout_recovery_before_the_cltv_fails_consensus() -> None:
    tree = make_tree(4)
    tx = timeout_recovery_tx([funding_output_ref(tree)], CLTV - 1, secret(0), LSP_SWEEP, FEERATE)
    with pytest.raises(ScriptVerifyError):
        verify_transaction(tx, [tree.funding_txout])


def test_timeout_recovery_signed_by_a_client_fails_consensus() -> None:
    tree = make_tree(4)
    tx = timeout_recovery_tx([funding_output_ref(tree)], CLTV, secret(1), LSP_SWEEP, FEERATE)
    with pytest.raises(ScriptVerifyError):
        verify_transaction(tx, [tree.funding_txout])


def test_timeout_recovery_sweeps_several_stranded_node_outputs_at_once() -> None:
    tree = make_tree(8)
    root_state = tree.state_tx(0)
    refs = [tx_output_ref(tree, root_state.index, v) for v in range(len(root_state.tx.outputs) - 1)]
    tx = timeout_recovery_tx(refs, CLTV, secret(0), LSP_SWEEP, FEERATE)
    verify_transaction(tx, [r.txout for r in refs])


def _advance_leaf(tree: FactoryTree, leaf: int) -> tuple[Advance, FactoryTree]:
    adv = tree.state.odometer.advance_leaf(tree.shape, leaf)
    secrets = LStockSecrets(LSTOCK_SEED)
    points = [secrets.point(i, g) for i, g in enumerate(adv.after.generations)]
    return adv, tree.with_state(tree.state.advanced(adv, points))


def test_superseded_lstock_is_burnt_with_the_revealed_secret_valid_by_consensus() -> None:
    old = make_tree(4)
    adv, _new = _advance_leaf(old, 1)
    assert adv.superseded == ((1, 0),)
    revealed = LStockSecrets(LSTOCK_SEED).secret(1, 0)
    burn_key = verify_burn_secret(old.state.lstock_points[1], revealed)
    ref = lstock_output_ref(old, 1)
    tx = lstock_burn_tx(ref, burn_key)
    verify_transaction(tx, [ref.txout])
    assert tx.outputs == (TxOut(0, BURN_SCRIPT),)
    assert len(tx.serialize(include_witness=False)) >= 65


def test_burn_with_another_generations_secret_is_refused() -> None:
    tree = make_tree(4)
    wrong = LStockSecrets(LSTOCK_SEED).burn_key(1, 1)
    with pytest.raises(FactoryError, match="burn key"):
        lstock_burn_tx(lstock_output_ref(tree, 1), wrong)


def test_revealed_secret_that_does_not_match_the_point_is_refused() -> None:
    tree = make_tree(4)
    with pytest.raises(FactoryError, match="does not match"):
        verify_burn_secret(tree.state.lstock_points[0], LStockSecrets(LSTOCK_SEED).secret(0, 1))


def test_client_keeps_every_revealed_secret_in_a_compact_shachain_store() -> None:
    secrets = LStockSecrets(LSTOCK_SEED)
    store = ShachainStore()
    for g in range(20):
        reveal_into_store(store, g, secrets.point(0, g), secrets.secret(0, g))
    assert len(store) <= 5
    assert store.lookup(commitment_index(7)) == secrets.secret(0, 7)


def test_lsp_sweeps_current_lstock_after_its_csv_delay_valid_by_consensus() -> None:
    tree = make_tree(4)
    ref = lstock_output_ref(tree, 0)
    tx = lstock_sweep_tx(ref, 144, secret(0), LSP_SWEEP, FEERATE)
    verify_transaction(tx, [ref.txout])


def test_lsp_sweep_before_the_csv_delay_fails_consensus() -> None:
    tree = make_tree(4)
    ref = lstock_output_ref(tree, 0)
    tx = lstock_sweep_tx(ref, 143, secret(0), LSP_SWEEP, FEERATE)
    with pytest.raises(ScriptVerifyError):
        verify_transaction(tx, [ref.txout])


def test_cooperative_close_pays_everyone_from_the_funding_output_valid_by_consensus() -> None:
    tree = make_tree(4)
    payouts = [TxOut(90_000 + c, p2tr_script(secret(c + 1).xonly_public_key)) for c in range(4)]
    close = cooperative_close(tree.scripts, payouts, LSP_SWEEP, FEERATE)
    result = run_ceremony(SigningPlan([close.session]), keys_for(4))
    tx = close.signed(result.signatures[0])
    verify_transaction(tx, [close.spent])
    assert tx.outputs[:4] == tuple(payouts)
    assert close.fee == FEERATE.fee_for_vsize(tx.vsize)
    assert sum(o.value for o in tx.outputs) + close.fee == tree.shape.spec.funding_amount


def test_cooperative_close_paying_more_than_the_funding_is_refused() -> None:
    tree = make_tree(2)
    too_much = [TxOut(tree.shape.spec.funding_amount, LSP_SWEEP)]
    with pytest.raises(FactoryError, match="exceed"):
        cooperative_close(tree.scripts, too_much, LSP_SWEEP, FEERATE)


def test_distribution_tx_is_signed_at_creation_and_valid_by_consensus() -> None:
    tree = make_tree(4)
    payouts = [TxOut(100_000, p2tr_script(secret(c + 1).xonly_public_key)) for c in range(4)]
    dist = distribution_tx(tree.scripts, payouts, LSP_SWEEP, CLTV, session_id=len(tree.txs))
    plan = SigningPlan.for_tree(tree, extra=[dist.session])
    result = run_ceremony(plan, keys_for(4))
    tx = dist.signed(result.signatures[len(tree.txs)])
    verify_transaction(tx, [dist.spent])
    assert tx.locktime == CLTV and tx.inputs[0].sequence != 0xFFFFFFFF
    assert dist.fee == 0 and tx.outputs[-1] == TxOut(240, P2A_SCRIPT)


def test_distribution_locktime_after_the_factory_timeout_is_refused() -> None:
    tree = make_tree(2)
    with pytest.raises(FactoryError, match="locktime"):
        distribution_tx(tree.scripts, [], LSP_SWEEP, CLTV + 1)
