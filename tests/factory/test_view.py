"""A client's path view: honest proposals verify; every kind of bad tree is refused."""

from __future__ import annotations

from dataclasses import replace

import pytest

from superscalar.bitcoin.script import P2A_SCRIPT
from superscalar.bitcoin.tx import OutPoint, Transaction, TxOut
from superscalar.chain.consensus import verify_transaction
from superscalar.factory import (
    ClientExpectation,
    ClientView,
    KeyAggCache,
    Signer,
    SigningPlan,
    ViewError,
    client_exit,
    extract_view,
    run_ceremony,
    unilateral_exit,
    verify_view,
)
from superscalar.factory.outputs import timeout_output
from superscalar.factory.tree import FactoryTree, SignedTree

from .helpers import CHANNEL, keys_for, make_params, make_tree, secret


def expectation(client: int, tree: FactoryTree, **kw: object) -> ClientExpectation:
    base: dict[str, object] = {
        "key": secret(client + 1).public_key,
        "channel_amount": CHANNEL,
        "lsp": secret(0).public_key,
        "params": tree.shape.params,
    }
    base.update(kw)
    return ClientExpectation(**base)  # type: ignore[arg-type]


def rechain(view: ClientView, index: int, tx: Transaction) -> ClientView:
    """Replace path tx `index` and re-point every later tx at its new parent, as a cheat would."""
    steps = list(view.steps)
    steps[index] = replace(steps[index], tx=tx)
    for j in range(index + 1, len(steps)):
        prev = steps[j - 1]
        assert prev.next_vout is not None
        old = steps[j].tx
        txin = replace(old.inputs[0], prevout=OutPoint(prev.tx.txid, prev.next_vout))
        steps[j] = replace(steps[j], tx=replace(old, inputs=(txin,)))
    return replace(view, steps=tuple(steps))


def with_output(tx: Transaction, vout: int, out: TxOut) -> Transaction:
    outputs = list(tx.outputs)
    outputs[vout] = out
    return replace(tx, outputs=tuple(outputs))


@pytest.mark.parametrize(("n", "arity"), [(8, (2,)), (7, (2, 3)), (3, (1,))], ids=str)
def test_honest_views_verify_for_every_client(n: int, arity: tuple[int, ...]) -> None:
    tree = make_tree(n, make_params(arity=arity))
    for client in range(n):
        verified = verify_view(extract_view(tree, client), expectation(client, tree))
        assert verified.channel_outpoint == tree.channel_outpoint(client)
        assert verified.funding_txout == tree.funding_txout
        path = tree.shape.client_txs(client)
        assert [s.msg for s in verified.sessions] == [tree.txs[i].sighash for i in path]


def test_views_signed_by_their_clients_give_consensus_valid_exits() -> None:
    n = 6
    tree = make_tree(n)
    plan = SigningPlan.for_tree(tree)
    cache = KeyAggCache()
    verified = {
        c: verify_view(extract_view(tree, c), expectation(c, tree), cache) for c in range(n)
    }
    signers = {c + 1: Signer(c + 1, secret(c + 1), v.sessions) for c, v in verified.items()}
    signers[0] = Signer(0, secret(0), plan.sessions)
    result = run_ceremony(plan, keys_for(n), signers=signers)
    signed = SignedTree(tree, tuple(result.signatures[i] for i in range(len(tree.txs))))
    for c, v in verified.items():
        exit_path = client_exit(v, result.signatures)
        assert exit_path.txs == unilateral_exit(signed, c).txs
        for step in exit_path.steps:
            verify_transaction(step.tx, [step.spent])


def test_sibling_subtree_paid_to_the_lsp_alone_is_refused() -> None:
    """A valid path inside an invalid tree: client 0's own txs are fine, its sibling is robbed."""
    tree = make_tree(8)
    view = extract_view(tree, 0)
    root_state = view.steps[1]
    sibling_vout = 1 - (root_state.next_vout or 0)
    stolen = timeout_output([secret(0).public_key], secret(0).xonly_public_key, 1000)
    value = root_state.tx.outputs[sibling_vout].value
    evil = rechain(view, 1, with_output(root_state.tx, sibling_vout, stolen.txout(value)))
    with pytest.raises(ViewError, match="not the node output"):
        verify_view(evil, expectation(0, tree))


