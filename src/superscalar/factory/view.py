"""A client's path-only view of the factory, and its verification before signing.

The LSP sends each client (PROPOSE) only the transactions on that client's
root→leaf path, the client ranges of every node on it and of their siblings,
the participants' keys (needed to recompute the funding aggregate) and the
client's leaf L-stock point. The client trusts none of it: `verify_view`
rebuilds every output script it can see from keys and its own copy of the
factory parameters, recomputes every sighash itself, and refuses unless

- the path starts at the funding outpoint, whose script is the N+1-of-N+1
  aggregate of the LSP and every participant, with the agreed CLTV timeout;
- each tx spends exactly the previous path tx's output leading to it, is of
  the agreed version, has nLockTime 0 and the right nSequence (kickoff:
  disabled; state: a valid DW state of the agreed step and K);
- each tx pays zero fee (outputs sum to the spent value), ends with exactly
  one P2A anchor of the agreed value, and has no dust;
- every non-anchor output is the one the (sibling) node ranges imply: node
  outputs are MuSig2 of exactly the LSP and the range's clients with the
  timeout leaf, sibling ranges partition their parent, the client is under
  every node of its path;
- the leaf pays one channel output per leaf client (MuSig2(client, LSP)), its
  own of exactly the agreed capacity, plus the L-stock for the given point;
- the worst-case exit delay fits both the factory's budget and the client's.

`verify_view` takes the parameters as given in `ClientExpectation.params`: it
checks the view is sound *for* them, not that they are safe. Parameters that
arrive in the same PROPOSE as the view must first pass the client's own policy
(`factory.safety`: CLTV far enough above the height the client reads, DW step,
states, arity and anchor bounded by its config, its exit window before the
CLTV timeout); comparing the message with parameters derived from itself
would check nothing.

This catches a valid-looking path inside an invalid tree: a sibling subtree
paid to the wrong keys, an inflated sibling amount that breaks conservation, a
funding key that does not include everybody. What the client then signs are
the `SessionSpec`s built here, not anything the LSP sends later.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from ..bitcoin.fees import dust_limit
from ..bitcoin.script import P2A_SCRIPT
from ..bitcoin.sighash import SighashContext
from ..bitcoin.tx import MAX_MONEY, OutPoint, Transaction, TxOut, encode_varint, read_varint
from ..crypto.keys import PublicKey, XOnlyPublicKey
from .errors import ViewError
from .outputs import KeyAggCache, MusigOutput, channel_output, lstock_output, timeout_output
from .shape import SEQUENCE_DISABLED, FactoryParams
from .signing import SessionSpec, participant_index
from .tree import FactoryTree, TxKind

__all__ = [
    "ClientExpectation",
    "ClientView",
    "VerifiedView",
    "ViewStep",
    "extract_view",
    "verify_view",
]


@dataclass(frozen=True, slots=True)
class ViewStep:
    """One transaction of the client's path, with the node ranges needed to check its outputs."""

    tx_index: int
    kind: TxKind
    tx: Transaction
    signers: tuple[int, int]
    """Client positions [lo, hi) of the node this tx belongs to (the LSP signs too)."""
    outputs: tuple[tuple[int, int], ...]
    """Client range of each non-anchor output (kickoff: its own node; internal state: each
    child; leaf state: empty, the leaf's outputs are channels and L-stock)."""
    next_vout: int | None
    """The output the client's path continues through (None at its leaf state)."""


@dataclass(frozen=True)
class ClientView:
    """The PROPOSE message for one client: its path, not the tree."""

    client: int
    params: FactoryParams
    lsp: PublicKey
    participants: tuple[PublicKey, ...]
    """Every client's key by position: the funding output aggregates all of them."""
    funding_outpoint: OutPoint
    funding_amount: int
    steps: tuple[ViewStep, ...]
    lstock_point: XOnlyPublicKey

    def to_bytes(self) -> bytes:
        """The compact encoding PROPOSE carries (params and LSP key travel beside it)."""
        return _encode_path(
            self.client,
            self.funding_outpoint,
            self.funding_amount,
            self.steps,
            self.lstock_point,
            self.participants,
        )

    @classmethod
    def from_bytes(cls, data: bytes, params: FactoryParams, lsp: PublicKey) -> ClientView:
        """Strict inverse of `to_bytes`: anything malformed, oversized or trailing is a
        `ViewError`. Decoding checks only the encoding; `verify_view` checks the content."""
        try:
            return _decode_path(bytes(data), params, lsp)
        except ViewError:
            raise
        except (ValueError, IndexError) as exc:  # bad key, bad tx, bad outpoint
            raise ViewError(f"malformed view: {exc}") from exc


