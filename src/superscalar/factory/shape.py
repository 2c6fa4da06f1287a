"""Factory parameters and the deterministic tree shape they imply.

The shape is pure arithmetic (no curve operations), so every party can
recompute it from the same inputs and it costs microseconds even at N=10,000:
which clients sit under which node, in which order, and how many satoshis each
node's output carries. Scripts and transactions are derived from it later
(`outputs`, `tree`).

Layout (as in the C implementation's README, generalised to any arity)::

    funding output (LSP + all clients)
      └ kickoff tx   (nSequence disabled: spendable at once)
          └ state tx (nSequence = DW relative lock of this layer)
              ├ kickoff tx of child 1 ─ state tx ─ …
              └ kickoff tx of child 2 ─ state tx ─ leaf outputs:
                                                   one channel per client + L-stock

Every tree node is a (kickoff, state) pair; every state tx is one
Decker-Wattenhofer layer, so a client whose leaf is at depth d crosses d + 1
DW layers on its way out.

`arity` is given leaf → root: `arity[0]` is the number of clients per leaf
(1 or 2), `arity[1:]` the number of children per internal node on the levels
above, the last entry repeating up to the root (`(2,)` means binary above
2-client leaves). Groups are filled in client order and sized as evenly as
possible; a group of one is not wrapped in a node of its own (that would add a
DW layer and two transactions for nothing), so subtrees may differ in depth.

Money: pre-signed tree transactions pay zero fee and carry one P2A anchor of
`FeePolicy.anchor_value`, so a node's output carries exactly what its subtree
pays out plus two anchors per node in it. What is left of the funding amount
after the clients' channels and all anchors is the LSP's liquidity stock,
split evenly over the leaves (earlier leaves get the odd satoshis).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from ..bitcoin.fees import DUST_P2TR
from ..bitcoin.tx import MAX_MONEY, OutPoint, check_amount, encode_varint
from ..crypto.keys import PublicKey
from .errors import ExitBudgetError, ShapeError

__all__ = [
    "BOLT_MAX_CLTV_EXPIRY",
    "P2A_CLASSIC_DUST",
    "SEQUENCE_DISABLED",
    "TRUC_MAX_VSIZE",
    "ClientSpec",
    "DWParams",
    "FactoryParams",
    "FactorySpec",
    "FeePolicy",
    "Node",
    "Shape",
    "build_shape",
    "tree_tx_vsize",
]

SEQUENCE_DISABLED = 0xFFFFFFFF
"""nSequence of kickoff transactions: BIP68 disabled, spendable as soon as the parent confirms."""
BOLT_MAX_CLTV_EXPIRY = 2016
"""BOLT #2's ceiling on a channel's `final_cltv_expiry`-style budgets, in blocks."""
P2A_CLASSIC_DUST = 240
"""Bitcoin Core's classic dust threshold for a P2A output at the default dust relay feerate."""
TRUC_MAX_VSIZE = 10_000
"""BIP431: a version-3 (TRUC) transaction may not exceed this many vbytes."""
_MAX_LOCK_HEIGHT = 500_000_000
_MAX_RELATIVE_BLOCKS = 0xFFFF
_MAX_INTERNAL_ARITY = 1000
"""Keeps a state tx under the 100,000-vbyte standardness limit (version 2)."""


@dataclass(frozen=True, slots=True)
class DWParams:
    """Decker-Wattenhofer parameters: K states per layer, `step_blocks` between states.

    State s of a layer (0 = oldest) has nSequence `step × (K − 1 − s)`: each
    newer state can confirm `step` blocks before the one it replaces.
    """

    states_per_layer: int = 4
    step_blocks: int = 10

    def __post_init__(self) -> None:
        k, step = self.states_per_layer, self.step_blocks
        if isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= 256:
            raise ShapeError(f"states_per_layer {k!r} is outside 2..256")
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise ShapeError(f"step_blocks {step!r} must be a positive int")
        if step * (k - 1) > _MAX_RELATIVE_BLOCKS:
            raise ShapeError(
                f"step_blocks × (states_per_layer − 1) = {step * (k - 1)} exceeds BIP68's "
                f"{_MAX_RELATIVE_BLOCKS}-block relative lock"
            )

    @property
    def layer_delay(self) -> int:
        """The worst-case delay one DW layer adds to an exit: `step × (K − 1)` blocks."""
        return self.step_blocks * (self.states_per_layer - 1)

    def sequence(self, state: int) -> int:
        """The nSequence (a BIP68 block count) of state `state` of a layer."""
        if not 0 <= state < self.states_per_layer:
            raise ShapeError(f"DW state {state} is outside 0..{self.states_per_layer - 1}")
        return self.step_blocks * (self.states_per_layer - 1 - state)

    def state_of_sequence(self, sequence: int) -> int | None:
        """The state an nSequence encodes, or None if it is not one of this layer's values."""
        if sequence % self.step_blocks or not 0 <= sequence <= self.layer_delay:
            return None
        return self.states_per_layer - 1 - sequence // self.step_blocks


