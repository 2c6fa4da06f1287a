"""Getting money out without cooperation: unilateral exit, LSP timeout recovery, L-stock burn.

- **Unilateral exit** of one client: its root→leaf path, signed, broadcast
  node by node. Each tree tx pays zero fee, so it goes out as a package with a
  CPFP child spending its P2A anchor (`cpfp_child`). A state tx can only
  confirm `relative_delay` blocks after its kickoff (BIP68), and with TRUC
  (v3) each parent may have one unconfirmed child, so the path is walked one
  confirmation at a time.
- **Timeout recovery**: after the factory's CLTV height the LSP alone spends any
  node output still unspent (the funding output if nobody exited) through the
  timeout leaf; nLockTime = CLTV and a non-final nSequence make BIP65 pass.
  `onchain_node_outputs` finds them: it walks the tree from the funding
  outpoint down every branch whose txs confirmed, to the deepest confirmed tx,
  and returns each unspent node output there. Channel and L-stock outputs are
  never among them (channels belong to the channel layer, L-stocks have their
  own CSV sweep and burn).
- **L-stock burn**: when a superseded leaf state confirms, a client holding that
  generation's revealed secret spends its L-stock through the burn leaf to a
  lone OP_RETURN, giving the whole amount to miners (see `outputs`). Bitcoin
  Core's `maxfeerate` guard must be lifted to broadcast it (it is meant to
  look like an absurd fee).
- **L-stock sweep**: the honest LSP's CSV-delayed path for a current L-stock.

Only the LSP's or a burn key signs here (single-key BIP340), so these
functions sign directly; nothing is broadcast from this module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ..bitcoin.cpfp import cpfp_child
from ..bitcoin.fees import Feerate, dust_limit
from ..bitcoin.script import P2A_SCRIPT, op_return_script
from ..bitcoin.sighash import SighashContext
from ..bitcoin.tx import OutPoint, Transaction, TxIn, TxOut
from ..crypto import schnorr
from ..crypto.keys import SecretKey
from .errors import FactoryError
from .outputs import LSTOCK_BURN_LEAF, LSTOCK_SWEEP_LEAF, MusigOutput
from .tree import FactoryTree, SignedTree, TxKind
from .view import VerifiedView

__all__ = [
    "BURN_SCRIPT",
    "ExitPath",
    "ExitStep",
    "TreeOutput",
    "client_exit",
    "cpfp_child",
    "funding_output_ref",
    "lstock_burn_tx",
    "lstock_output_ref",
    "lstock_sweep_tx",
    "onchain_node_outputs",
    "timeout_recovery_tx",
    "tx_output_ref",
    "unilateral_exit",
]

BURN_SCRIPT = op_return_script(b"burn")
"""Where burnt L-stock goes: a provably unspendable output (value 0, all to fees).
Long enough that the burn tx meets Core's 65-byte minimum non-witness size."""
_SEQUENCE_ENABLE_LOCKTIME = 0xFFFFFFFE


@dataclass(frozen=True, slots=True)
class ExitStep:
    """One signed path transaction and what it takes to get it mined."""

    kind: TxKind
    tx: Transaction
    spent: TxOut
    relative_delay: int
    """Blocks its parent must have been confirmed for (BIP68; 0 for kickoffs)."""
    anchor: OutPoint
    anchor_value: int

    @property
    def vsize(self) -> int:
        return self.tx.vsize


@dataclass(frozen=True)
class ExitPath:
    """A client's unilateral exit: broadcast `steps` in order, then the channel is on chain."""

    client: int
    steps: tuple[ExitStep, ...]
    channel_outpoint: OutPoint
    channel_txout: TxOut
    worst_case_delay: int
    """Σ step × (K − 1) over the path's DW layers: the delay if every state were the oldest."""

    @property
    def txs(self) -> tuple[Transaction, ...]:
        return tuple(s.tx for s in self.steps)

    @property
    def vsize(self) -> int:
        """vbytes of the path transactions alone (CPFP children not included)."""
        return sum(s.vsize for s in self.steps)

    @property
    def current_delay(self) -> int:
        """Σ of the relative delays of the states actually signed (newest states wait least)."""
        return sum(s.relative_delay for s in self.steps)


