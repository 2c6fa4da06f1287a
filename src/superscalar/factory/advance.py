"""Per-leaf advance that sells inbound liquidity: L-stock → one client's channel.

The LSP moves `amount` sat of a leaf's L-stock into client `buyer`'s channel
(on the LSP's side of it: the client gains inbound capacity). That is a DW
advance of the leaf alone: the leaf's state tx is re-signed with the next
counter (a shorter relative lock, so it confirms before the one it replaces),
a new allocation of the same total and the next L-stock generation's point.
Only the LSP and the leaf's clients sign, and they sign one transaction.

`plan_leaf_advance` is the LSP's side (it has the whole tree);
`verify_leaf_advance` is a leaf client's: from nothing but its current leaf
state tx, the session it signed it under and the proposal's few numbers it
checks the new tx itself (same input, the next DW state, every channel script
unchanged, only the buyer's channel and the L-stock amounts moved by exactly
`amount`, the L-stock paying the new point, no dust, zero fee) and returns the
`SessionSpec` it will sign — never anything the LSP hands it.

A leaf whose DW layer is at its last state cannot advance on its own (that
would carry into the parents: a root advance); that is refused with
`OdometerExhaustedError`.

Two more rules keep an advance non-custodial both ways:

- `check_signed_state` (a leaf client's): once its partial signature for a leaf
  state tx is out, that DW state is taken. It never signs another tx spending the
  same kickoff output at the same nSequence (the LSP would hold two leaf states
  that DW cannot order, and pick the one that pays it best); only the identical tx
  may be signed again (a resumed advance).
- `check_liquidity_request` (the LSP's): free liquidity requests are capped per
  client (sat and number of advances), so one leaf client cannot use up the leaf's
  DW states and L-stock and lock the other leaf clients out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..bitcoin.fees import dust_limit
from ..bitcoin.script import P2A_SCRIPT
from ..bitcoin.sighash import SighashContext
from ..bitcoin.tx import Transaction, TxOut
from ..crypto.keys import PublicKey, XOnlyPublicKey
from .errors import FactoryError, OdometerExhaustedError
from .odometer import Advance
from .outputs import KeyAggCache, lstock_output
from .shape import FactoryParams
from .signing import SessionSpec, SigningPlan
from .tree import FactoryTree, LeafAllocation, TreeTx

__all__ = [
    "AdvanceRefusal",
    "LeafAdvance",
    "LiquidityLimits",
    "check_liquidity_request",
    "check_signed_state",
    "plan_leaf_advance",
    "verify_leaf_advance",
]


class AdvanceRefusal(FactoryError):
    """A refused advance with a machine-readable `code` (the message starts with it too)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


SIGNED_OTHER_STATE = "signed-other-state"
"""Refusal code: we already signed a different tx at this DW state of this leaf."""
LIQUIDITY_LIMIT = "liquidity-limit"
"""Refusal code: the client's per-factory liquidity allowance is used up."""


@dataclass(frozen=True)
class LeafAdvance:
    """The LSP's plan for one leaf advance: the trees before and after, and what to sign."""

    before: FactoryTree
    after: FactoryTree
    leaf: int
    buyer: int
    """Client position whose channel gains `amount` on the LSP's side."""
    amount: int
    advance: Advance

    @property
    def old_tx(self) -> TreeTx:
        return self.before.leaf_state(self.leaf)

    @property
    def new_tx(self) -> TreeTx:
        return self.after.leaf_state(self.leaf)

    @property
    def generation(self) -> int:
        """The L-stock generation the new leaf state creates."""
        return self.after.state.odometer.generations[self.leaf]

    @property
    def plan(self) -> SigningPlan:
        """One session: the new leaf state tx (session id = its tree tx index)."""
        return SigningPlan.for_tree(self.after, [self.new_tx.index])

    @property
    def positions(self) -> tuple[int, ...]:
        """The leaf's client positions (each one's channel re-anchors)."""
        node = self.before.shape.leaf_node(self.leaf)
        return tuple(range(node.lo, node.hi))


def plan_leaf_advance(
    tree: FactoryTree, buyer: int, amount: int, new_point: XOnlyPublicKey
) -> LeafAdvance:
    """Move `amount` sat from `buyer`'s leaf L-stock into its channel at the next DW state."""
    shape = tree.shape
    if not 0 <= buyer < shape.spec.n_clients:
        raise FactoryError(f"no client {buyer}")
    if amount <= 0:
        raise FactoryError("the amount must be positive")
    leaf = shape.client_leaf[buyer]
    node = shape.leaf_node(leaf)
    state = tree.state
    advance = state.odometer.advance_leaf(shape, leaf)
    if advance.advanced != node.index:
        raise OdometerExhaustedError(
            f"leaf {leaf} is at its last DW state: only a root advance (epoch reset) or a"
            " new factory can move liquidity now"
        )
    old = state.allocations[leaf]
    if amount > old.lstock:
        raise FactoryError(f"leaf {leaf} has only {old.lstock} sat of L-stock")
    channels = list(old.channels)
    channels[buyer - node.lo] += amount
    alloc = LeafAllocation(tuple(channels), old.lstock - amount)
    points = list(state.lstock_points)
    points[leaf] = new_point
    after = tree.with_state(state.advanced(advance, points, {leaf: alloc}))
    return LeafAdvance(tree, after, leaf, buyer, amount, advance)


