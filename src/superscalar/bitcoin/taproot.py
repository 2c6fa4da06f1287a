"""BIP341 taproot: script trees, merkle roots, control blocks and output-key tweaks.

Every SuperScalar output is a taproot output whose key path is a MuSig2
aggregate and whose script path holds timeout and delay leaves; this module
turns (internal key, tree) into the output script and the control blocks
needed to spend each leaf, and tweaks secret keys for key-path spends.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, TypeAlias

from ..crypto.hashes import tagged_hash
from ..crypto.keys import CURVE_ORDER, SecretKey, XOnlyPublicKey
from .script import p2tr_script
from .tx import encode_varint

__all__ = [
    "TAPROOT_CONTROL_MAX_DEPTH",
    "TAPSCRIPT_LEAF_VERSION",
    "ControlBlock",
    "NestedTree",
    "TapBranch",
    "TapLeaf",
    "TapTree",
    "TaprootError",
    "TaprootOutput",
    "TaprootSpendInfo",
    "balanced_tree",
    "huffman_tree",
    "merkle_root",
    "tapbranch_hash",
    "tapleaf_hash",
    "taproot_output",
    "taproot_tweak",
    "tree_from_nested",
    "tree_leaves",
    "tweak_secret_key",
    "verify_script_path",
]

TAPSCRIPT_LEAF_VERSION = 0xC0
TAPROOT_CONTROL_MAX_DEPTH = 128
_ANNEX_TAG = 0x50


class TaprootError(ValueError):
    """A malformed leaf, tree or control block."""


@dataclass(frozen=True, slots=True)
class TapLeaf:
    """A script leaf; `leaf_version` 0xc0 is BIP342 tapscript."""

    script: bytes
    leaf_version: int = TAPSCRIPT_LEAF_VERSION

    def __post_init__(self) -> None:
        if not isinstance(self.script, bytes | bytearray):
            raise TaprootError("leaf script must be bytes")
        object.__setattr__(self, "script", bytes(self.script))
        if not 0 <= self.leaf_version <= 0xFE or self.leaf_version & 1:
            raise TaprootError(f"invalid leaf version {self.leaf_version:#x} (must be even)")
        if self.leaf_version == _ANNEX_TAG:
            # BIP341: a control block starting 0x50 would be read as the annex.
            raise TaprootError("leaf version 0x50 is ambiguous with the annex (BIP341)")

    @property
    def leaf_hash(self) -> bytes:
        return tapleaf_hash(self.script, self.leaf_version)


@dataclass(frozen=True, slots=True)
class TapBranch:
    """An inner node: two subtrees. Order does not affect the hash (it is sorted)."""

    left: TapTree
    right: TapTree

    def __post_init__(self) -> None:
        if not isinstance(self.left, TapLeaf | TapBranch) or not isinstance(
            self.right, TapLeaf | TapBranch
        ):
            raise TaprootError("branch children must be TapLeaf or TapBranch")


TapTree: TypeAlias = TapLeaf | TapBranch
NestedTree: TypeAlias = "bytes | TapLeaf | TapBranch | tuple[NestedTree, NestedTree]"


def tapleaf_hash(script: bytes, leaf_version: int = TAPSCRIPT_LEAF_VERSION) -> bytes:
    """`hash_TapLeaf(leaf_version || compact_size(len(script)) || script)`."""
    return tagged_hash("TapLeaf", bytes((leaf_version,)) + encode_varint(len(script)) + script)


def tapbranch_hash(a: bytes, b: bytes) -> bytes:
    """`hash_TapBranch(min(a, b) || max(a, b))`."""
    return tagged_hash("TapBranch", a + b if a < b else b + a)


def tree_from_nested(nested: NestedTree) -> TapTree:
    """Build a tree from nested pairs: a leaf is `bytes` (tapscript) or a `TapLeaf`."""
    if isinstance(nested, TapLeaf | TapBranch):
        return nested
    if isinstance(nested, bytes | bytearray):
        return TapLeaf(bytes(nested))
    if isinstance(nested, tuple) and len(nested) == 2:
        return TapBranch(tree_from_nested(nested[0]), tree_from_nested(nested[1]))
    raise TaprootError("a tree is bytes, a TapLeaf, or a pair of trees")


def balanced_tree(leaves: Sequence[TapLeaf | bytes]) -> TapTree:
    """A tree of minimal depth whose leaves appear in the given order, left to right."""
    if not leaves:
        raise TaprootError("a script tree needs at least one leaf")
    nodes: list[TapTree] = [tree_from_nested(leaf) for leaf in leaves]

    def build(lo: int, hi: int) -> TapTree:
        if hi - lo == 1:
            return nodes[lo]
        mid = (lo + hi + 1) // 2
        return TapBranch(build(lo, mid), build(mid, hi))

    return build(0, len(nodes))


def huffman_tree(weighted: Sequence[tuple[int, TapLeaf | bytes]]) -> TapTree:
    """A Huffman tree: leaves with higher weight (likelier to be spent) sit shallower.

    Deterministic: ties are broken by input order.
    """
    if not weighted:
        raise TaprootError("a script tree needs at least one leaf")
    heap: list[tuple[int, int, TapTree]] = []
    for order, (weight, leaf) in enumerate(weighted):
        if weight < 0:
            raise TaprootError("leaf weights must be non-negative")
        heap.append((weight, order, tree_from_nested(leaf)))
    heapq.heapify(heap)
    order = len(heap)
    while len(heap) > 1:
        w1, _, t1 = heapq.heappop(heap)
        w2, _, t2 = heapq.heappop(heap)
        heapq.heappush(heap, (w1 + w2, order, TapBranch(t1, t2)))
        order += 1
    return heap[0][2]


def _node_hash(tree: TapTree) -> bytes:
    if isinstance(tree, TapLeaf):
        return tree.leaf_hash
    return tapbranch_hash(_node_hash(tree.left), _node_hash(tree.right))


def merkle_root(tree: TapTree | None) -> bytes | None:
    """The tree's merkle root; None for a key-path-only output."""
    return None if tree is None else _node_hash(tree)