def _step(kind: TxKind, tx: Transaction, spent: TxOut) -> ExitStep:
    seq = tx.inputs[0].sequence
    delay = 0 if kind is TxKind.KICKOFF else seq & 0xFFFF
    anchor_vout = len(tx.outputs) - 1
    if tx.outputs[anchor_vout].script_pubkey != P2A_SCRIPT:  # pragma: no cover - tree checks
        raise FactoryError("tree tx has no anchor")
    return ExitStep(kind, tx, spent, delay, tx.outpoint(anchor_vout), tx.outputs[-1].value)


def unilateral_exit(signed: SignedTree, client: int) -> ExitPath:
    """The LSP-side (or full-tree) exit path of client position `client`."""
    tree = signed.tree
    steps = tuple(
        _step(tree.txs[i].kind, signed.signed_tx(i), tree.txs[i].spent)
        for i in tree.shape.client_txs(client)
    )
    return ExitPath(
        client,
        steps,
        tree.channel_outpoint(client),
        tree.channel_txout(client),
        tree.shape.exit_delay(tree.shape.client_leaf[client]),
    )


def client_exit(verified: VerifiedView, signatures: Mapping[int, bytes]) -> ExitPath:
    """The client-side exit path: its verified view plus the final signatures it received."""
    steps = []
    for step, session, spent in zip(
        verified.view.steps, verified.sessions, verified.spent, strict=True
    ):
        sig = signatures.get(step.tx_index)
        if sig is None or not schnorr.verify(session.keyagg.xonly, session.msg, sig):
            raise FactoryError(f"missing or invalid signature for path tx {step.tx_index}")
        steps.append(_step(step.kind, step.tx.with_witness(0, (sig,)), spent))
    leaf_tx = steps[-1].tx
    return ExitPath(
        verified.view.client,
        tuple(steps),
        verified.channel_outpoint,
        leaf_tx.outputs[verified.channel_outpoint.vout],
        verified.worst_case_exit_delay,
    )


# -- single-key script-path spends -------------------------------------------------


@dataclass(frozen=True, slots=True)
class TreeOutput:
    """A factory output as something to spend: where it is, what it holds, how it is locked."""

    outpoint: OutPoint
    txout: TxOut
    output: MusigOutput


def funding_output_ref(tree: FactoryTree) -> TreeOutput:
    return TreeOutput(tree.shape.spec.funding_outpoint, tree.funding_txout, tree.funding_output)


def tx_output_ref(tree: FactoryTree, tx_index: int, vout: int) -> TreeOutput:
    """A non-anchor output of tree tx `tx_index` (node outputs, channels, L-stock)."""
    t = tree.txs[tx_index]
    node = tree.shape.nodes[t.node]
    outs = t.tx.outputs
    if not 0 <= vout < len(outs) - 1:
        raise FactoryError(f"tree tx {tx_index} has no non-anchor output {vout}")
    if t.kind is TxKind.KICKOFF:
        output = tree.scripts.node_outputs[node.index]
    elif node.leaf is None:
        output = tree.scripts.node_outputs[node.children[vout]]
    elif vout < node.n_clients:
        output = tree.scripts.channel_outputs[node.lo + vout]
    else:
        output = tree.lstock_outputs[node.leaf]
    return TreeOutput(t.tx.outpoint(vout), outs[vout], output)


def onchain_node_outputs(
    tree: FactoryTree,
    unspent: Callable[[OutPoint], bool],
    confirmed: Callable[[bytes], bool],
) -> tuple[TreeOutput, ...]:
    """Every node output of `tree` that is confirmed and unspent (what the timeout leaf
    can sweep), found by walking down from the funding outpoint.

    `unspent(outpoint)`: the output is in a block and nothing (mined or in the mempool)
    spends it; `confirmed(txid)`: the tx is in a block. A branch is followed only
    through txs of this tree's DW state that confirmed: a node output spent by
    anything else (a close, another state) ends the walk there. Nodes are visited
    parents first, so the result is in tree order.
    """
    funding = funding_output_ref(tree)
    if unspent(funding.outpoint):
        return (funding,)
    found: list[TreeOutput] = []
    frontier = [0]
    while frontier:
        node = tree.shape.nodes[frontier.pop(0)]
        kickoff, state = tree.kickoff(node.index), tree.state_tx(node.index)
        if not confirmed(kickoff.txid):
            continue
        ref = tx_output_ref(tree, kickoff.index, 0)
        if unspent(ref.outpoint):
            found.append(ref)
            continue
        if node.leaf is not None or not confirmed(state.txid):
            continue  # a leaf's outputs are channels and the L-stock, not node outputs
        for vout, child in enumerate(node.children):
            ref = tx_output_ref(tree, state.index, vout)
            if unspent(ref.outpoint):
                found.append(ref)
            else:
                frontier.append(child)
    return tuple(found)


