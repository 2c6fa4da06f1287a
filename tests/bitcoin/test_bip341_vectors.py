"""BIP341 wallet-test-vectors.json: every scriptPubKey case and every key-path spend."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from superscalar.bitcoin.address import Network, script_pubkey_to_address
from superscalar.bitcoin.sighash import SighashContext, signature_with_hash_type
from superscalar.bitcoin.taproot import (
    TapBranch,
    TapLeaf,
    TaprootSpendInfo,
    TapTree,
    merkle_root,
    taproot_output,
    tweak_secret_key,
    verify_script_path,
)
from superscalar.bitcoin.tx import Transaction, TxOut
from superscalar.crypto import schnorr
from superscalar.crypto.keys import SecretKey, XOnlyPublicKey
from tests.conftest import load_json

VECTORS = load_json("bip341/wallet-test-vectors.json")
SPK_CASES: list[dict[str, Any]] = VECTORS["scriptPubKey"]
KEY_PATH = VECTORS["keyPathSpending"][0]
INPUT_CASES: list[dict[str, Any]] = KEY_PATH["inputSpending"]


def _tree(node: Any) -> TapTree | None:
    if node is None:
        return None
    if isinstance(node, dict):
        return TapLeaf(bytes.fromhex(node["script"]), node["leafVersion"])
    left, right = (_tree(child) for child in node)
    assert left is not None and right is not None
    return TapBranch(left, right)


def _leaf_ids(node: Any) -> list[int]:
    """Leaf ids in depth-first order, the order `TaprootSpendInfo.leaves` uses."""
    if node is None:
        return []
    if isinstance(node, dict):
        return [node["id"]]
    return [i for child in node for i in _leaf_ids(child)]


def _spend_info(case: dict[str, Any]) -> TaprootSpendInfo:
    given = case["given"]
    return TaprootSpendInfo(
        XOnlyPublicKey.from_hex(given["internalPubkey"]), _tree(given["scriptTree"])
    )


spk_params = pytest.mark.parametrize("case", SPK_CASES, ids=[str(i) for i in range(len(SPK_CASES))])
input_params = pytest.mark.parametrize(
    "case", INPUT_CASES, ids=[f"input{c['given']['txinIndex']}" for c in INPUT_CASES]
)


@spk_params
def test_leaf_hashes_match(case: dict[str, Any]) -> None:
    info = _spend_info(case)
    ids = _leaf_ids(case["given"]["scriptTree"])
    expected = case["intermediary"].get("leafHashes", [])
    assert [info.leaves[k].leaf_hash.hex() for k in range(len(ids))] == [expected[i] for i in ids]


@spk_params
def test_merkle_root_matches(case: dict[str, Any]) -> None:
    root = merkle_root(_tree(case["given"]["scriptTree"]))
    assert (root.hex() if root else None) == case["intermediary"]["merkleRoot"]


@spk_params
def test_tweak_and_tweaked_key_match(case: dict[str, Any]) -> None:
    info = _spend_info(case)
    assert info.tweak.hex() == case["intermediary"]["tweak"]
    assert info.output_key.hex() == case["intermediary"]["tweakedPubkey"]


@spk_params
def test_script_pubkey_matches(case: dict[str, Any]) -> None:
    given = case["given"]
    output_key, parity, spk = taproot_output(
        XOnlyPublicKey.from_hex(given["internalPubkey"]), _tree(given["scriptTree"])
    )
    assert spk.hex() == case["expected"]["scriptPubKey"]
    assert output_key.hex() == case["intermediary"]["tweakedPubkey"]
    assert parity in (0, 1)


@spk_params
def test_bech32m_address_matches(case: dict[str, Any]) -> None:
    spk = _spend_info(case).script_pubkey
    assert script_pubkey_to_address(spk, Network.MAINNET) == case["expected"]["bip350Address"]


@spk_params
def test_control_blocks_match(case: dict[str, Any]) -> None:
    info = _spend_info(case)
    ids = _leaf_ids(case["given"]["scriptTree"])
    expected = case["expected"].get("scriptPathControlBlocks", [])
    assert [cb.hex() for cb in info.control_blocks()] == [expected[i] for i in ids]


@spk_params
def test_control_blocks_verify_against_the_output_key(case: dict[str, Any]) -> None:
    info = _spend_info(case)
    for leaf, cb in zip(info.leaves, info.control_blocks(), strict=True):
        assert verify_script_path(info.output_key, leaf.script, cb)


def _context() -> SighashContext:
    given = KEY_PATH["given"]
    tx = Transaction.from_hex(given["rawUnsignedTx"])
    spent = tuple(
        TxOut(u["amountSats"], bytes.fromhex(u["scriptPubKey"])) for u in given["utxosSpent"]
    )
    return SighashContext(tx, spent)


def test_precomputed_hashes_match() -> None:
    ctx, expected = _context(), KEY_PATH["intermediary"]
    assert ctx.sha_amounts.hex() == expected["hashAmounts"]
    assert ctx.sha_outputs.hex() == expected["hashOutputs"]
    assert ctx.sha_prevouts.hex() == expected["hashPrevouts"]
    assert ctx.sha_scriptpubkeys.hex() == expected["hashScriptPubkeys"]
    assert ctx.sha_sequences.hex() == expected["hashSequences"]


@input_params
def test_key_path_internal_key_and_tweak_match(case: dict[str, Any]) -> None:
    given, inter = case["given"], case["intermediary"]
    key = SecretKey.from_hex(given["internalPrivkey"])
    root = bytes.fromhex(given["merkleRoot"]) if given["merkleRoot"] else None
    assert key.xonly_public_key.hex() == inter["internalPubkey"]
    assert tweak_secret_key(key, root).hex() == inter["tweakedPrivkey"]


@input_params
def test_key_path_sigmsg_matches(case: dict[str, Any]) -> None:
    given = case["given"]
    msg = _context().sigmsg(given["txinIndex"], given["hashType"])
    # The vectors print the message with its leading 0x00 sighash epoch byte.
    assert (b"\x00" + msg).hex() == case["intermediary"]["sigMsg"]


@input_params
def test_key_path_sighash_matches(case: dict[str, Any]) -> None:
    given = case["given"]
    sighash = _context().key_path(given["txinIndex"], given["hashType"])
    assert sighash.hex() == case["intermediary"]["sigHash"]


@input_params
def test_key_path_signature_matches_with_zero_aux_rand(case: dict[str, Any]) -> None:
    given = case["given"]
    key = SecretKey.from_hex(given["internalPrivkey"])
    root = bytes.fromhex(given["merkleRoot"]) if given["merkleRoot"] else None
    sighash = _context().key_path(given["txinIndex"], given["hashType"])
    sig = schnorr.sign(tweak_secret_key(key, root), sighash, bytes(32))
    assert [signature_with_hash_type(sig, given["hashType"]).hex()] == case["expected"]["witness"]


@input_params
def test_key_path_signature_verifies_under_the_spent_output_key(case: dict[str, Any]) -> None:
    given = case["given"]
    ctx = _context()
    spent_spk = ctx.spent_outputs[given["txinIndex"]].script_pubkey
    sig = bytes.fromhex(case["expected"]["witness"][0])[:64]
    sighash = ctx.key_path(given["txinIndex"], given["hashType"])
    assert schnorr.verify(XOnlyPublicKey(spent_spk[2:]), sighash, sig)


def test_fully_signed_tx_is_the_unsigned_tx_plus_the_signatures() -> None:
    unsigned = Transaction.from_hex(KEY_PATH["given"]["rawUnsignedTx"])
    signed = Transaction.from_hex(KEY_PATH["auxiliary"]["fullySignedTx"])
    assert signed.has_witness and not unsigned.has_witness
    # Only the witnesses and the one legacy P2PKH input's scriptSig were added.
    stripped = replace(
        signed,
        inputs=tuple(replace(i, script_sig=b"", witness=()) for i in signed.inputs),
    )
    assert stripped == unsigned
    by_index = {c["given"]["txinIndex"]: c["expected"]["witness"] for c in INPUT_CASES}
    for index, witness in by_index.items():
        assert [w.hex() for w in signed.inputs[index].witness] == witness
