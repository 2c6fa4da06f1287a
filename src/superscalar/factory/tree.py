"""The factory's transactions: a shape plus a DW state becomes a tree of unsigned txs.

Building is split in two because the costs differ by orders of magnitude:
`FactoryScripts` holds every MuSig2 key aggregate of a shape (node outputs,
channel outputs), which depends only on who is where and is computed once;
`FactoryTree.build` then lays out the transactions for one DW state (cheap
hashing), so an advance re-derives the tree without re-aggregating keys.

Tree tx 2·i is node i's kickoff, 2·i+1 its state tx. Every tree tx has one
input (spent by the key path of a MuSig2 output), zero fee and a P2A anchor as
its last output; `FactoryTree.check` proves the conservation and dust rules
for every transaction, and the builder calls it, so an invalid tree is never
handed out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from ..bitcoin.fees import dust_limit
from ..bitcoin.script import P2A_SCRIPT
from ..bitcoin.sighash import SighashContext
from ..bitcoin.tx import OutPoint, Transaction, TxIn, TxOut
from ..crypto import schnorr
from ..crypto.keys import XOnlyPublicKey
from .errors import FactoryError, SigningError
from .odometer import Advance, Odometer
from .outputs import KeyAggCache, MusigOutput, channel_output, lstock_output, timeout_output
from .shape import SEQUENCE_DISABLED, Shape

__all__ = [
    "FactoryScripts",
    "FactoryState",
    "FactoryTree",
    "LeafAllocation",
    "SignedTree",
    "TreeTx",
    "TxKind",
]


class TxKind(StrEnum):
    KICKOFF = "kickoff"
    STATE = "state"


@dataclass(frozen=True, slots=True)
class LeafAllocation:
    """How a leaf state tx splits its value: one channel per client, then the L-stock."""

    channels: tuple[int, ...]
    lstock: int

    @property
    def total(self) -> int:
        return sum(self.channels) + self.lstock


@dataclass(frozen=True)
class FactoryState:
    """What changes between DW states: counters, L-stock points, leaf allocations.

    Moving liquidity from a leaf's L-stock into its channels (selling inbound
    capacity) is a leaf advance with a new `LeafAllocation` of the same total.
    """

    odometer: Odometer
    lstock_points: tuple[XOnlyPublicKey, ...]
    """P_g of each leaf's current generation (see `outputs`)."""
    allocations: tuple[LeafAllocation, ...]

    @classmethod
    def initial(cls, shape: Shape, lstock_points: Sequence[XOnlyPublicKey]) -> FactoryState:
        clients = shape.spec.clients
        allocations = tuple(
            LeafAllocation(
                tuple(c.channel_amount for c in clients[node.lo : node.hi]),
                shape.lstock_amounts[leaf],
            )
            for leaf, node in enumerate(map(shape.nodes.__getitem__, shape.leaves))
        )
        return cls(Odometer.initial(shape), tuple(lstock_points), allocations)

    def advanced(
        self,
        advance: Advance,
        lstock_points: Sequence[XOnlyPublicKey],
        allocations: Mapping[int, LeafAllocation] | None = None,
    ) -> FactoryState:
        """The state after `advance`, with new points and optionally new leaf allocations."""
        if advance.before != self.odometer:
            raise FactoryError("advance was computed from a different odometer")
        merged = list(self.allocations)
        for leaf, alloc in (allocations or {}).items():
            merged[leaf] = alloc
        return FactoryState(advance.after, tuple(lstock_points), tuple(merged))

    def check(self, shape: Shape) -> None:
        """Refuse a state whose counters, points or leaf amounts do not fit `shape`."""
        self.odometer.check(shape)
        n_leaves = len(shape.leaves)
        if len(self.lstock_points) != n_leaves or len(self.allocations) != n_leaves:
            raise FactoryError("need one L-stock point and one allocation per leaf")
        anchor = shape.params.fees.anchor_value
        for leaf, alloc in enumerate(self.allocations):
            node = shape.leaf_node(leaf)
            if len(alloc.channels) != node.n_clients:
                raise FactoryError(f"leaf {leaf} needs {node.n_clients} channel amounts")
            if alloc.total != node.amount - 2 * anchor:
                raise FactoryError(
                    f"leaf {leaf} allocation pays {alloc.total} sat, "
                    f"its state tx has {node.amount - 2 * anchor}"
                )