def verify_leaf_advance(
    current: Transaction,
    session: SessionSpec,
    spent: TxOut,
    proposed: Transaction,
    *,
    params: FactoryParams,
    lsp: PublicKey,
    leaf_clients: tuple[PublicKey, ...],
    buyer_offset: int,
    amount: int,
    new_point: XOnlyPublicKey,
    cache: KeyAggCache | None = None,
) -> SessionSpec:
    """A leaf client's check of a proposed leaf state tx (see the module docstring).

    `current` is the leaf state tx the client holds signed, `session` the session it
    signed it under (its key aggregate and signers stay), `spent` the kickoff output
    both spend; `buyer_offset` is the buyer's channel index in the leaf's outputs.
    """
    n = len(leaf_clients)
    if amount <= 0:
        raise FactoryError("the amount must be positive")
    if not 0 <= buyer_offset < n:
        raise FactoryError("the buyer is not a client of this leaf")
    if (
        proposed.version != current.version
        or proposed.locktime != 0
        or len(proposed.inputs) != 1
        or proposed.inputs[0].prevout != current.inputs[0].prevout
        or proposed.inputs[0].witness
        or proposed.inputs[0].script_sig
    ):
        raise FactoryError("the new leaf state must spend the same kickoff output")
    dw = params.dw
    old_state = dw.state_of_sequence(current.inputs[0].sequence)
    new_state = dw.state_of_sequence(proposed.inputs[0].sequence)
    if old_state is None or new_state != old_state + 1:
        raise FactoryError("the new leaf state must be the next DW state (shorter lock)")
    old_outs, new_outs = current.outputs, proposed.outputs
    if len(new_outs) != len(old_outs) or len(old_outs) != n + 2:
        raise FactoryError("the new leaf state must pay the same outputs")
    if new_outs[-1] != old_outs[-1] or new_outs[-1].script_pubkey != P2A_SCRIPT:
        raise FactoryError("the new leaf state must keep its P2A anchor")
    for i in range(n):
        want = old_outs[i].value + (amount if i == buyer_offset else 0)
        if new_outs[i] != TxOut(want, old_outs[i].script_pubkey):
            raise FactoryError(f"channel output {i} is not the agreed one")
    lstock = lstock_output(lsp, list(leaf_clients), new_point, params.lstock_csv_delay, cache)
    want_lstock = TxOut(old_outs[n].value - amount, lstock.script_pubkey)
    if new_outs[n] != want_lstock:
        raise FactoryError("the L-stock output is not the agreed one")
    if sum(o.value for o in new_outs) != spent.value:
        raise FactoryError("the new leaf state does not conserve value")
    if any(o.value < dust_limit(o.script_pubkey) for o in new_outs[:-1]):
        raise FactoryError("the new leaf state has a dust output")
    msg = SighashContext(proposed, (spent,)).key_path(0)
    return replace(session, msg=msg)


def check_signed_state(signed: Sequence[Transaction], proposed: Transaction) -> bool:
    """A signed DW state is never replaced: may we sign `proposed`, given the leaf state
    txs we already gave a partial signature for (and have not seen superseded)?

    True: `proposed` is one of them (resume it, nothing new is signed); False: it is
    at a DW state we never signed; `AdvanceRefusal(signed-other-state)`: another tx
    spends the same kickoff output at the same nSequence.
    """
    txin = proposed.inputs[0]
    for tx in signed:
        if tx == proposed:
            return True
        if tx.inputs[0].prevout == txin.prevout and tx.inputs[0].sequence == txin.sequence:
            raise AdvanceRefusal(
                SIGNED_OTHER_STATE,
                f"we already signed leaf state {tx.txid_hex} at this DW state"
                f" (nSequence {txin.sequence}); we never sign another",
            )
    return False


@dataclass(frozen=True)
class LiquidityLimits:
    """The LSP's cap on the liquidity one client may request for free, per factory.

    None: the default share, so every client of a leaf keeps its part of the leaf:
    `(states_per_layer − 1) // leaf clients` advances (at least 1) and
    `initial L-stock // leaf clients` sat.
    """

    max_sat: int | None = None
    max_advances: int | None = None

    def for_leaf(self, tree: FactoryTree, leaf: int) -> tuple[int, int]:
        """(max sat, max advances) a client of `leaf` may have."""
        node = tree.shape.leaf_node(leaf)
        n = node.hi - node.lo
        k = tree.shape.params.dw.states_per_layer
        max_sat = tree.shape.lstock_amounts[leaf] // n if self.max_sat is None else self.max_sat
        max_adv = max(1, (k - 1) // n) if self.max_advances is None else self.max_advances
        return max_sat, max_adv


def check_liquidity_request(
    tree: FactoryTree, buyer: int, amount: int, bought: Sequence[int], limits: LiquidityLimits
) -> None:
    """Refuse (`AdvanceRefusal(liquidity-limit)`) a client request of `amount` sat when the
    client's finished advances in this factory (`bought`, sat each) plus this one would
    pass its allowance."""
    shape = tree.shape
    if not 0 <= buyer < shape.spec.n_clients:
        raise FactoryError(f"no client {buyer}")
    max_sat, max_adv = limits.for_leaf(tree, shape.client_leaf[buyer])
    if len(bought) + 1 > max_adv:
        raise AdvanceRefusal(
            LIQUIDITY_LIMIT,
            f"client {buyer} already had {len(bought)} advance(s) in this factory"
            f" (limit {max_adv})",
        )
    if sum(bought) + amount > max_sat:
        raise AdvanceRefusal(
            LIQUIDITY_LIMIT,
            f"client {buyer} may get {max_sat - sum(bought)} more sat in this factory"
            f" (limit {max_sat}), asked {amount}",
        )