def _encode_path(
    client: int,
    funding: OutPoint,
    amount: int,
    steps: Sequence[ViewStep],
    point: XOnlyPublicKey,
    participants: Sequence[PublicKey] = (),
) -> bytes:
    out = [encode_varint(client), funding.serialize(), amount.to_bytes(8, "little")]
    out += [encode_varint(len(participants)), *(k.data for k in participants)]
    out.append(encode_varint(len(steps)))
    for step in steps:
        raw = step.tx.to_bytes()
        out += [encode_varint(step.tx_index), encode_varint(len(raw)), raw]
        out += [encode_varint(step.signers[0]), encode_varint(step.signers[1])]
        out.append(encode_varint(len(step.outputs)))
        out += [encode_varint(lo) + encode_varint(hi) for lo, hi in step.outputs]
    out.append(point.data)
    return b"".join(out)


MAX_VIEW_PARTICIPANTS = 1 << 16
"""More clients than any factory we build; bounds what a decoder allocates."""
MAX_VIEW_STEPS = 128
MAX_VIEW_TX_BYTES = 100_000


class _Cursor:
    """Bounds-checked reads over the view encoding."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ViewError("malformed view: truncated")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def varint(self, limit: int) -> int:
        try:
            value, self.pos = read_varint(self.data, self.pos)
        except ValueError as exc:
            raise ViewError(f"malformed view: {exc}") from exc
        if value > limit:
            raise ViewError(f"malformed view: {value} exceeds {limit}")
        return value


def _decode_path(data: bytes, params: FactoryParams, lsp: PublicKey) -> ClientView:
    r = _Cursor(data)
    client = r.varint(MAX_VIEW_PARTICIPANTS)
    raw_outpoint = r.take(36)
    funding = OutPoint(raw_outpoint[:32], int.from_bytes(raw_outpoint[32:], "little"))
    amount = int.from_bytes(r.take(8), "little")
    if amount > MAX_MONEY:
        raise ViewError(f"malformed view: funding amount {amount} exceeds MAX_MONEY")
    n_parts = r.varint(MAX_VIEW_PARTICIPANTS)
    participants = tuple(PublicKey(r.take(33)) for _ in range(n_parts))
    n_steps = r.varint(MAX_VIEW_STEPS)
    raw_steps: list[tuple[int, Transaction, tuple[int, int], tuple[tuple[int, int], ...]]] = []
    for _ in range(n_steps):
        index = r.varint(0xFFFF_FFFF)
        tx = Transaction.from_bytes(r.take(r.varint(MAX_VIEW_TX_BYTES)))
        signers = (r.varint(MAX_VIEW_PARTICIPANTS), r.varint(MAX_VIEW_PARTICIPANTS))
        n_out = r.varint(MAX_VIEW_PARTICIPANTS)
        outs = tuple(
            (r.varint(MAX_VIEW_PARTICIPANTS), r.varint(MAX_VIEW_PARTICIPANTS)) for _ in range(n_out)
        )
        raw_steps.append((index, tx, signers, outs))
    point = XOnlyPublicKey(r.take(32))
    if r.pos != len(data):
        raise ViewError(f"malformed view: {len(data) - r.pos} trailing bytes")
    steps = []
    for i, (index, tx, signers, outs) in enumerate(raw_steps):
        kind = TxKind.STATE if index % 2 else TxKind.KICKOFF
        nxt = raw_steps[i + 1][2] if i + 1 < len(raw_steps) else None
        # where the path goes on is implied by the next node's range (verify_view checks it)
        if kind is TxKind.KICKOFF:
            vout: int | None = 0
        else:
            vout = outs.index(nxt) if nxt is not None and nxt in outs else None
        steps.append(ViewStep(index, kind, tx, signers, outs, vout))
    return ClientView(client, params, lsp, participants, funding, amount, tuple(steps), point)


def extract_view(tree: FactoryTree, client: int) -> ClientView:
    """The LSP's side: cut `client`'s path view out of the full tree."""
    shape = tree.shape
    spec = shape.spec
    if not 0 <= client < spec.n_clients:
        raise ViewError(f"no client {client}")
    path = shape.client_path(client)
    steps = []
    for depth, n in enumerate(path):
        node = shape.nodes[n]
        span = (node.lo, node.hi)
        nxt = path[depth + 1] if depth + 1 < len(path) else None
        steps.append(ViewStep(2 * n, TxKind.KICKOFF, tree.kickoff(n).tx, span, (span,), 0))
        if node.leaf is None:
            kids = tuple((shape.nodes[c].lo, shape.nodes[c].hi) for c in node.children)
            vout = node.children.index(nxt) if nxt is not None else None
            steps.append(ViewStep(2 * n + 1, TxKind.STATE, tree.state_tx(n).tx, span, kids, vout))
        else:
            steps.append(ViewStep(2 * n + 1, TxKind.STATE, tree.state_tx(n).tx, span, (), None))
    leaf = shape.client_leaf[client]
    return ClientView(
        client=client,
        params=spec.params,
        lsp=spec.lsp,
        participants=tuple(c.key for c in spec.clients),
        funding_outpoint=spec.funding_outpoint,
        funding_amount=spec.funding_amount,
        steps=tuple(steps),
        lstock_point=tree.state.lstock_points[leaf],
    )


@dataclass(frozen=True)
class ClientExpectation:
    """What the client knows on its own and will not take from the LSP."""

    key: PublicKey
    channel_amount: int
    lsp: PublicKey
    params: FactoryParams
    """The parameters the client accepted by its own policy (`factory.safety`); the view
    must be built with exactly these."""
    max_exit_delay: int | None = None
    """The client's own ceiling on worst-case exit delay (None: the factory budget)."""
    initial: bool = False
    """A new factory: every state tx must be DW state 0 (the longest delay), so the
    factory starts with all its updates ahead of it."""


