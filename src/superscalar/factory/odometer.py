"""The Decker-Wattenhofer odometer over a factory's state layers.

Each node's state tx has a counter s in 0..K−1 and nSequence
`step × (K − 1 − s)`: a newer state waits `step` blocks less than the one it
replaces, so if both are published after their shared kickoff confirms, the
newer one confirms first. The counters of a root→leaf path read as the digits
of an odometer (root most significant): L layers × K states give K^L epochs.

Advancing a node re-signs its state tx with s + 1. The kickoff tx above it is
unchanged (same input, same output), so the new state spends the same outpoint
as the old ones and DW orders them. Everything below changes txid, so the whole
subtree is re-signed with its counters reset to 0 — that is safe, because
those transactions spend an output only the new state creates.

- Per-leaf advance: only the LSP and that leaf's clients sign (one tx).
- When a counter is exhausted (s = K − 1), the advance carries to the nearest
  ancestor that is not, and everyone beneath that ancestor signs.
- Root advance (epoch reset) increments the root: everyone signs everything
  but the root kickoff; every other counter is reclaimed.

Each re-signed leaf state is a new L-stock *generation*; the superseded
generations are listed so the LSP can reveal their burn secrets.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import FactoryError, OdometerExhaustedError
from .shape import Shape

__all__ = ["Advance", "Odometer"]


@dataclass(frozen=True, slots=True)
class Advance:
    """The result of one odometer step and the signing work it implies."""

    before: Odometer
    after: Odometer
    requested: int
    """The node the caller asked to advance."""
    advanced: int
    """The node whose counter actually moved (an ancestor if `requested` was exhausted)."""
    resign_txs: tuple[int, ...]
    """Tree tx indexes that must be signed anew: `advanced`'s state tx and its whole subtree."""
    signers: tuple[int, ...]
    """Participants who must sign: the LSP and the clients beneath `advanced`."""
    superseded: tuple[tuple[int, int], ...]
    """(leaf, generation) pairs whose L-stock is now superseded (their secrets get revealed)."""


@dataclass(frozen=True, slots=True)
class Odometer:
    """Per-node DW counters and per-leaf L-stock generations. Immutable: steps return new ones."""

    states: tuple[int, ...]
    generations: tuple[int, ...]

    @classmethod
    def initial(cls, shape: Shape) -> Odometer:
        """Every counter at state 0 (the longest delay), every leaf at generation 0."""
        return cls((0,) * len(shape.nodes), (0,) * len(shape.leaves))

    def check(self, shape: Shape) -> None:
        """Refuse an odometer that does not fit `shape` (wrong size or out-of-range counters)."""
        k = shape.params.dw.states_per_layer
        if len(self.states) != len(shape.nodes) or len(self.generations) != len(shape.leaves):
            raise FactoryError("odometer does not match the shape")
        if any(not 0 <= s < k for s in self.states) or any(g < 0 for g in self.generations):
            raise FactoryError("odometer counter out of range")

    def sequence(self, shape: Shape, node: int) -> int:
        """The nSequence of `node`'s current state tx."""
        return shape.params.dw.sequence(self.states[node])

    def path_delay(self, shape: Shape, leaf: int) -> int:
        """Relative blocks the current states on `leaf`'s path take to confirm, in total."""
        return sum(self.sequence(shape, n) for n in shape.path(shape.leaves[leaf]))

    def epoch(self, shape: Shape, leaf: int) -> int:
        """The odometer reading along `leaf`'s path (root digit most significant)."""
        k = shape.params.dw.states_per_layer
        value = 0
        for n in shape.path(shape.leaves[leaf]):
            value = value * k + self.states[n]
        return value

    @staticmethod
    def epochs(shape: Shape, leaf: int) -> int:
        """How many epochs `leaf`'s path can count through: K^(DW layers on the path)."""
        count: int = shape.params.dw.states_per_layer ** (shape.leaf_node(leaf).depth + 1)
        return count

    def advance(self, shape: Shape, node: int) -> Advance:
        """Advance `node`'s state, carrying to the nearest non-exhausted ancestor."""
        if not 0 <= node < len(shape.nodes):
            raise FactoryError(f"no node {node}")
        k = shape.params.dw.states_per_layer
        target: int | None = node
        while target is not None and self.states[target] == k - 1:
            target = shape.nodes[target].parent
        if target is None:
            raise OdometerExhaustedError(
                f"every DW layer above node {node} is at its last state: "
                "close this factory and move its clients to a new one"
            )
        subtree = shape.subtree(target)
        states = list(self.states)
        states[target] += 1
        for n in subtree[1:]:
            states[n] = 0
        generations = list(self.generations)
        superseded = []
        for n in subtree:
            leaf = shape.nodes[n].leaf
            if leaf is not None:
                superseded.append((leaf, generations[leaf]))
                generations[leaf] += 1
        resign = [2 * target + 1]
        for n in subtree[1:]:
            resign += [2 * n, 2 * n + 1]
        return Advance(
            before=self,
            after=Odometer(tuple(states), tuple(generations)),
            requested=node,
            advanced=target,
            resign_txs=tuple(resign),
            signers=shape.signers(target),
            superseded=tuple(sorted(superseded)),
        )

    def advance_leaf(self, shape: Shape, leaf: int) -> Advance:
        """Per-leaf advance (carrying upward only when the leaf's layer is exhausted)."""
        return self.advance(shape, shape.leaves[leaf])

    def advance_root(self, shape: Shape) -> Advance:
        """Epoch reset: advance the root, reclaiming every state below it."""
        return self.advance(shape, 0)
