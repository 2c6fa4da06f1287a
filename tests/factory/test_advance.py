"""Per-leaf advance selling inbound liquidity: the LSP's plan and a leaf client's check."""

from __future__ import annotations

import pytest

from superscalar.bitcoin.tx import Transaction, TxIn, TxOut
from superscalar.crypto import schnorr
from superscalar.factory import (
    FactoryError,
    FactoryTree,
    LStockSecrets,
    OdometerExhaustedError,
    SessionSpec,
    extract_view,
    run_ceremony,
    verify_view,
)
from superscalar.factory.advance import LeafAdvance, plan_leaf_advance, verify_leaf_advance

from .helpers import LSTOCK_SEED, make_tree, secret
from .test_view import expectation

SECRETS = LStockSecrets(LSTOCK_SEED)


def _plan(tree: FactoryTree, buyer: int = 1, amount: int = 20_000) -> LeafAdvance:
    leaf = tree.shape.client_leaf[buyer]
    gen = tree.state.odometer.generations[leaf] + 1
    return plan_leaf_advance(tree, buyer, amount, SECRETS.point(leaf, gen))


def _client_check(
    adv: LeafAdvance, client: int, proposed: Transaction | None = None, amount: int | None = None
) -> SessionSpec:
    """What leaf client `client` does with the proposal, from its own verified view."""
    tree = adv.before
    verified = verify_view(extract_view(tree, client), expectation(client, tree))
    node = tree.shape.leaf_node(adv.leaf)
    return verify_leaf_advance(
        verified.view.steps[-1].tx,
        verified.sessions[-1],
        verified.spent[-1],
        adv.new_tx.tx if proposed is None else proposed,
        params=tree.shape.params,
        lsp=secret(0).public_key,
        leaf_clients=tuple(secret(p + 1).public_key for p in range(node.lo, node.hi)),
        buyer_offset=adv.buyer - node.lo,
        amount=adv.amount if amount is None else amount,
        new_point=adv.after.state.lstock_points[adv.leaf],
    )


def test_advance_moves_the_amount_from_the_lstock_into_the_buyers_channel() -> None:
    tree = make_tree(4)
    adv = _plan(tree, buyer=1, amount=20_000)
    old, new = adv.old_tx.tx.outputs, adv.new_tx.tx.outputs
    assert [o.value for o in new] == [old[0].value, old[1].value + 20_000, old[2].value - 20_000,
                                      old[3].value]  # fmt: skip
    assert sum(o.value for o in new) == sum(o.value for o in old)
    assert adv.new_tx.sequence == adv.old_tx.sequence - tree.shape.params.dw.step_blocks
    assert adv.generation == 1


def test_advance_changes_only_the_buyers_leaf_state_tx() -> None:
    tree = make_tree(4)
    adv = _plan(tree, buyer=2)
    changed = [i for i, (a, b) in enumerate(zip(tree.txs, adv.after.txs, strict=True))
               if a.txid != b.txid]  # fmt: skip
    assert changed == [adv.new_tx.index]
    assert adv.plan.sessions_for(0) == (adv.new_tx.index,)


def test_every_leaf_signer_rebuilds_the_lsps_session_and_they_sign_it_together() -> None:
    adv = _plan(make_tree(4), buyer=0)
    plan = adv.plan
    (spec,) = plan.sessions
    for client in adv.positions:
        assert _client_check(adv, client) == spec
    result = run_ceremony(plan, {p: secret(p) for p in plan.participants})
    assert schnorr.verify(spec.keyagg.xonly, spec.msg, result.signatures[spec.id])


def test_a_client_refuses_a_buyer_channel_paid_less_than_agreed() -> None:
    adv = _plan(make_tree(4), buyer=1, amount=20_000)
    with pytest.raises(FactoryError, match="channel output 1"):
        _client_check(adv, 0, amount=25_000)


def test_a_client_refuses_a_new_state_at_the_same_dw_counter() -> None:
    adv = _plan(make_tree(4))
    tx = adv.new_tx.tx
    same = Transaction(
        tx.version, (TxIn(tx.inputs[0].prevout, sequence=adv.old_tx.sequence),), tx.outputs
    )
    with pytest.raises(FactoryError, match="next DW state"):
        _client_check(adv, 1, proposed=same)