def _leaf_paths(tree: TapTree) -> tuple[bytes, list[tuple[TapLeaf, list[bytes]]]]:
    """(node hash, [(leaf, sibling hashes from the leaf up)]) in depth-first order."""
    if isinstance(tree, TapLeaf):
        return tree.leaf_hash, [(tree, [])]
    left_hash, left = _leaf_paths(tree.left)
    right_hash, right = _leaf_paths(tree.right)
    for _, path in left:
        path.append(right_hash)
    for _, path in right:
        path.append(left_hash)
    return tapbranch_hash(left_hash, right_hash), left + right


def tree_leaves(tree: TapTree | None) -> tuple[TapLeaf, ...]:
    """The leaves in depth-first, left-to-right order."""
    if tree is None:
        return ()
    if isinstance(tree, TapLeaf):
        return (tree,)
    return tree_leaves(tree.left) + tree_leaves(tree.right)


def taproot_tweak(internal_key: XOnlyPublicKey, root: bytes | None) -> bytes:
    """`t = hash_TapTweak(p || root)`; with no scripts, `hash_TapTweak(p)`."""
    return tagged_hash("TapTweak", internal_key.data + (root or b""))


class TaprootOutput(NamedTuple):
    """The output key Q = P + tG, its y parity (1 if odd) and the P2TR script."""

    output_key: XOnlyPublicKey
    parity: int
    script_pubkey: bytes


def _tweak_output(internal_key: XOnlyPublicKey, root: bytes | None) -> TaprootOutput:
    output_key, odd = internal_key.tweak_add(taproot_tweak(internal_key, root))
    return TaprootOutput(output_key, int(odd), p2tr_script(output_key))


def taproot_output(internal_key: XOnlyPublicKey, tree: TapTree | None = None) -> TaprootOutput:
    """`(output_key, parity, script_pubkey)` for `internal_key` committing to `tree`."""
    return _tweak_output(internal_key, merkle_root(tree))


def tweak_secret_key(secret_key: SecretKey, root: bytes | None) -> SecretKey:
    """The secret key for a key-path spend: negate if P has odd y, then add the tweak."""
    public = secret_key.public_key
    tweak = int.from_bytes(taproot_tweak(public.xonly(), root), "big")
    if tweak >= CURVE_ORDER:
        raise TaprootError("taproot tweak is not below the curve order")
    d = secret_key.to_int()
    if not public.has_even_y:
        d = CURVE_ORDER - d
    return SecretKey.from_int((d + tweak) % CURVE_ORDER)


