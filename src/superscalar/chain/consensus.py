"""Consensus script verification through libbitcoinkernel (Bitcoin Core's own code).

This is the one place transactions are judged valid: the mempool, the tests and
the factory's self-checks all ask the kernel, never a re-implementation.
"""

from __future__ import annotations

from collections.abc import Sequence

import pbk

from superscalar.bitcoin.tx import Transaction, TxOut

__all__ = ["ScriptVerifyError", "verify_input", "verify_transaction"]

_FLAGS = pbk.ScriptVerificationFlags.ALL


class ScriptVerifyError(ValueError):
    """An input's witness/scriptSig does not satisfy the output it spends."""

    def __init__(self, index: int, reason: str = "script verification failed") -> None:
        super().__init__(f"input {index}: {reason}")
        self.index = index
        self.reason = reason


def _kernel_outputs(spent: Sequence[TxOut]) -> list[pbk.TransactionOutput]:
    return [pbk.TransactionOutput(pbk.ScriptPubkey(o.script_pubkey), o.value) for o in spent]


def _verify(tx: Transaction, spent: Sequence[TxOut], indexes: Sequence[int]) -> None:
    if len(spent) != len(tx.inputs):
        raise ValueError(f"need {len(tx.inputs)} spent outputs, got {len(spent)}")
    ktx = pbk.Transaction(tx.to_bytes())
    kspent = _kernel_outputs(spent)
    precomputed = pbk.script.PrecomputedTransactionData(ktx, kspent)
    for index in indexes:
        try:
            ok = kspent[index].script_pubkey.verify(
                spent[index].value, ktx, precomputed, index, _FLAGS
            )
        except pbk.ScriptVerifyException as exc:
            raise ScriptVerifyError(index, str(exc)) from exc
        if not ok:
            raise ScriptVerifyError(index)


def verify_transaction(tx: Transaction, spent: Sequence[TxOut]) -> None:
    """Check every input of `tx` against the outputs it spends (in input order).

    Uses all consensus flags (P2SH, DERSIG, NULLDUMMY, CLTV, CSV, WITNESS,
    TAPROOT). CLTV/CSV here check the script against the tx's own nLockTime and
    nSequence; whether the chain has reached those locks is the mempool's job.
    """
    _verify(tx, spent, range(len(tx.inputs)))


def verify_input(tx: Transaction, index: int, spent: Sequence[TxOut]) -> None:
    """Check one input; `spent` must still list every input's spent output (taproot)."""
    if not 0 <= index < len(tx.inputs):
        raise ValueError(f"transaction has no input {index}")
    _verify(tx, spent, [index])
