"""Build and sign taproot spends for tests that ask Bitcoin Core's consensus code to judge them."""

from __future__ import annotations

from superscalar.bitcoin.sighash import SIGHASH_DEFAULT, SighashContext, signature_with_hash_type
from superscalar.bitcoin.taproot import TaprootSpendInfo
from superscalar.bitcoin.tx import OutPoint, Transaction, TxIn, TxOut
from superscalar.chain.consensus import ScriptVerifyError, verify_transaction
from superscalar.crypto import schnorr
from superscalar.crypto.keys import SecretKey

__all__ = ["consensus_accepts", "outpoint", "sign_script_path", "spend_tx"]


def outpoint(n: int) -> OutPoint:
    """A distinct made-up outpoint (script checks never look the coin up)."""
    return OutPoint(bytes([n + 1]) * 32, n)


def spend_tx(
    n_inputs: int,
    outputs: tuple[TxOut, ...],
    *,
    version: int = 2,
    locktime: int = 0,
    sequence: int = 0xFFFFFFFD,
) -> Transaction:
    """An unsigned transaction spending `n_inputs` made-up outpoints."""
    inputs = tuple(TxIn(outpoint(i), b"", sequence) for i in range(n_inputs))
    return Transaction(version, inputs, outputs, locktime)


def consensus_accepts(tx: Transaction, spent: tuple[TxOut, ...]) -> bool:
    """True iff libbitcoinkernel accepts every input's script against what it spends."""
    try:
        verify_transaction(tx, spent)
    except ScriptVerifyError:
        return False
    return True


def sign_script_path(
    tx: Transaction,
    spent: tuple[TxOut, ...],
    index: int,
    info: TaprootSpendInfo,
    leaf: int,
    secret: SecretKey,
    hash_type: int = SIGHASH_DEFAULT,
) -> Transaction:
    """`tx` with input `index` spending `info`'s leaf `leaf` (a one-signature tapscript)."""
    digest = SighashContext(tx, spent).script_path(index, info.leaves[leaf].leaf_hash, hash_type)
    sig = signature_with_hash_type(schnorr.sign(secret, digest), hash_type)
    return tx.with_witness(index, info.script_path_witness(leaf, [sig]))
