"""Helpers for chain tests: fund a script from the node's wallet, build simple spends."""

from __future__ import annotations

from superscalar.bitcoin.script import P2A_SCRIPT
from superscalar.bitcoin.sighash import taproot_sighash
from superscalar.bitcoin.taproot import TaprootSpendInfo
from superscalar.bitcoin.tx import OutPoint, Transaction, TxIn, TxOut
from superscalar.chain.consensus import verify_transaction
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


def spent_outputs(node: RegtestNode, tx: Transaction) -> list[TxOut]:
    """The outputs `tx` spends, looked up on `node` (for script checks before broadcast)."""
    outs: list[TxOut] = []
    for txin in tx.inputs:
        status = node.transaction(txin.prevout.txid)
        assert status is not None, f"{txin.prevout} is unknown"
        outs.append(status.tx.outputs[txin.prevout.vout])
    return outs


def confirm_with_child(node: RegtestNode, tx: Transaction) -> None:
    """Script-check `tx`, submit it with a wallet CPFP child on its anchor, mine it."""
    verify_transaction(tx, spent_outputs(node, tx))
    result = node.submit_with_cpfp(tx)
    assert result.ok, (result.errors, result.package_error)
    node.mine(1, MINER)
    status = node.transaction(tx.txid)
    assert status is not None and status.height == node.height