@dataclass(frozen=True, slots=True)
class ControlBlock:
    """A parsed control block: leaf version, output-key parity, internal key, merkle path."""

    leaf_version: int
    parity: int
    internal_key: XOnlyPublicKey
    path: tuple[bytes, ...]

    def serialize(self) -> bytes:
        return (
            bytes((self.leaf_version | self.parity,)) + self.internal_key.data + b"".join(self.path)
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> ControlBlock:
        if len(data) < 33 or (len(data) - 33) % 32:
            raise TaprootError(f"control block of {len(data)} bytes is not 33 + 32m")
        depth = (len(data) - 33) // 32
        if depth > TAPROOT_CONTROL_MAX_DEPTH:
            raise TaprootError(f"control block path of {depth} exceeds 128")
        try:
            internal_key = XOnlyPublicKey(data[1:33])
        except ValueError as exc:
            raise TaprootError("control block internal key is not a valid x-only key") from exc
        path = tuple(data[33 + 32 * i : 65 + 32 * i] for i in range(depth))
        return cls(data[0] & 0xFE, data[0] & 1, internal_key, path)


@dataclass(frozen=True)
class TaprootSpendInfo:
    """Everything needed to pay to and spend from one taproot output."""

    internal_key: XOnlyPublicKey
    tree: TapTree | None = None
    merkle_root: bytes | None = field(init=False)
    tweak: bytes = field(init=False)
    output_key: XOnlyPublicKey = field(init=False)
    parity: int = field(init=False)
    script_pubkey: bytes = field(init=False)
    leaves: tuple[TapLeaf, ...] = field(init=False)
    _paths: tuple[tuple[bytes, ...], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        root: bytes | None = None
        pairs: list[tuple[TapLeaf, list[bytes]]] = []
        if self.tree is not None:
            root, pairs = _leaf_paths(self.tree)
        if any(len(path) > TAPROOT_CONTROL_MAX_DEPTH for _, path in pairs):
            raise TaprootError("script tree is deeper than 128")
        out = _tweak_output(self.internal_key, root)
        for name, value in (
            ("merkle_root", root),
            ("tweak", taproot_tweak(self.internal_key, root)),
            ("output_key", out.output_key),
            ("parity", out.parity),
            ("script_pubkey", out.script_pubkey),
            ("leaves", tuple(leaf for leaf, _ in pairs)),
            ("_paths", tuple(tuple(path) for _, path in pairs)),
        ):
            object.__setattr__(self, name, value)

    def _index(self, leaf: int | TapLeaf | bytes) -> int:
        if isinstance(leaf, int):
            if not 0 <= leaf < len(self.leaves):
                raise TaprootError(f"no leaf {leaf}")
            return leaf
        target = TapLeaf(leaf) if isinstance(leaf, bytes | bytearray) else leaf
        try:
            return self.leaves.index(target)
        except ValueError:
            raise TaprootError("leaf is not in this script tree") from None

    def control_block(self, leaf: int | TapLeaf | bytes) -> bytes:
        """The control block for a leaf (by depth-first index, `TapLeaf`, or tapscript)."""
        i = self._index(leaf)
        return ControlBlock(
            self.leaves[i].leaf_version, self.parity, self.internal_key, self._paths[i]
        ).serialize()

    def control_blocks(self) -> tuple[bytes, ...]:
        """Control blocks for every leaf, in depth-first order (matching `leaves`)."""
        return tuple(self.control_block(i) for i in range(len(self.leaves)))

    def script_path_witness(
        self, leaf: int | TapLeaf | bytes, stack: Sequence[bytes]
    ) -> tuple[bytes, ...]:
        """The full witness for a script-path spend: `stack`, the script, the control block."""
        i = self._index(leaf)
        return (*stack, self.leaves[i].script, self.control_block(i))

    def tweak_secret_key(self, secret_key: SecretKey) -> SecretKey:
        """The key-path signing key, if `secret_key` is the internal key's secret."""
        if secret_key.xonly_public_key != self.internal_key:
            raise TaprootError("secret key does not match the internal key")
        return tweak_secret_key(secret_key, self.merkle_root)


def verify_script_path(output_key: XOnlyPublicKey, script: bytes, control_block: bytes) -> bool:
    """True iff `control_block` proves `script` is committed to by `output_key` (BIP341)."""
    try:
        cb = ControlBlock.from_bytes(control_block)
    except TaprootError:
        return False
    node = tapleaf_hash(script, cb.leaf_version)
    for sibling in cb.path:
        node = tapbranch_hash(node, sibling)
    try:
        expected = _tweak_output(cb.internal_key, node)
    except ValueError:
        return False
    return expected.output_key == output_key and expected.parity == cb.parity