@dataclass(frozen=True, slots=True)
class FeePolicy:
    """How pre-signed tree transactions are paid for: zero fee plus one P2A anchor for CPFP.

    `anchor_value` 0 relies on Bitcoin Core 29's ephemeral-dust policy (a
    zero-fee parent may carry one dust output that its child spends); 240 sat
    or more is above P2A's classic dust threshold and relays under any policy
    with package relay. Values in between would be dust that is not free, and
    are refused. `tx_version` 3 (TRUC) gives the anchors robust CPFP; it is
    only used for transactions that fit TRUC's 10,000-vbyte limit.
    """

    anchor_value: int = P2A_CLASSIC_DUST
    tx_version: int = 3

    def __post_init__(self) -> None:
        check_amount(self.anchor_value, "anchor value")
        if 0 < self.anchor_value < P2A_CLASSIC_DUST:
            raise ShapeError(
                f"anchor value {self.anchor_value} sat is dust: use 0 (ephemeral dust) "
                f"or at least {P2A_CLASSIC_DUST}"
            )
        if self.tx_version not in (2, 3):
            raise ShapeError(f"tree transactions must be version 2 or 3, not {self.tx_version}")


@dataclass(frozen=True, slots=True)
class FactoryParams:
    """Everything about a factory's shape and rules except who is in it and the money."""

    cltv_timeout: int
    """Absolute block height after which the LSP alone may spend any node output."""
    arity: tuple[int, ...] = (2,)
    dw: DWParams = field(default_factory=DWParams)
    fees: FeePolicy = field(default_factory=FeePolicy)
    exit_delay_budget: int = BOLT_MAX_CLTV_EXPIRY
    """Refuse shapes whose worst-case unilateral exit takes longer than this (blocks)."""
    lstock_csv_delay: int = 144
    """Blocks the LSP waits before spending an L-stock output alone (the burn window)."""

    def __post_init__(self) -> None:
        arity = self.arity
        if not isinstance(arity, tuple) or not arity:
            raise ShapeError("arity must be a non-empty tuple, leaf level first")
        if any(isinstance(a, bool) or not isinstance(a, int) for a in arity):
            raise ShapeError(f"arity entries must be ints, got {arity!r}")
        if arity[0] not in (1, 2):
            raise ShapeError(f"leaf arity {arity[0]} is not 1 or 2")
        for a in arity[1:]:
            if not 2 <= a <= _MAX_INTERNAL_ARITY:
                raise ShapeError(f"internal arity {a} is outside 2..{_MAX_INTERNAL_ARITY}")
        cltv = self.cltv_timeout
        if isinstance(cltv, bool) or not isinstance(cltv, int) or not 0 < cltv < _MAX_LOCK_HEIGHT:
            raise ShapeError(f"CLTV timeout {cltv!r} is not a block height in 1..499,999,999")
        if not isinstance(self.exit_delay_budget, int) or self.exit_delay_budget < 0:
            raise ShapeError("exit delay budget must be a non-negative int of blocks")
        if not 1 <= self.lstock_csv_delay <= _MAX_RELATIVE_BLOCKS:
            raise ShapeError(f"L-stock CSV delay {self.lstock_csv_delay} is outside 1..65535")

    @property
    def leaf_arity(self) -> int:
        return self.arity[0]

    def internal_arity(self, level: int) -> int:
        """Children per node `level` levels above the leaves (level ≥ 1)."""
        internal = self.arity[1:] or (2,)
        return internal[min(level - 1, len(internal) - 1)]


@dataclass(frozen=True, slots=True)
class ClientSpec:
    """One client: its factory key and the capacity of its leaf channel (satoshis)."""

    key: PublicKey
    channel_amount: int

    def __post_init__(self) -> None:
        if not isinstance(self.key, PublicKey):
            raise ShapeError("client key must be a PublicKey")
        check_amount(self.channel_amount, "channel amount")


@dataclass(frozen=True, slots=True)
class FactorySpec:
    """Who, with what money, under which rules: the whole input of the deterministic build."""

    lsp: PublicKey
    clients: tuple[ClientSpec, ...]
    funding_outpoint: OutPoint
    funding_amount: int
    params: FactoryParams

    def __post_init__(self) -> None:
        if not isinstance(self.lsp, PublicKey):
            raise ShapeError("LSP key must be a PublicKey")
        if not isinstance(self.clients, tuple) or not self.clients:
            raise ShapeError("a factory needs at least one client (a tuple of ClientSpec)")
        check_amount(self.funding_amount, "funding amount")

    @property
    def n_clients(self) -> int:
        return len(self.clients)

    def participant_key(self, participant: int) -> PublicKey:
        """Participant 0 is the LSP; participant p ≥ 1 is client position p − 1."""
        return self.lsp if participant == 0 else self.clients[participant - 1].key


