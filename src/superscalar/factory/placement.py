"""Client placement: which client sits at which leaf position of the tree.

When N is not a power of the arity, leaves sit at different depths, and a
shallower leaf means fewer transactions and blocks to exit. Placement decides
who gets them (the C implementation's `--placement-mode`):

- `sequential`: join order, as given;
- `inward`: the largest channels take the shallowest leaves (cheapest exits
  for the most money at stake);
- `outward`: the largest channels take the deepest leaves (cheap exits for the
  many small clients, who are likelier to leave).

Ties keep join order, so placement is deterministic for both LSP and clients.
"""

from __future__ import annotations

from dataclasses import replace
from enum import Enum

from .shape import ClientSpec, FactorySpec, build_shape

__all__ = ["Placement", "place_clients"]


class Placement(Enum):
    SEQUENTIAL = "sequential"
    INWARD = "inward"
    OUTWARD = "outward"


def place_clients(spec: FactorySpec, mode: Placement) -> FactorySpec:
    """`spec` with its clients reordered for `mode` (participant p is position p − 1)."""
    if mode is Placement.SEQUENTIAL:
        return spec
    shape = build_shape(spec)
    depth = [shape.nodes[shape.leaves[leaf]].depth for leaf in shape.client_leaf]
    positions = sorted(range(len(depth)), key=lambda p: (depth[p], p))
    if mode is Placement.OUTWARD:
        positions = sorted(range(len(depth)), key=lambda p: (-depth[p], p))
    by_size = sorted(spec.clients, key=lambda c: -c.channel_amount)  # stable: join order on ties
    placed: list[ClientSpec | None] = [None] * len(spec.clients)
    for position, client in zip(positions, by_size, strict=True):
        placed[position] = client
    return replace(spec, clients=tuple(c for c in placed if c is not None))