def test_a_client_refuses_an_lstock_paying_another_point() -> None:
    adv = _plan(make_tree(4))
    other = plan_leaf_advance(adv.before, 1, 20_000, SECRETS.point(0, 7)).new_tx.tx
    with pytest.raises(FactoryError, match="L-stock"):
        _client_check(adv, 0, proposed=other)


def test_a_client_refuses_a_state_that_skims_the_lstock() -> None:
    adv = _plan(make_tree(4))
    tx = adv.new_tx.tx
    outs = list(tx.outputs)
    outs[2] = TxOut(outs[2].value - 1000, outs[2].script_pubkey)
    with pytest.raises(FactoryError):
        _client_check(adv, 0, proposed=Transaction(tx.version, tx.inputs, tuple(outs)))


def test_more_than_the_lstock_is_refused() -> None:
    tree = make_tree(4)
    lstock = tree.state.allocations[0].lstock
    with pytest.raises(FactoryError, match="L-stock"):
        _plan(tree, buyer=0, amount=lstock + 1)


def test_an_advance_leaving_a_dust_lstock_is_refused() -> None:
    tree = make_tree(4)
    with pytest.raises(FactoryError, match="dust"):
        _plan(tree, buyer=0, amount=tree.state.allocations[0].lstock - 100)


def test_a_leaf_at_its_last_dw_state_cannot_advance_alone() -> None:
    tree = make_tree(4)
    for _ in range(tree.shape.params.dw.states_per_layer - 1):
        tree = _plan(tree, buyer=0, amount=1_000).after
    with pytest.raises(OdometerExhaustedError, match="last DW state"):
        _plan(tree, buyer=0, amount=1_000)


def test_a_signed_dw_state_is_never_replaced_only_resumed() -> None:
    from superscalar.factory.advance import AdvanceRefusal, check_signed_state

    tree = make_tree(4)
    first = _plan(tree, buyer=1, amount=20_000).new_tx.tx
    other = _plan(tree, buyer=1, amount=20_001).new_tx.tx  # same kickoff, same DW state
    assert check_signed_state([], first) is False
    assert check_signed_state([first], first) is True  # the identical tx: resume
    with pytest.raises(AdvanceRefusal) as exc:
        check_signed_state([first], other)
    assert exc.value.code == "signed-other-state"
    later = _plan(_plan(tree, buyer=1).after, buyer=1, amount=1_000).new_tx.tx
    assert check_signed_state([first], later) is False  # the next DW state is not taken


def test_free_liquidity_is_capped_per_client_so_the_leaf_stays_open_to_others() -> None:
    from superscalar.factory.advance import (
        AdvanceRefusal,
        LiquidityLimits,
        check_liquidity_request,
    )

    tree = make_tree(4)
    leaf = tree.shape.client_leaf[1]
    node = tree.shape.leaf_node(leaf)
    n = node.hi - node.lo
    share = tree.shape.lstock_amounts[leaf] // n
    k = tree.shape.params.dw.states_per_layer
    max_sat, max_adv = LiquidityLimits().for_leaf(tree, leaf)
    assert (max_sat, max_adv) == (share, max(1, (k - 1) // n))
    assert max_adv * n <= k - 1  # every leaf client keeps DW states of its own
    check_liquidity_request(tree, 1, share, [], LiquidityLimits())
    with pytest.raises(AdvanceRefusal) as exc:
        check_liquidity_request(tree, 1, share + 1, [], LiquidityLimits())
    assert exc.value.code == "liquidity-limit"
    with pytest.raises(AdvanceRefusal) as exc:
        check_liquidity_request(tree, 1, 1, [1] * max_adv, LiquidityLimits())
    assert exc.value.code == "liquidity-limit"
    limits = LiquidityLimits(max_sat=10_000, max_advances=5)
    check_liquidity_request(tree, 1, 4_000, [3_000, 3_000], limits)
    with pytest.raises(AdvanceRefusal):
        check_liquidity_request(tree, 1, 4_001, [3_000, 3_000], limits)
    with pytest.raises(FactoryError):
        check_liquidity_request(tree, 99, 1, [], limits)