@dataclass(frozen=True, slots=True)
class Node:
    """One tree node: a kickoff tx and a state tx, signed by the LSP and clients[lo:hi]."""

    index: int
    """Breadth-first position, root 0. Its kickoff tx is tree tx 2·index, its state tx 2·index+1."""
    parent: int | None
    children: tuple[int, ...]
    depth: int
    """Root 0; also the DW layer of this node's state tx."""
    lo: int
    hi: int
    """The clients beneath are positions lo..hi−1 (participants lo+1..hi)."""
    leaf: int | None
    """Leaf ordinal (left to right) if this is a leaf, else None."""
    amount: int
    """Value of the output this node's kickoff tx spends."""

    @property
    def is_leaf(self) -> bool:
        return self.leaf is not None

    @property
    def n_clients(self) -> int:
        return self.hi - self.lo

    @property
    def participants(self) -> range:
        """Signer participant indexes except the LSP (0), which signs every node."""
        return range(self.lo + 1, self.hi + 1)

    @property
    def kickoff_tx(self) -> int:
        return 2 * self.index

    @property
    def state_tx(self) -> int:
        return 2 * self.index + 1


def tree_tx_vsize(n_outputs: int) -> int:
    """vbytes of a signed tree tx: one key-path input, `n_outputs` P2TR outputs, one P2A anchor."""
    base = 4 + 1 + 41 + len(encode_varint(n_outputs + 1)) + 43 * n_outputs + 13 + 4
    witness = 2 + 1 + 1 + 64  # marker+flag, item count, length, BIP340 signature
    return (4 * base + witness + 3) // 4


