"""Taproot: control blocks, script-path proofs for every leaf, tree shapes, key tweaks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from superscalar.bitcoin.script import P2A_SCRIPT, Op, build_script
from superscalar.bitcoin.taproot import (
    TAPROOT_CONTROL_MAX_DEPTH,
    TAPSCRIPT_LEAF_VERSION,
    ControlBlock,
    TapBranch,
    TapLeaf,
    TaprootError,
    TaprootSpendInfo,
    TapTree,
    balanced_tree,
    huffman_tree,
    merkle_root,
    tapbranch_hash,
    taproot_output,
    tree_from_nested,
    tree_leaves,
    verify_script_path,
)
from superscalar.bitcoin.tx import TxOut
from superscalar.crypto import schnorr
from superscalar.crypto.keys import SecretKey, XOnlyPublicKey
from tests.bitcoin.spend_support import consensus_accepts, sign_script_path, spend_tx
from tests.crypto.strategies import secret_keys

xonly_keys = secret_keys.map(lambda k: k.xonly_public_key)
leaf_versions = st.integers(min_value=0, max_value=0x7F).map(lambda v: 2 * v)
tapleaf_versions = leaf_versions.filter(lambda v: v != 0x50)
leaves = st.builds(
    TapLeaf, st.binary(max_size=40), st.just(TAPSCRIPT_LEAF_VERSION) | tapleaf_versions
)
trees: st.SearchStrategy[TapTree] = st.recursive(
    leaves, lambda sub: st.builds(TapBranch, sub, sub), max_leaves=12
)

# Not an x coordinate at all: 2^256 - 1 is above the field size p.
_NOT_ON_CURVE = b"\xff" * 32


def _depths(tree: TapTree, depth: int = 0) -> list[int]:
    if isinstance(tree, TapLeaf):
        return [depth]
    return _depths(tree.left, depth + 1) + _depths(tree.right, depth + 1)


def _leaf(n: int) -> TapLeaf:
    return TapLeaf(bytes([0x51, n]))


# -- control blocks ----------------------------------------------------------------


@given(
    leaf_versions,
    st.integers(min_value=0, max_value=1),
    xonly_keys,
    st.lists(st.binary(min_size=32, max_size=32), max_size=TAPROOT_CONTROL_MAX_DEPTH),
)
def test_control_block_round_trips(
    leaf_version: int, parity: int, key: XOnlyPublicKey, path: list[bytes]
) -> None:
    cb = ControlBlock(leaf_version, parity, key, tuple(path))
    raw = cb.serialize()
    assert len(raw) == 33 + 32 * len(path)
    assert ControlBlock.from_bytes(raw) == cb


@pytest.mark.parametrize("size", [0, 32, 34, 64, 33 + 31, 33 + 33])
def test_control_block_of_wrong_size_is_refused(size: int) -> None:
    with pytest.raises(TaprootError, match="33 \\+ 32m"):
        ControlBlock.from_bytes(b"\xc0" + bytes(size - 1) if size else b"")


def test_control_block_deeper_than_128_is_refused() -> None:
    key = SecretKey.from_int(3).xonly_public_key
    raw = b"\xc0" + key.data + bytes(32 * (TAPROOT_CONTROL_MAX_DEPTH + 1))
    with pytest.raises(TaprootError, match="exceeds 128"):
        ControlBlock.from_bytes(raw)


def test_control_block_with_an_internal_key_off_the_curve_is_refused() -> None:
    with pytest.raises(TaprootError, match="not a valid x-only key"):
        ControlBlock.from_bytes(b"\xc0" + _NOT_ON_CURVE)


# -- script-path proofs ----------------------------------------------------------------


@given(xonly_keys, trees)
def test_every_leaf_of_any_tree_verifies_under_the_output_key(
    key: XOnlyPublicKey, tree: TapTree
) -> None:
    info = TaprootSpendInfo(key, tree)
    assert info.leaves == tree_leaves(tree)
    for leaf, cb in zip(info.leaves, info.control_blocks(), strict=True):
        assert verify_script_path(info.output_key, leaf.script, cb)


@given(xonly_keys, trees)
def test_control_block_path_length_is_the_leaf_depth(key: XOnlyPublicKey, tree: TapTree) -> None:
    info = TaprootSpendInfo(key, tree)
    lengths = [(len(cb) - 33) // 32 for cb in info.control_blocks()]
    assert lengths == _depths(tree)


@given(xonly_keys, trees, st.binary(max_size=40))
def test_a_script_not_in_the_tree_does_not_verify(
    key: XOnlyPublicKey, tree: TapTree, script: bytes
) -> None:
    info = TaprootSpendInfo(key, tree)
    for leaf, cb in zip(info.leaves, info.control_blocks(), strict=True):
        if leaf.script != script:
            assert not verify_script_path(info.output_key, script, cb)


def test_a_control_block_with_the_wrong_parity_does_not_verify() -> None:
    info = TaprootSpendInfo(SecretKey.from_int(5).xonly_public_key, balanced_tree([b"\x51"]))
    cb = bytearray(info.control_block(0))
    cb[0] ^= 1
    assert not verify_script_path(info.output_key, b"\x51", bytes(cb))


def test_a_control_block_with_a_tampered_path_does_not_verify() -> None:
    info = TaprootSpendInfo(
        SecretKey.from_int(5).xonly_public_key, balanced_tree([b"\x51", b"\x52", b"\x53"])
    )
    cb = bytearray(info.control_block(0))
    cb[-1] ^= 1
    assert not verify_script_path(info.output_key, b"\x51", bytes(cb))


def test_a_control_block_with_a_different_leaf_version_does_not_verify() -> None:
    info = TaprootSpendInfo(SecretKey.from_int(5).xonly_public_key, balanced_tree([b"\x51"]))
    cb = bytearray(info.control_block(0))
    cb[0] = (cb[0] & 1) | 0xC2
    assert not verify_script_path(info.output_key, b"\x51", bytes(cb))


def test_malformed_control_block_does_not_verify() -> None:
    info = TaprootSpendInfo(SecretKey.from_int(5).xonly_public_key, balanced_tree([b"\x51"]))
    assert not verify_script_path(info.output_key, b"\x51", info.control_block(0)[:-1])


def test_branch_hash_ignores_child_order() -> None:
    a, b = _leaf(1), _leaf(2)
    assert merkle_root(TapBranch(a, b)) == merkle_root(TapBranch(b, a))
    assert tapbranch_hash(a.leaf_hash, b.leaf_hash) == tapbranch_hash(b.leaf_hash, a.leaf_hash)


def test_key_path_only_output_has_no_merkle_root() -> None:
    key = SecretKey.from_int(9).xonly_public_key
    info = TaprootSpendInfo(key)
    assert info.merkle_root is None and info.leaves == ()
    assert taproot_output(key).script_pubkey == info.script_pubkey


def test_consensus_accepts_a_spend_through_each_leaf_of_a_tree() -> None:
    secrets = [SecretKey.from_int(100 + i) for i in range(5)]
    scripts = [k.xonly_public_key.data for k in secrets]
    tree = balanced_tree([b"\x20" + s + b"\xac" for s in scripts])  # <key> OP_CHECKSIG
    info = TaprootSpendInfo(SecretKey.from_int(1).xonly_public_key, tree)
    spent = (TxOut(10_000, info.script_pubkey),)
    tx = spend_tx(1, (TxOut(9_000, info.script_pubkey),))
    for i, secret in enumerate(secrets):
        assert consensus_accepts(sign_script_path(tx, spent, 0, info, i, secret), spent)


# -- tree shapes -------------------------------------------------------------------------


@pytest.mark.parametrize("n", range(1, 18))
def test_balanced_tree_has_minimal_depth(n: int) -> None:
    depths = _depths(balanced_tree([_leaf(i) for i in range(n)]))
    deepest = (n - 1).bit_length()
    assert max(depths) == deepest
    assert min(depths) >= deepest - 1


@pytest.mark.parametrize("n", range(1, 18))
def test_balanced_tree_keeps_leaf_order(n: int) -> None:
    given_leaves = [_leaf(i) for i in range(n)]
    assert list(tree_leaves(balanced_tree(given_leaves))) == given_leaves


def test_balanced_tree_of_nothing_is_refused() -> None:
    with pytest.raises(TaprootError):
        balanced_tree([])


def test_huffman_tree_puts_heavier_leaves_higher() -> None:
    tree = huffman_tree([(1, _leaf(1)), (1, _leaf(2)), (2, _leaf(3)), (4, _leaf(4))])
    depth_of = dict(zip(tree_leaves(tree), _depths(tree), strict=True))
    assert [depth_of[_leaf(i)] for i in (1, 2, 3, 4)] == [3, 3, 2, 1]


@given(st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=16))
def test_huffman_heavier_leaf_is_never_deeper(weights: list[int]) -> None:
    tree = huffman_tree([(w, _leaf(i)) for i, w in enumerate(weights)])
    depth_of = dict(zip(tree_leaves(tree), _depths(tree), strict=True))
    for i, wi in enumerate(weights):
        for j, wj in enumerate(weights):
            if wi > wj:
                assert depth_of[_leaf(i)] <= depth_of[_leaf(j)]


@given(st.lists(st.integers(min_value=1, max_value=1000), min_size=1, max_size=16))
def test_huffman_tree_minimises_expected_depth_no_worse_than_balanced(weights: list[int]) -> None:
    leaves_ = [_leaf(i) for i in range(len(weights))]
    huff = huffman_tree(list(zip(weights, leaves_, strict=True)))
    bal = balanced_tree(leaves_)

    def cost(tree: TapTree) -> int:
        depth_of = dict(zip(tree_leaves(tree), _depths(tree), strict=True))
        return sum(w * depth_of[leaf] for w, leaf in zip(weights, leaves_, strict=True))

    assert cost(huff) <= cost(bal)


def test_huffman_tree_breaks_ties_by_input_order() -> None:
    # Equal weights: the first two leaves are merged first, so they sit deeper.
    tree = huffman_tree([(1, _leaf(0)), (1, _leaf(1)), (1, _leaf(2))])
    assert tree == TapBranch(_leaf(2), TapBranch(_leaf(0), _leaf(1)))


def test_huffman_tree_refuses_negative_weights() -> None:
    with pytest.raises(TaprootError):
        huffman_tree([(-1, _leaf(1))])


def _caterpillar(depth: int) -> TapTree:
    """A tree whose first leaf sits at `depth`."""
    tree: TapTree = _leaf(0)
    for i in range(1, depth + 1):
        tree = TapBranch(tree, _leaf(i % 256))
    return tree


def test_tree_128_deep_proves_its_deepest_leaf() -> None:
    info = TaprootSpendInfo(SecretKey.from_int(2).xonly_public_key, _caterpillar(128))
    cb = info.control_block(0)
    assert len(cb) == 33 + 32 * 128
    assert verify_script_path(info.output_key, _leaf(0).script, cb)


def test_tree_deeper_than_128_is_refused() -> None:
    with pytest.raises(TaprootError, match="deeper than 128"):
        TaprootSpendInfo(SecretKey.from_int(2).xonly_public_key, _caterpillar(129))


def test_nested_tuples_build_the_same_tree_as_branches() -> None:
    nested = ((b"\x51", b"\x52"), b"\x53")
    built = TapBranch(TapBranch(TapLeaf(b"\x51"), TapLeaf(b"\x52")), TapLeaf(b"\x53"))
    assert tree_from_nested(nested) == built


@pytest.mark.parametrize("version", [0xC1, 0xFF, 0x100, -2])
def test_leaf_version_must_be_even_and_one_byte(version: int) -> None:
    with pytest.raises(TaprootError):
        TapLeaf(b"\x51", version)


def test_leaf_version_0x50_is_refused_as_ambiguous_with_the_annex() -> None:
    with pytest.raises(TaprootError, match="annex"):
        TapLeaf(b"\x51", 0x50)


def _leaf_0x50_spend(parity: int) -> tuple[bytes, bool]:
    """(control block, kernel verdict) for a spend of a leaf with version 0x50."""
    key = SecretKey.from_int(0x50)
    leaf = object.__new__(TapLeaf)  # bypass the check under test
    object.__setattr__(leaf, "script", build_script(key.xonly_public_key.data, Op.OP_CHECKSIG))
    object.__setattr__(leaf, "leaf_version", 0x50)
    info = next(
        info
        for info in (
            TaprootSpendInfo(SecretKey.from_int(k).xonly_public_key, leaf) for k in range(1, 64)
        )
        if info.parity == parity
    )
    spent = (TxOut(10_000, info.script_pubkey),)
    tx = sign_script_path(spend_tx(1, (TxOut(9_000, P2A_SCRIPT),)), spent, 0, info, 0, key)
    return info.control_block(0), consensus_accepts(tx, spent)


def test_consensus_takes_a_leaf_version_0x50_control_block_for_the_annex() -> None:
    # Why 0x50 is refused: with an even-y output key the control block starts 0x50 and
    # the kernel reads it as the annex, so the leaf cannot be spent...
    control_block, accepted = _leaf_0x50_spend(parity=0)
    assert control_block[0] == 0x50
    assert not accepted


def test_consensus_accepts_a_leaf_version_0x50_spend_with_an_odd_y_output_key() -> None:
    # ...while with odd y (first byte 0x51) it is an unknown leaf version, which passes.
    control_block, accepted = _leaf_0x50_spend(parity=1)
    assert control_block[0] == 0x51
    assert accepted


# -- key tweaks -----------------------------------------------------------------------------


@given(secret_keys, st.one_of(st.none(), trees))
def test_tweaked_secret_key_signs_for_the_output_key(
    secret: SecretKey, tree: TapTree | None
) -> None:
    info = TaprootSpendInfo(secret.xonly_public_key, tree)
    msg = bytes(32)
    assert schnorr.verify(info.output_key, msg, schnorr.sign(info.tweak_secret_key(secret), msg))


def test_tweak_needs_the_internal_keys_secret() -> None:
    info = TaprootSpendInfo(SecretKey.from_int(11).xonly_public_key)
    with pytest.raises(TaprootError):
        info.tweak_secret_key(SecretKey.from_int(12))


def test_unknown_leaf_has_no_control_block() -> None:
    info = TaprootSpendInfo(SecretKey.from_int(11).xonly_public_key, balanced_tree([b"\x51"]))
    with pytest.raises(TaprootError):
        info.control_block(b"\x52")
    with pytest.raises(TaprootError):
        info.control_block(1)