def lstock_output_ref(tree: FactoryTree, leaf: int) -> TreeOutput:
    node = tree.shape.leaf_node(leaf)
    return tx_output_ref(tree, node.state_tx, node.n_clients)


def _script_path_spend(
    spends: Sequence[tuple[TreeOutput, int, SecretKey]],
    outputs: Sequence[TxOut],
    *,
    version: int,
    locktime: int,
    sequence: int,
) -> Transaction:
    tx = Transaction(
        version,
        tuple(TxIn(ref.outpoint, sequence=sequence) for ref, _, _ in spends),
        tuple(outputs),
        locktime,
    )
    ctx = SighashContext(tx, tuple(ref.txout for ref, _, _ in spends))
    witnesses = []
    for i, (ref, leaf, key) in enumerate(spends):
        spend = ref.output.spend
        sig = schnorr.sign(key, ctx.script_path(i, spend.leaves[leaf].leaf_hash))
        witnesses.append(spend.script_path_witness(leaf, (sig,)))
    return tx.with_witnesses(witnesses)


def _sweep_amount(total: int, destination: bytes, feerate: Feerate, probe: Transaction) -> int:
    fee = feerate.fee_for_vsize(probe.vsize)
    amount = total - fee
    if amount < dust_limit(destination):
        raise FactoryError(f"{total} sat cannot pay a {fee}-sat fee above dust")
    return amount


def timeout_recovery_tx(
    outputs: Sequence[TreeOutput],
    cltv_timeout: int,
    lsp_key: SecretKey,
    destination: bytes,
    feerate: Feerate,
) -> Transaction:
    """The LSP sweeps node outputs through their CLTV timeout leaf (valid from `cltv_timeout`)."""
    if not outputs:
        raise FactoryError("nothing to recover")
    spends = [(ref, 0, lsp_key) for ref in outputs]
    total = sum(ref.txout.value for ref in outputs)
    kw = {"version": 2, "locktime": cltv_timeout, "sequence": _SEQUENCE_ENABLE_LOCKTIME}
    probe = _script_path_spend(spends, [TxOut(total, destination)], **kw)
    amount = _sweep_amount(total, destination, feerate, probe)
    return _script_path_spend(spends, [TxOut(amount, destination)], **kw)


def lstock_burn_tx(ref: TreeOutput, burn_key: SecretKey) -> Transaction:
    """Burn a superseded L-stock: all of it to fees, via the revealed generation secret."""
    if burn_key.xonly_public_key.data not in ref.output.spend.leaves[LSTOCK_BURN_LEAF].script:
        raise FactoryError("burn key does not belong to this L-stock output")
    return _script_path_spend(
        [(ref, LSTOCK_BURN_LEAF, burn_key)],
        [TxOut(0, BURN_SCRIPT)],
        version=2,
        locktime=0,
        sequence=0xFFFFFFFF,
    )


def lstock_sweep_tx(
    ref: TreeOutput, csv_delay: int, lsp_key: SecretKey, destination: bytes, feerate: Feerate
) -> Transaction:
    """The LSP's own spend of a current L-stock, `csv_delay` blocks after it confirmed."""
    kw = {"version": 2, "locktime": 0, "sequence": csv_delay}
    spends = [(ref, LSTOCK_SWEEP_LEAF, lsp_key)]
    probe = _script_path_spend(spends, [TxOut(ref.txout.value, destination)], **kw)
    amount = _sweep_amount(ref.txout.value, destination, feerate, probe)
    return _script_path_spend(spends, [TxOut(amount, destination)], **kw)