@dataclass(frozen=True)
class FactoryScripts:
    """Every MuSig2 output of a shape that does not depend on the DW state."""

    shape: Shape
    node_outputs: tuple[MusigOutput, ...]
    """Output spent by node i's kickoff (and created by it for its state tx)."""
    channel_outputs: tuple[MusigOutput, ...]
    """Channel output of each client position."""
    cache: KeyAggCache = field(repr=False, compare=False)

    @classmethod
    def build(cls, shape: Shape, cache: KeyAggCache | None = None) -> FactoryScripts:
        spec = shape.spec
        cache = cache if cache is not None else KeyAggCache()
        lsp_x = spec.lsp.xonly()
        cltv = spec.params.cltv_timeout
        client_keys = [c.key for c in spec.clients]
        nodes = tuple(
            timeout_output([spec.lsp, *client_keys[n.lo : n.hi]], lsp_x, cltv, cache)
            for n in shape.nodes
        )
        channels = tuple(channel_output(k, spec.lsp, cache) for k in client_keys)
        return cls(shape, nodes, channels, cache)

    @property
    def funding(self) -> MusigOutput:
        return self.node_outputs[0]

    def lstock(self, leaf: int, point: XOnlyPublicKey) -> MusigOutput:
        node = self.shape.leaf_node(leaf)
        spec = self.shape.spec
        clients = [c.key for c in spec.clients[node.lo : node.hi]]
        return lstock_output(spec.lsp, clients, point, spec.params.lstock_csv_delay, self.cache)


@dataclass(frozen=True)
class TreeTx:
    """One unsigned tree transaction and everything needed to sign its single input."""

    index: int
    node: int
    kind: TxKind
    tx: Transaction
    spent: TxOut
    spent_output: MusigOutput
    signers: tuple[int, ...]
    """Participant indexes (0 = LSP) whose keys make up `spent_output`'s aggregate."""
    sighash: bytes

    @property
    def txid(self) -> bytes:
        return self.tx.txid

    @property
    def anchor_vout(self) -> int:
        return len(self.tx.outputs) - 1

    @property
    def sequence(self) -> int:
        return self.tx.inputs[0].sequence