def _split(n: int, arity: int) -> list[int]:
    """Sizes of ceil(n / arity) groups covering n items, as even as possible."""
    groups = -(-n // arity)
    base, extra = divmod(n, groups)
    return [base + (1 if i < extra else 0) for i in range(groups)]


@dataclass
class _Proto:
    lo: int
    hi: int
    children: list[_Proto]


@dataclass(frozen=True)
class Shape:
    """The deterministic layout of a factory: nodes, who signs what, and every amount."""

    spec: FactorySpec
    nodes: tuple[Node, ...]
    leaves: tuple[int, ...]
    """Node index of each leaf, in leaf (client) order."""
    client_leaf: tuple[int, ...]
    """Leaf ordinal of each client position."""
    lstock_amounts: tuple[int, ...]
    """Initial L-stock value of each leaf."""

    @property
    def params(self) -> FactoryParams:
        return self.spec.params

    @property
    def root(self) -> Node:
        return self.nodes[0]

    @property
    def n_txs(self) -> int:
        return 2 * len(self.nodes)

    def leaf_node(self, leaf: int) -> Node:
        return self.nodes[self.leaves[leaf]]

    def node_of_client(self, client: int) -> Node:
        """The leaf node holding client position `client`."""
        return self.leaf_node(self.client_leaf[client])

    def path(self, node: int) -> tuple[int, ...]:
        """Node indexes from the root down to `node`."""
        out = []
        cur: int | None = node
        while cur is not None:
            out.append(cur)
            cur = self.nodes[cur].parent
        return tuple(reversed(out))

    def client_path(self, client: int) -> tuple[int, ...]:
        return self.path(self.node_of_client(client).index)

    def client_txs(self, client: int) -> tuple[int, ...]:
        """Tree tx indexes a client signs (and needs to exit): kickoff and state on its path."""
        return tuple(t for n in self.client_path(client) for t in (2 * n, 2 * n + 1))

    def subtree(self, node: int) -> tuple[int, ...]:
        """`node` and all its descendants, breadth first."""
        out, queue = [], deque([node])
        while queue:
            cur = queue.popleft()
            out.append(cur)
            queue.extend(self.nodes[cur].children)
        return tuple(out)

    def signers(self, node: int) -> tuple[int, ...]:
        """Participant indexes that sign `node`'s transactions: the LSP and the clients beneath."""
        return (0, *self.nodes[node].participants)

    def exit_delay(self, leaf: int) -> int:
        """Worst-case blocks of relative delay to exit through leaf `leaf`: Σ over its DW layers."""
        return (self.leaf_node(leaf).depth + 1) * self.params.dw.layer_delay

    @property
    def worst_case_exit_delay(self) -> int:
        return max(self.exit_delay(leaf) for leaf in range(len(self.leaves)))

    @property
    def max_depth(self) -> int:
        return max(self.nodes[i].depth for i in self.leaves)


def build_shape(spec: FactorySpec) -> Shape:
    """Lay out the tree for `spec`, or raise `ShapeError` saying why it cannot be done."""
    params = spec.params
    n = spec.n_clients
    keys = [spec.lsp.data, *(c.key.data for c in spec.clients)]
    if len(set(keys)) != len(keys):
        raise ShapeError("participant keys must be distinct (LSP and every client)")

    leaves_proto: list[_Proto] = []
    pos = 0
    for size in _split(n, params.leaf_arity):
        leaves_proto.append(_Proto(pos, pos + size, []))
        pos += size
    level, height = leaves_proto, 1
    while len(level) > 1:
        nxt: list[_Proto] = []
        i = 0
        for size in _split(len(level), params.internal_arity(height)):
            group = level[i : i + size]
            i += size
            nxt.append(group[0] if size == 1 else _Proto(group[0].lo, group[-1].hi, group))
        level, height = nxt, height + 1

    # Breadth-first numbering: the root is 0 and parents precede children.
    order: list[tuple[_Proto, int | None, int]] = []
    queue: deque[tuple[_Proto, int | None, int]] = deque([(level[0], None, 0)])
    while queue:
        proto, parent, depth = queue.popleft()
        index = len(order)
        order.append((proto, parent, depth))
        queue.extend((child, index, depth + 1) for child in proto.children)
    index_of = {id(proto): i for i, (proto, _, _) in enumerate(order)}
    leaf_of = {id(proto): i for i, proto in enumerate(leaves_proto)}

    anchor = params.fees.anchor_value
    n_nodes = len(order)
    channels = sum(c.channel_amount for c in spec.clients)
    for pos, client in enumerate(spec.clients):
        if client.channel_amount < DUST_P2TR:
            raise ShapeError(
                f"client {pos}'s channel of {client.channel_amount} sat is below "
                f"the P2TR dust limit of {DUST_P2TR}"
            )
    anchors = 2 * anchor * n_nodes
    liquidity = spec.funding_amount - channels - anchors
    n_leaves = len(leaves_proto)
    if liquidity < DUST_P2TR * n_leaves:
        raise ShapeError(
            f"funding {spec.funding_amount} sat cannot cover channels ({channels}), "
            f"{2 * n_nodes} anchors of {anchor} ({anchors}) and {n_leaves} L-stock outputs "
            f"of at least {DUST_P2TR} sat each: {liquidity} sat left"
        )
    share, odd = divmod(liquidity, n_leaves)
    lstock = tuple(share + (1 if i < odd else 0) for i in range(n_leaves))

    amounts = [0] * n_nodes
    for i in range(n_nodes - 1, -1, -1):  # children have larger indexes than parents
        proto = order[i][0]
        if proto.children:
            amounts[i] = sum(amounts[index_of[id(c)]] for c in proto.children) + 2 * anchor
        else:
            leaf_total = sum(c.channel_amount for c in spec.clients[proto.lo : proto.hi])
            amounts[i] = leaf_total + lstock[leaf_of[id(proto)]] + 2 * anchor
    if amounts[0] != spec.funding_amount or amounts[0] > MAX_MONEY:  # pragma: no cover
        raise AssertionError("tree amounts do not add up to the funding amount")

    nodes = tuple(
        Node(
            index=i,
            parent=parent,
            children=tuple(index_of[id(c)] for c in proto.children),
            depth=depth,
            lo=proto.lo,
            hi=proto.hi,
            leaf=leaf_of.get(id(proto)),
            amount=amounts[i],
        )
        for i, (proto, parent, depth) in enumerate(order)
    )
    leaves = tuple(index_of[id(p)] for p in leaves_proto)
    client_leaf = tuple(leaf for leaf, p in enumerate(leaves_proto) for _ in range(p.lo, p.hi))
    shape = Shape(spec, nodes, leaves, client_leaf, lstock)

    widest = max(len(node.children) or node.n_clients + 1 for node in nodes)
    if params.fees.tx_version == 3 and tree_tx_vsize(widest) > TRUC_MAX_VSIZE:
        raise ShapeError(
            f"a tree tx with {widest} outputs would be {tree_tx_vsize(widest)} vB, over "
            f"TRUC's {TRUC_MAX_VSIZE}: lower the arity or use version-2 tree transactions"
        )
    worst = shape.worst_case_exit_delay
    if worst > params.exit_delay_budget:
        raise ExitBudgetError(
            worst,
            params.exit_delay_budget,
            f"{shape.max_depth + 1} DW layers × {params.dw.layer_delay} blocks; "
            "use fewer states, smaller steps or a wider tree",
        )
    return shape