@dataclass(frozen=True)
class VerifiedView:
    """A view that passed `verify_view`: what the client signs and keeps."""

    view: ClientView
    sessions: tuple[SessionSpec, ...]
    """The client's sessions, built from its own checks (feed them to `signing.Signer`)."""
    spent: tuple[TxOut, ...]
    """The output each path tx spends (needed to sign, verify and CPFP at exit time)."""
    funding_txout: TxOut
    """What the funding outpoint must hold on chain: check it before relying on the tree."""
    funding_output: MusigOutput
    """The funding output's key (all participants): what a cooperative close spends."""
    channel_outpoint: OutPoint
    channel_output: MusigOutput
    worst_case_exit_delay: int

    @property
    def participant(self) -> int:
        return self.view.client + 1

    def kept_bytes(self, signatures: int = 0) -> int:
        """Bytes the client keeps: its path txs, ranges, L-stock point (+ 64 per signature)."""
        v = self.view
        raw = _encode_path(v.client, v.funding_outpoint, v.funding_amount, v.steps, v.lstock_point)
        return len(raw) + 64 * signatures


def _fail(step: int | None, message: str) -> ViewError:
    return ViewError(f"path tx {step}: {message}" if step is not None else message)


def verify_view(
    view: ClientView, expect: ClientExpectation, cache: KeyAggCache | None = None
) -> VerifiedView:
    """Check all the client can see (see the module docstring); `ViewError` if anything is off."""
    params = expect.params
    if view.params != params:
        raise ViewError("factory parameters differ from the ones agreed")
    if view.lsp != expect.lsp:
        raise ViewError("LSP key differs from the one agreed")
    parts = view.participants
    if not 0 <= view.client < len(parts) or parts[view.client] != expect.key:
        raise ViewError("the client's key is not at its claimed position")
    keys = participant_index(view.lsp, parts)
    if len(keys) != len(parts) + 1:
        raise ViewError("participant keys are not distinct")
    steps = view.steps
    if len(steps) < 2 or len(steps) % 2:
        raise ViewError("a path is kickoff/state pairs")

    lsp_x = view.lsp.xonly()
    cltv = params.cltv_timeout
    fees = params.fees
    anchor = TxOut(fees.anchor_value, P2A_SCRIPT)
    me = view.client

    def node_output(span: tuple[int, int]) -> MusigOutput:
        return timeout_output([view.lsp, *parts[span[0] : span[1]]], lsp_x, cltv, cache)

    prev_out = view.funding_outpoint
    spent_output = funding_output = node_output((0, len(parts)))
    spent = funding_txout = spent_output.txout(view.funding_amount)
    span = (0, len(parts))
    sessions: list[SessionSpec] = []
    spents: list[TxOut] = []
    layers = 0
    channel: tuple[OutPoint, MusigOutput] | None = None
    for i, step in enumerate(steps):
        tx = step.tx
        kind = TxKind.KICKOFF if i % 2 == 0 else TxKind.STATE
        if step.kind is not kind or step.tx_index % 2 != (kind is TxKind.STATE):
            raise _fail(i, f"expected a {kind.value} tx")
        if kind is TxKind.STATE and step.tx_index != steps[i - 1].tx_index + 1:
            raise _fail(i, "state tx must follow its own node's kickoff")
        if step.signers != span or not span[0] <= me < span[1]:
            raise _fail(i, "node range does not follow the path")
        if tx.version != fees.tx_version or tx.locktime != 0 or len(tx.inputs) != 1:
            raise _fail(i, "wrong version, locktime or input count")
        txin = tx.inputs[0]
        if txin.prevout != prev_out or txin.witness or txin.script_sig:
            raise _fail(i, "does not spend the previous path output")
        if kind is TxKind.KICKOFF:
            if txin.sequence != SEQUENCE_DISABLED:
                raise _fail(i, "kickoff nSequence must be disabled")
        else:
            state = params.dw.state_of_sequence(txin.sequence)
            if state is None:
                raise _fail(i, f"nSequence {txin.sequence} is not a DW state")
            if expect.initial and state != 0:
                raise _fail(i, f"a new factory starts at DW state 0, not {state}")
            layers += 1
        outs = tx.outputs
        if not outs or outs[-1] != anchor or any(o.script_pubkey == P2A_SCRIPT for o in outs[:-1]):
            raise _fail(i, "must end with exactly one P2A anchor of the agreed value")
        if sum(o.value for o in outs) != spent.value:
            raise _fail(i, "does not conserve value (zero fee)")
        if any(o.value < dust_limit(o.script_pubkey) for o in outs[:-1]):
            raise _fail(i, "has a dust output")

        msg = SighashContext(tx, (spent,)).key_path(0)
        signing = spent_output.signing
        signers = tuple(keys[k.data] for k in spent_output.keys)
        sessions.append(SessionSpec(step.tx_index, msg, signing, signers))
        spents.append(spent)

        is_leaf = kind is TxKind.STATE and not step.outputs
        if is_leaf:
            if i != len(steps) - 1 or step.next_vout is not None:
                raise _fail(i, "leaf state must end the path")
            n = span[1] - span[0]
            if not 1 <= n <= params.leaf_arity or len(outs) != n + 2:
                raise _fail(i, "leaf must pay one channel per client, the L-stock and the anchor")
            for pos in range(span[0], span[1]):
                chan = channel_output(parts[pos], view.lsp, cache)
                if outs[pos - span[0]].script_pubkey != chan.script_pubkey:
                    raise _fail(i, f"channel output of client {pos} is wrong")
                if pos == me:
                    if outs[pos - span[0]].value != expect.channel_amount:
                        raise _fail(i, "own channel capacity differs from the one agreed")
                    channel = (tx.outpoint(pos - span[0]), chan)
            lstock = lstock_output(
                view.lsp,
                parts[span[0] : span[1]],
                view.lstock_point,
                params.lstock_csv_delay,
                cache,
            )
            if outs[n].script_pubkey != lstock.script_pubkey:
                raise _fail(i, "L-stock output is wrong")
            break
        ranges = step.outputs
        if len(outs) != len(ranges) + 1 or step.next_vout is None:
            raise _fail(i, "output ranges do not match the outputs")
        if kind is TxKind.KICKOFF and ranges != (span,):
            raise _fail(i, "kickoff must pay its own node")
        if kind is TxKind.STATE:
            if len(ranges) < 2 or ranges[0][0] != span[0] or ranges[-1][1] != span[1]:
                raise _fail(i, "child ranges do not partition the node")
            for (_, hi), (lo, _) in itertools.pairwise(ranges):
                if hi != lo:
                    raise _fail(i, "child ranges do not partition the node")
            if any(lo >= hi for lo, hi in ranges):
                raise _fail(i, "empty child range")
        nxt_out: MusigOutput | None = None
        for vout, child in enumerate(ranges):
            out = node_output(child)
            if outs[vout].script_pubkey != out.script_pubkey:
                raise _fail(i, f"output {vout} is not the node output of clients {child}")
            if vout == step.next_vout:
                nxt_out = out
        if nxt_out is None or not ranges[step.next_vout][0] <= me < ranges[step.next_vout][1]:
            raise _fail(i, "path does not continue towards the client")
        prev_out = tx.outpoint(step.next_vout)
        spent = outs[step.next_vout]
        spent_output = nxt_out
        span = ranges[step.next_vout]
    else:
        raise ViewError("path does not end at a leaf")

    if channel is None:  # pragma: no cover - the loop sets it or raises
        raise ViewError("the client's channel output is missing")
    worst = layers * params.dw.layer_delay
    budget = params.exit_delay_budget
    if expect.max_exit_delay is not None:
        budget = min(budget, expect.max_exit_delay)
    if worst > budget:
        raise ViewError(f"worst-case exit delay {worst} blocks exceeds {budget}")
    return VerifiedView(
        view,
        tuple(sessions),
        tuple(spents),
        funding_txout,
        funding_output,
        channel[0],
        channel[1],
        worst,
    )
