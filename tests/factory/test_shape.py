"""Tree shape: layout, determinism, money rules and the refusals that protect them."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from superscalar.bitcoin.fees import dust_limit
from superscalar.bitcoin.script import P2A_SCRIPT
from superscalar.factory import (
    ClientSpec,
    ExitBudgetError,
    FactorySpec,
    FactoryTree,
    FeePolicy,
    ShapeError,
    TxKind,
    build_shape,
)
from superscalar.factory.shape import SEQUENCE_DISABLED, tree_tx_vsize

from .helpers import FUNDING, initial_state, make_params, make_spec, make_tree, secret


def test_four_clients_give_the_c_readme_tree() -> None:
    tree = make_tree(4)
    shape = tree.shape
    assert len(tree.txs) == 6
    root, left, right = shape.nodes
    assert root.children == (1, 2) and (left.lo, left.hi, right.lo, right.hi) == (0, 2, 2, 4)
    assert len(tree.txs[0].spent_output.keys) == 5  # kickoff_root: 5-of-5
    assert [len(tree.txs[i].spent_output.keys) for i in (2, 3, 4, 5)] == [3, 3, 3, 3]
    leaf_state = tree.state_tx(1).tx
    assert len(leaf_state.outputs) == 4  # chan_A, chan_B, L-stock, anchor


def test_kickoffs_have_sequence_disabled_and_states_a_dw_lock() -> None:
    tree = make_tree(4)
    for t in tree.txs:
        if t.kind is TxKind.KICKOFF:
            assert t.sequence == SEQUENCE_DISABLED
        else:
            assert t.sequence == 30  # state 0 of K=4, step 10


def test_build_is_deterministic() -> None:
    a, b = make_tree(9, make_params(arity=(2, 3))), make_tree(9, make_params(arity=(2, 3)))
    assert [t.txid for t in a.txs] == [t.txid for t in b.txs]
    assert a.funding_txout == b.funding_txout


def test_path_chains_from_the_funding_outpoint() -> None:
    tree = make_tree(8)
    for client in range(8):
        path = [tree.txs[i] for i in tree.shape.client_txs(client)]
        assert path[0].tx.inputs[0].prevout == FUNDING
        for parent, child in itertools.pairwise(path):
            prevout = child.tx.inputs[0].prevout
            assert prevout.txid == parent.txid
            assert parent.tx.outputs[prevout.vout] == child.spent


def test_odd_client_count_gets_a_one_client_leaf() -> None:
    shape = build_shape(make_spec(5))
    assert sorted(shape.leaf_node(i).n_clients for i in range(len(shape.leaves))) == [1, 2, 2]


def test_no_internal_node_has_a_single_child() -> None:
    for n in (3, 5, 7, 9, 17, 33):
        shape = build_shape(make_spec(n, make_params(arity=(1, 2))))
        assert all(len(node.children) != 1 for node in shape.nodes)


def test_arity_per_level_is_read_leaf_to_root() -> None:
    shape = build_shape(make_spec(64, make_params(arity=(2, 4, 8))))
    # 32 leaves of 2 → 8 nodes of 4 leaves → 1 root of 8.
    assert len(shape.leaves) == 32
    assert len(shape.root.children) == 8
    assert {len(shape.nodes[c].children) for c in shape.root.children} == {4}
    assert shape.max_depth == 2


def test_signers_of_a_node_are_the_lsp_and_the_clients_beneath() -> None:
    tree = make_tree(8)
    for t in tree.txs:
        node = tree.shape.nodes[t.node]
        expected = {secret(0).public_key} | {secret(p).public_key for p in node.participants}
        assert set(t.spent_output.keys) == expected
        assert t.signers == (0, *node.participants)


def test_every_node_output_has_the_cltv_timeout_leaf_to_the_lsp() -> None:
    tree = make_tree(4)
    leaf_script = tree.funding_output.spend.leaves[0].script
    assert leaf_script[-34:-1] == bytes([32]) + secret(0).xonly_public_key.data
    assert leaf_script[0:3] == bytes([2, 0xE8, 0x03])  # push of 1000
    for out in tree.scripts.node_outputs:
        assert out.spend.leaves[0].script[3:] == leaf_script[3:]


def test_tree_tx_vsize_estimate_matches_a_signed_tx() -> None:
    tree = make_tree(4)
    for t in tree.txs:
        signed = t.tx.with_witness(0, (bytes(64),))
        assert signed.vsize == tree_tx_vsize(len(t.tx.outputs) - 1)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 40),
    arity=st.sampled_from([(1,), (2,), (2, 4), (1, 3, 2), (2, 4, 8)]),
    channels=st.lists(st.integers(330, 5_000_000), min_size=40, max_size=40),
    slack=st.integers(0, 1_000_000),
    anchor=st.sampled_from([0, 240, 330]),
)
def test_every_tx_conserves_value_exactly_and_has_no_dust(
    n: int, arity: tuple[int, ...], channels: list[int], slack: int, anchor: int
) -> None:
    params = make_params(arity=arity, anchor=anchor, states=2, step=1)
    clients = tuple(ClientSpec(secret(p).public_key, channels[p - 1]) for p in range(1, n + 1))
    shape0 = build_shape(FactorySpec(secret(0).public_key, clients, FUNDING, 10**9, params))
    need = sum(channels[:n]) + 2 * anchor * len(shape0.nodes) + 330 * len(shape0.leaves)
    spec = FactorySpec(secret(0).public_key, clients, FUNDING, need + slack, params)
    shape = build_shape(spec)
    tree = FactoryTree.build(shape, initial_state(shape))
    assert tree.txs[0].spent.value == spec.funding_amount
    for t in tree.txs:
        outs = t.tx.outputs
        assert sum(o.value for o in outs) == t.spent.value
        assert outs[-1].script_pubkey == P2A_SCRIPT and outs[-1].value == anchor
        assert all(o.value >= dust_limit(o.script_pubkey) for o in outs[:-1])
    paid = [tree.channel_txout(c).value for c in range(n)]
    assert paid == channels[:n]


def test_funding_too_small_for_channels_and_lstock_is_refused() -> None:
    spec = make_spec(4, funding=4 * 100_000)
    with pytest.raises(ShapeError, match="cannot cover"):
        build_shape(spec)


def test_dust_channel_is_refused() -> None:
    with pytest.raises(ShapeError, match="dust"):
        build_shape(make_spec(2, channel=329))


def test_duplicate_participant_keys_are_refused() -> None:
    client = ClientSpec(secret(1).public_key, 100_000)
    spec = FactorySpec(secret(0).public_key, (client, client), FUNDING, 10**7, make_params())
    with pytest.raises(ShapeError, match="distinct"):
        build_shape(spec)


def test_lsp_key_as_client_key_is_refused() -> None:
    client = ClientSpec(secret(0).public_key, 100_000)
    spec = FactorySpec(secret(0).public_key, (client,), FUNDING, 10**7, make_params())
    with pytest.raises(ShapeError, match="distinct"):
        build_shape(spec)


@pytest.mark.parametrize("arity", [(3,), (0,), (2, 1), ()])
def test_invalid_arity_is_refused(arity: tuple[int, ...]) -> None:
    with pytest.raises(ShapeError):
        make_params(arity=arity)


@pytest.mark.parametrize("anchor", [1, 100, 239])
def test_anchor_values_that_are_costly_dust_are_refused(anchor: int) -> None:
    with pytest.raises(ShapeError, match="dust"):
        FeePolicy(anchor_value=anchor)


def test_truc_tree_tx_over_ten_thousand_vbytes_is_refused() -> None:
    with pytest.raises(ShapeError, match="TRUC"):
        build_shape(make_spec(600, make_params(arity=(1, 300), states=2, step=1)))


def test_shape_over_the_exit_delay_budget_is_refused() -> None:
    # 1024 clients, binary: 10 DW layers × 144 × 3 blocks = 4320 > 2016.
    with pytest.raises(ExitBudgetError) as info:
        build_shape(make_spec(1024, make_params(states=4, step=144)))
    assert info.value.worst_case == 4320 and info.value.budget == 2016


def test_wider_tree_brings_the_same_dw_params_under_budget() -> None:
    shape = build_shape(make_spec(1024, make_params(arity=(2, 8, 8), states=4, step=144)))
    assert shape.worst_case_exit_delay <= 2016


def test_worst_case_exit_delay_is_layers_times_step_times_k_minus_one() -> None:
    shape = build_shape(make_spec(16, make_params(states=5, step=7)))
    for leaf in range(len(shape.leaves)):
        assert shape.exit_delay(leaf) == (shape.leaf_node(leaf).depth + 1) * 7 * 4