@dataclass(frozen=True)
class FactoryTree:
    """All tree transactions of one DW state, unsigned."""

    shape: Shape
    scripts: FactoryScripts
    state: FactoryState
    txs: tuple[TreeTx, ...]
    lstock_outputs: tuple[MusigOutput, ...]

    @classmethod
    def build(
        cls, shape: Shape, state: FactoryState, scripts: FactoryScripts | None = None
    ) -> FactoryTree:
        state.check(shape)
        if scripts is None:
            scripts = FactoryScripts.build(shape)
        elif scripts.shape is not shape:
            raise FactoryError("scripts were built for a different shape")
        params = shape.params
        version, anchor_value = params.fees.tx_version, params.fees.anchor_value
        anchor = TxOut(anchor_value, P2A_SCRIPT)
        lstocks = tuple(scripts.lstock(leaf, p) for leaf, p in enumerate(state.lstock_points))
        funding = scripts.funding
        inputs: dict[int, tuple[OutPoint, TxOut]] = {
            0: (shape.spec.funding_outpoint, funding.txout(shape.spec.funding_amount))
        }
        txs: list[TreeTx] = []
        for node in shape.nodes:
            prevout, spent = inputs.pop(node.index)
            out = scripts.node_outputs[node.index]
            signers = shape.signers(node.index)
            kickoff_out = out.txout(node.amount - anchor_value)
            kickoff = Transaction(
                version, (TxIn(prevout, sequence=SEQUENCE_DISABLED),), (kickoff_out, anchor)
            )
            txs.append(
                _tree_tx(2 * node.index, node.index, TxKind.KICKOFF, kickoff, spent, out, signers)
            )
            if node.leaf is None:
                outputs = [
                    scripts.node_outputs[c].txout(shape.nodes[c].amount) for c in node.children
                ]
            else:
                alloc = state.allocations[node.leaf]
                outputs = [
                    scripts.channel_outputs[pos].txout(value)
                    for pos, value in zip(range(node.lo, node.hi), alloc.channels, strict=True)
                ]
                outputs.append(lstocks[node.leaf].txout(alloc.lstock))
            state_tx = Transaction(
                version,
                (TxIn(kickoff.outpoint(0), sequence=state.odometer.sequence(shape, node.index)),),
                (*outputs, anchor),
            )
            txs.append(
                _tree_tx(
                    2 * node.index + 1,
                    node.index,
                    TxKind.STATE,
                    state_tx,
                    kickoff_out,
                    out,
                    signers,
                )
            )
            for vout, child in enumerate(node.children):
                inputs[child] = (state_tx.outpoint(vout), outputs[vout])
        tree = cls(shape, scripts, state, tuple(txs), lstocks)
        tree.check()
        return tree

    def with_state(self, state: FactoryState) -> FactoryTree:
        """The tree for another DW state of the same factory (keys are not re-aggregated)."""
        return FactoryTree.build(self.shape, state, self.scripts)

    def check(self) -> None:
        """Every tx conserves value exactly (zero fee), carries one anchor, has no dust."""
        anchor_value = self.shape.params.fees.anchor_value
        for t in self.txs:
            outs = t.tx.outputs
            if sum(o.value for o in outs) != t.spent.value:
                raise FactoryError(f"tree tx {t.index} does not conserve value")
            if outs[-1] != TxOut(anchor_value, P2A_SCRIPT):
                raise FactoryError(f"tree tx {t.index} lacks its P2A anchor")
            if any(o.script_pubkey == P2A_SCRIPT for o in outs[:-1]):
                raise FactoryError(f"tree tx {t.index} has more than one anchor")
            for o in outs[:-1]:
                if o.value < dust_limit(o.script_pubkey):
                    raise FactoryError(f"tree tx {t.index} has a dust output of {o.value} sat")

    @property
    def funding_output(self) -> MusigOutput:
        return self.scripts.funding

    @property
    def funding_txout(self) -> TxOut:
        """The output the LSP's funding transaction must create."""
        return self.scripts.funding.txout(self.shape.spec.funding_amount)

    def kickoff(self, node: int) -> TreeTx:
        return self.txs[2 * node]

    def state_tx(self, node: int) -> TreeTx:
        return self.txs[2 * node + 1]

    def leaf_state(self, leaf: int) -> TreeTx:
        return self.state_tx(self.shape.leaves[leaf])

    def channel_outpoint(self, client: int) -> OutPoint:
        """Where client position `client`'s channel output is, once its leaf state confirms."""
        node = self.shape.node_of_client(client)
        return self.state_tx(node.index).tx.outpoint(client - node.lo)

    def channel_txout(self, client: int) -> TxOut:
        node = self.shape.node_of_client(client)
        return self.state_tx(node.index).tx.outputs[client - node.lo]

    def lstock_outpoint(self, leaf: int) -> OutPoint:
        node = self.shape.leaf_node(leaf)
        return self.state_tx(node.index).tx.outpoint(node.n_clients)

    def lstock_txout(self, leaf: int) -> TxOut:
        node = self.shape.leaf_node(leaf)
        return self.state_tx(node.index).tx.outputs[node.n_clients]


def _tree_tx(
    index: int,
    node: int,
    kind: TxKind,
    tx: Transaction,
    spent: TxOut,
    spent_output: MusigOutput,
    signers: tuple[int, ...],
) -> TreeTx:
    sighash = SighashContext(tx, (spent,)).key_path(0)
    return TreeTx(index, node, kind, tx, spent, spent_output, signers, sighash)


@dataclass(frozen=True)
class SignedTree:
    """A tree with one aggregated BIP340 key-path signature per transaction."""

    tree: FactoryTree
    signatures: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if len(self.signatures) != len(self.tree.txs):
            raise SigningError("need one signature per tree transaction")

    def signed_tx(self, index: int) -> Transaction:
        return self.tree.txs[index].tx.with_witness(0, (self.signatures[index],))

    def verify(self) -> None:
        """Check every signature against the output key it spends (BIP340, not the kernel)."""
        for t, sig in zip(self.tree.txs, self.signatures, strict=True):
            if not schnorr.verify(t.spent_output.signing.xonly, t.sighash, sig):
                raise SigningError("tree signature does not verify", session=t.index)

    def updated(self, tree: FactoryTree, signatures: Mapping[int, bytes]) -> SignedTree:
        """The signed tree after an advance: new signatures for the re-signed txs.

        Every tx not re-signed must be unchanged (same sighash), so its old
        signature still holds; anything else is refused.
        """
        if tree.shape is not self.tree.shape or len(tree.txs) != len(self.tree.txs):
            raise SigningError("updated tree has a different shape")
        sigs = list(self.signatures)
        for i, (old, new) in enumerate(zip(self.tree.txs, tree.txs, strict=True)):
            if i in signatures:
                sigs[i] = signatures[i]
            elif old.sighash != new.sighash:
                raise SigningError("tree tx changed but was not re-signed", session=i)
        return SignedTree(tree, tuple(sigs))
