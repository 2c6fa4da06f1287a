"""The DW odometer: decreasing sequences, per-leaf and root advances, carries, exhaustion."""

from __future__ import annotations

import pytest

from superscalar.factory import (
    DWParams,
    FactoryError,
    FactoryState,
    LeafAllocation,
    LStockSecrets,
    Odometer,
    OdometerExhaustedError,
    build_shape,
)

from .helpers import LSTOCK_SEED, make_params, make_spec, make_tree


def test_newer_states_have_strictly_shorter_relative_locks() -> None:
    dw = DWParams(states_per_layer=4, step_blocks=144)
    assert [dw.sequence(s) for s in range(4)] == [432, 288, 144, 0]


def test_state_of_sequence_inverts_sequence_and_rejects_off_grid_values() -> None:
    dw = DWParams(states_per_layer=5, step_blocks=6)
    assert [dw.state_of_sequence(dw.sequence(s)) for s in range(5)] == list(range(5))
    assert dw.state_of_sequence(7) is None
    assert dw.state_of_sequence(30) is None


def test_per_leaf_advance_resigns_only_that_leaf_state_with_its_signers() -> None:
    shape = build_shape(make_spec(8))
    adv = Odometer.initial(shape).advance_leaf(shape, 1)
    leaf = shape.leaf_node(1)
    assert adv.advanced == leaf.index
    assert adv.resign_txs == (leaf.state_tx,)
    assert adv.signers == (0, 3, 4)
    assert adv.after.states[leaf.index] == 1
    assert sum(adv.after.states) == 1


def test_per_leaf_advance_shortens_only_that_leafs_lock() -> None:
    shape = build_shape(make_spec(8))
    odo = Odometer.initial(shape)
    after = odo.advance_leaf(shape, 0).after
    assert after.path_delay(shape, 0) == odo.path_delay(shape, 0) - 10
    assert after.path_delay(shape, 1) == odo.path_delay(shape, 1)


def test_exhausted_leaf_carries_to_its_parent_and_resets_the_subtree() -> None:
    shape = build_shape(make_spec(8))  # depth 2: root → 2 nodes → 4 leaves
    odo = Odometer.initial(shape)
    for _ in range(3):
        odo = odo.advance_leaf(shape, 0).after
    adv = odo.advance_leaf(shape, 0)
    parent = shape.leaf_node(0).parent
    assert parent is not None and adv.advanced == parent
    assert adv.after.states[parent] == 1
    assert all(adv.after.states[n] == 0 for n in shape.subtree(parent)[1:])
    signers = (0, *range(shape.nodes[parent].lo + 1, shape.nodes[parent].hi + 1))
    assert adv.signers == signers
    expected = [2 * parent + 1] + [t for n in shape.subtree(parent)[1:] for t in (2 * n, 2 * n + 1)]
    assert adv.resign_txs == tuple(expected)


def test_root_advance_has_everyone_resign_everything_but_the_root_kickoff() -> None:
    shape = build_shape(make_spec(8))
    adv = Odometer.initial(shape).advance_root(shape)
    assert adv.signers == tuple(range(9))
    assert sorted(adv.resign_txs) == list(range(1, shape.n_txs))


def test_odometer_counts_k_to_the_layers_epochs_then_is_exhausted() -> None:
    shape = build_shape(make_spec(4, make_params(states=3)))  # 2 layers × 3 states
    odo = Odometer.initial(shape)
    assert Odometer.epochs(shape, 0) == 9
    seen = [odo.epoch(shape, 0)]
    for _ in range(8):
        odo = odo.advance_leaf(shape, 0).after
        seen.append(odo.epoch(shape, 0))
    assert seen == list(range(9))
    with pytest.raises(OdometerExhaustedError):
        odo.advance_leaf(shape, 0)


def test_root_advance_when_the_root_is_exhausted_is_refused() -> None:
    shape = build_shape(make_spec(2, make_params(states=2)))
    odo = Odometer.initial(shape).advance_root(shape).after
    with pytest.raises(OdometerExhaustedError):
        odo.advance_root(shape)


def test_advance_supersedes_the_lstock_generation_of_every_leaf_beneath() -> None:
    shape = build_shape(make_spec(8))
    adv = Odometer.initial(shape).advance_root(shape)
    assert adv.superseded == tuple((leaf, 0) for leaf in range(4))
    assert adv.after.generations == (1, 1, 1, 1)


def test_advanced_tree_keeps_kickoffs_and_spends_the_same_outpoint_with_a_shorter_lock() -> None:
    tree = make_tree(8)
    shape = tree.shape
    adv = tree.state.odometer.advance_leaf(shape, 2)
    secrets = LStockSecrets(LSTOCK_SEED)
    points = [secrets.point(leaf, g) for leaf, g in enumerate(adv.after.generations)]
    new = tree.with_state(tree.state.advanced(adv, points))
    leaf_state = shape.leaf_node(2).state_tx
    changed = {i for i, (a, b) in enumerate(zip(tree.txs, new.txs, strict=True)) if a.tx != b.tx}
    assert changed == {leaf_state}
    old_tx, new_tx = tree.txs[leaf_state].tx, new.txs[leaf_state].tx
    assert old_tx.inputs[0].prevout == new_tx.inputs[0].prevout
    assert new_tx.inputs[0].sequence < old_tx.inputs[0].sequence
    assert old_tx.outputs[-2] != new_tx.outputs[-2]  # fresh L-stock point


def test_state_with_a_non_conserving_leaf_allocation_is_refused() -> None:
    tree = make_tree(4)
    bad = list(tree.state.allocations)
    bad[0] = LeafAllocation(bad[0].channels, bad[0].lstock + 1)
    state = FactoryState(tree.state.odometer, tree.state.lstock_points, tuple(bad))
    with pytest.raises(FactoryError, match="allocation"):
        tree.with_state(state)
