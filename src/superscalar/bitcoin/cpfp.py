"""The CPFP child that pays for a zero-fee parent through its P2A anchor.

Every pre-signed transaction we broadcast (factory tree txs, commitments,
second-stage HTLC txs) pays no fee of its own and carries a pay-to-anchor
output; at broadcast time a child spends that anchor plus one wallet coin and
pays for the pair. One builder serves the factory exits, the channel force
close, the watchers and the regtest node.
"""

from __future__ import annotations

from .fees import Feerate, dust_limit
from .script import P2A_SCRIPT
from .tx import OutPoint, Transaction, TxIn, TxOut

__all__ = ["TRUC_CHILD_MAX_VSIZE", "anchor_vout", "cpfp_child"]

TRUC_CHILD_MAX_VSIZE = 1_000
"""BIP431: a TRUC (v3) child of an unconfirmed TRUC parent must stay at or under 1,000 vB."""


def anchor_vout(parent: Transaction) -> int:
    """The index of `parent`'s P2A anchor output (the last one, if several)."""
    for vout in range(len(parent.outputs) - 1, -1, -1):
        if parent.outputs[vout].script_pubkey == P2A_SCRIPT:
            return vout
    raise ValueError("parent has no P2A anchor output")


def cpfp_child(
    parent: Transaction,
    fee_outpoint: OutPoint,
    fee_txout: TxOut,
    change_script: bytes,
    package_feerate: Feerate,
    parent_fee: int = 0,
) -> Transaction:
    """An unsigned child spending `parent`'s P2A anchor plus one P2TR key-path wallet input.

    Its fee brings the parent+child package to `package_feerate`; the change
    goes to `change_script`. The wallet signs input 1 (input 0, the anchor,
    needs an empty witness). Same version as the parent, so a TRUC parent gets
    a TRUC child.
    """
    vout = anchor_vout(parent)
    anchor = parent.outputs[vout]
    inputs = (TxIn(parent.outpoint(vout)), TxIn(fee_outpoint))
    draft = Transaction(parent.version, inputs, (TxOut(0, change_script),))
    child_vsize = draft.with_witnesses([(), (bytes(64),)]).vsize  # key-path witness size
    if parent.version == 3 and child_vsize > TRUC_CHILD_MAX_VSIZE:  # pragma: no cover
        raise ValueError("TRUC child would exceed 1,000 vB")
    fee = package_feerate.fee_for_vsize(parent.vsize + child_vsize) - parent_fee
    change = anchor.value + fee_txout.value - max(fee, 0)
    if change < dust_limit(change_script):
        raise ValueError(f"fee input too small: change of {change} sat would be dust")
    return Transaction(parent.version, inputs, (TxOut(change, change_script),))
