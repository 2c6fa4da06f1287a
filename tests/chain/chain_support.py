"""Helpers for chain tests: fund a script from the node's wallet, build simple spends."""

from __future__ import annotations

from superscalar.bitcoin.script import P2A_SCRIPT
from superscalar.bitcoin.sighash import taproot_sighash
from superscalar.bitcoin.taproot import TaprootSpendInfo
from superscalar.bitcoin.tx import OutPoint, Transaction, TxIn, TxOut
from superscalar.chain.node import RegtestNode
from superscalar.crypto import schnorr
from superscalar.crypto.keys import SecretKey

MINER = P2A_SCRIPT  # a coinbase destination nobody needs to spend


def fund(
    node: RegtestNode, script_pubkey: bytes, amount: int, confirm: bool = True
) -> tuple[OutPoint, TxOut]:
    """Pay `amount` to `script_pubkey` from the wallet; returns where it landed, mined if asked."""
    tx = node.send_to(script_pubkey, amount)
    if confirm:
        node.mine(1, MINER)
    vout = next(i for i, o in enumerate(tx.outputs) if o.script_pubkey == script_pubkey)
    return OutPoint(tx.txid, vout), TxOut(amount, script_pubkey)


def keypath_spend(
    info: TaprootSpendInfo,
    secret: SecretKey,
    prevout: OutPoint,
    spent: TxOut,
    outputs: tuple[TxOut, ...],
    *,
    version: int = 2,
    sequence: int = 0xFFFFFFFD,
    locktime: int = 0,
) -> Transaction:
    """A one-input key-path spend of a taproot output, signed."""
    tx = Transaction(version, (TxIn(prevout, b"", sequence),), outputs, locktime)
    digest = taproot_sighash(tx, 0, [spent])
    return tx.with_witness(0, [schnorr.sign(info.tweak_secret_key(secret), digest)])


def scriptpath_spend(
    info: TaprootSpendInfo,
    leaf: int,
    secret: SecretKey,
    prevout: OutPoint,
    spent: TxOut,
    outputs: tuple[TxOut, ...],
    *,
    sequence: int,
    locktime: int,
    version: int = 2,
) -> Transaction:
    """A one-input script-path spend through `leaf` whose script wants one signature."""
    tx = Transaction(version, (TxIn(prevout, b"", sequence),), outputs, locktime)
    digest = taproot_sighash(tx, 0, [spent], leaf_hash=info.leaves[leaf].leaf_hash)
    witness = info.script_path_witness(leaf, [schnorr.sign(secret, digest)])
    return tx.with_witness(0, witness)
