"""Placement modes decide who gets the shallow (cheap-exit) leaves of an uneven tree."""

from __future__ import annotations

from dataclasses import replace

from superscalar.factory import Placement, build_shape, place_clients
from superscalar.factory.shape import ClientSpec, FactorySpec

from .helpers import make_params, make_spec, secret

SIZES = [100_000, 400_000, 200_000, 300_000, 150_000]


def _spec() -> FactorySpec:
    base = make_spec(5, make_params(arity=(1, 2)), funding=3_000_000)
    clients = tuple(ClientSpec(secret(p + 1).public_key, a) for p, a in enumerate(SIZES))
    return replace(base, clients=clients)


def _depths(spec: FactorySpec) -> list[tuple[int, int]]:
    shape = build_shape(spec)
    return [
        (shape.nodes[shape.leaves[leaf]].depth, spec.clients[pos].channel_amount)
        for pos, leaf in enumerate(shape.client_leaf)
    ]


def test_the_example_tree_has_leaves_at_different_depths() -> None:
    assert len({d for d, _ in _depths(_spec())}) > 1


def test_sequential_keeps_join_order() -> None:
    spec = _spec()
    assert place_clients(spec, Placement.SEQUENTIAL) == spec


def test_inward_gives_the_largest_channel_the_shallowest_leaf() -> None:
    placed = _depths(place_clients(_spec(), Placement.INWARD))
    shallowest = min(d for d, _ in placed)
    assert max(SIZES) in {a for d, a in placed if d == shallowest}
    assert sorted(a for _, a in placed) == sorted(SIZES)


def test_outward_gives_the_largest_channel_the_deepest_leaf() -> None:
    placed = _depths(place_clients(_spec(), Placement.OUTWARD))
    deepest = max(d for d, _ in placed)
    assert max(SIZES) in {a for d, a in placed if d == deepest}