def test_inflated_sibling_amount_breaking_conservation_is_refused() -> None:
    tree = make_tree(8)
    view = extract_view(tree, 0)
    root_state = view.steps[1].tx
    bigger = replace(root_state.outputs[1], value=root_state.outputs[1].value + 10_000)
    evil = rechain(view, 1, with_output(root_state, 1, bigger))
    with pytest.raises(ViewError, match="conserve"):
        verify_view(evil, expectation(0, tree))


def test_node_output_without_the_clients_key_is_refused() -> None:
    tree = make_tree(4)
    view = extract_view(tree, 0)
    leaf_kickoff = view.steps[2].tx
    others = [secret(0).public_key, secret(2).public_key]
    wrong = timeout_output(others, secret(0).xonly_public_key, 1000)
    evil = rechain(
        view, 2, with_output(leaf_kickoff, 0, wrong.txout(leaf_kickoff.outputs[0].value))
    )
    with pytest.raises(ViewError, match="not the node output"):
        verify_view(evil, expectation(0, tree))


def test_own_channel_smaller_than_agreed_is_refused() -> None:
    tree = make_tree(4)
    with pytest.raises(ViewError, match="capacity"):
        verify_view(extract_view(tree, 1), expectation(1, tree, channel_amount=CHANNEL + 1))


def test_different_cltv_timeout_is_refused() -> None:
    tree = make_tree(4)
    agreed = make_params(cltv=2000)
    with pytest.raises(ViewError, match="parameters"):
        verify_view(extract_view(tree, 0), expectation(0, tree, params=agreed))


def test_state_sequence_off_the_dw_grid_is_refused() -> None:
    tree = make_tree(4)
    view = extract_view(tree, 0)
    state = view.steps[1].tx
    evil = rechain(view, 1, replace(state, inputs=(replace(state.inputs[0], sequence=5),)))
    with pytest.raises(ViewError, match="DW state"):
        verify_view(evil, expectation(0, tree))


def test_nonzero_locktime_is_refused() -> None:
    tree = make_tree(4)
    view = extract_view(tree, 0)
    evil = rechain(view, 0, replace(view.steps[0].tx, locktime=900))
    with pytest.raises(ViewError, match="locktime"):
        verify_view(evil, expectation(0, tree))


def test_anchor_of_the_wrong_value_is_refused() -> None:
    tree = make_tree(4)
    view = extract_view(tree, 0)
    kickoff = view.steps[0].tx
    moved = with_output(
        kickoff, 0, replace(kickoff.outputs[0], value=kickoff.outputs[0].value + 240)
    )
    evil = rechain(view, 0, with_output(moved, 1, TxOut(0, P2A_SCRIPT)))
    with pytest.raises(ViewError, match="anchor"):
        verify_view(evil, expectation(0, tree))


def test_path_that_does_not_chain_is_refused() -> None:
    tree = make_tree(4)
    view = extract_view(tree, 0)
    state = view.steps[1].tx
    elsewhere = replace(state.inputs[0], prevout=OutPoint(bytes(32), 0))
    steps = list(view.steps)
    steps[1] = replace(steps[1], tx=replace(state, inputs=(elsewhere,)))
    with pytest.raises(ViewError, match="previous path output"):
        verify_view(replace(view, steps=tuple(steps)), expectation(0, tree))


def test_exit_delay_over_the_clients_own_ceiling_is_refused() -> None:
    tree = make_tree(8)  # 3 DW layers × 30 blocks
    with pytest.raises(ViewError, match="exit delay"):
        verify_view(extract_view(tree, 0), expectation(0, tree, max_exit_delay=89))


def test_client_key_not_at_its_claimed_position_is_refused() -> None:
    tree = make_tree(4)
    view = replace(extract_view(tree, 0), client=1)
    with pytest.raises(ViewError, match="position"):
        verify_view(view, expectation(0, tree))


def test_wrong_lstock_point_is_refused() -> None:
    tree = make_tree(4)
    view = replace(extract_view(tree, 0), lstock_point=secret(9).xonly_public_key)
    with pytest.raises(ViewError, match="L-stock"):
        verify_view(view, expectation(0, tree))


def test_kept_view_is_a_small_fraction_of_the_tree() -> None:
    tree = make_tree(64)
    verified = verify_view(extract_view(tree, 0), expectation(0, tree))
    kept = verified.kept_bytes(signatures=len(verified.sessions))
    whole = sum(len(t.tx.to_bytes()) + 64 for t in tree.txs)
    assert kept < whole / 8
