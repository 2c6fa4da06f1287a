"""Spending the funding output directly: cooperative close and the distribution tx.

- **Cooperative close**: everyone (LSP + all clients) signs one transaction
  that pays each party its current balance straight from the funding output;
  none of the tree ever reaches the chain. The LSP's output takes the
  remainder and pays the fee (it asked for the close and holds the liquidity).
- **Distribution tx**: signed by everyone at creation (and again at each epoch
  reset), with nLockTime at the factory's end. If the LSP vanishes, clients
  broadcast it and are paid by default instead of exiting through the tree.
  Like tree transactions it pays zero fee and carries a P2A anchor for CPFP;
  it uses the tree's TRUC version when it fits TRUC's 10,000-vbyte limit and
  version 2 otherwise (large factories).

Both are one MuSig2 session under the funding output's key, expressed as a
`SessionSpec` so the same ceremony machinery signs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..bitcoin.fees import Feerate, dust_limit
from ..bitcoin.script import P2A_SCRIPT
from ..bitcoin.sighash import SighashContext
from ..bitcoin.tx import OutPoint, Transaction, TxIn, TxOut
from ..crypto.keys import PublicKey
from .errors import FactoryError
from .outputs import MusigOutput
from .shape import TRUC_MAX_VSIZE, FactoryParams
from .signing import SessionSpec, participant_index
from .tree import FactoryScripts

__all__ = [
    "FundingRef",
    "FundingSpend",
    "cooperative_close",
    "distribution_tx",
    "funding_close",
    "funding_distribution",
]

_SEQUENCE_ENABLE_LOCKTIME = 0xFFFFFFFE


@dataclass(frozen=True)
class FundingSpend:
    """A transaction spending the funding output by key path, and its signing session."""

    tx: Transaction
    spent: TxOut
    session: SessionSpec

    def signed(self, signature: bytes) -> Transaction:
        return self.tx.with_witness(0, (signature,))

    @property
    def fee(self) -> int:
        return self.spent.value - self.tx.total_out


def _check_payouts(payouts: Sequence[TxOut]) -> None:
    for out in payouts:
        if out.value < dust_limit(out.script_pubkey):
            raise FactoryError(f"payout of {out.value} sat is below dust")


def cooperative_close(
    scripts: FactoryScripts,
    client_payouts: Sequence[TxOut],
    lsp_script: bytes,
    feerate: Feerate,
    session_id: int = 0,
) -> FundingSpend:
    """One tx paying `client_payouts` and the rest, less the fee, to `lsp_script`.

    If the LSP's remainder would be dust it is left to the fee rather than
    creating an unrelayable output.
    """
    spec = scripts.shape.spec
    return funding_close(
        scripts.funding,
        FundingRef(
            spec.funding_outpoint,
            spec.funding_amount,
            spec.lsp,
            tuple(c.key for c in spec.clients),
        ),
        client_payouts,
        lsp_script,
        feerate,
        session_id,
    )


@dataclass(frozen=True)
class FundingRef:
    """What a close needs to know about the funding output besides its key."""

    outpoint: OutPoint
    amount: int
    lsp: PublicKey
    clients: tuple[PublicKey, ...]
    """Every client key by position: the signer indexes of the close session."""


def _funding_spend(
    funding: MusigOutput, ref: FundingRef, tx: Transaction, spent: TxOut, session_id: int
) -> FundingSpend:
    """`tx` spending the funding key path, with the MuSig2 session of every participant."""
    keys = participant_index(ref.lsp, ref.clients)
    session = SessionSpec(
        session_id,
        SighashContext(tx, (spent,)).key_path(0),
        funding.signing,
        tuple(keys[k.data] for k in funding.keys),
    )
    return FundingSpend(tx, spent, session)


def funding_close(
    funding: MusigOutput,
    ref: FundingRef,
    client_payouts: Sequence[TxOut],
    lsp_script: bytes,
    feerate: Feerate,
    session_id: int = 0,
) -> FundingSpend:
    """`cooperative_close` from the funding output alone: a client holding only its path
    view (which carries every participant key) builds the same tx the LSP does."""
    _check_payouts(client_payouts)
    spent = funding.txout(ref.amount)
    prevout = TxIn(ref.outpoint)
    paid = sum(o.value for o in client_payouts)
    draft = Transaction(2, (prevout,), (*client_payouts, TxOut(0, lsp_script)))
    fee = feerate.fee_for_vsize(draft.with_witness(0, (bytes(64),)).vsize)
    remainder = ref.amount - paid - fee
    if remainder < 0:
        raise FactoryError(
            f"payouts ({paid} sat) and fee ({fee}) exceed the funding ({ref.amount})"
        )
    outputs = list(client_payouts)
    if remainder >= dust_limit(lsp_script):
        outputs.append(TxOut(remainder, lsp_script))
    tx = Transaction(2, (prevout,), tuple(outputs))
    return _funding_spend(funding, ref, tx, spent, session_id)


def distribution_tx(
    scripts: FactoryScripts,
    client_payouts: Sequence[TxOut],
    lsp_script: bytes,
    locktime: int,
    session_id: int = 0,
) -> FundingSpend:
    """The nLockTime'd default: clients paid `client_payouts`, the LSP the rest, zero fee."""
    spec = scripts.shape.spec
    return funding_distribution(
        scripts.funding,
        FundingRef(
            spec.funding_outpoint,
            spec.funding_amount,
            spec.lsp,
            tuple(c.key for c in spec.clients),
        ),
        spec.params,
        client_payouts,
        lsp_script,
        locktime,
        session_id,
    )


def funding_distribution(
    funding: MusigOutput,
    ref: FundingRef,
    params: FactoryParams,
    client_payouts: Sequence[TxOut],
    lsp_script: bytes,
    locktime: int,
    session_id: int = 0,
) -> FundingSpend:
    """`distribution_tx` from the funding output alone: a client holding only its path view
    builds (and checks) the same tx the LSP does."""
    _check_payouts(client_payouts)
    if not 0 < locktime <= params.cltv_timeout:
        raise FactoryError(f"distribution locktime {locktime} must be in 1..{params.cltv_timeout}")
    anchor = TxOut(params.fees.anchor_value, P2A_SCRIPT)
    remainder = ref.amount - sum(o.value for o in client_payouts) - anchor.value
    if remainder < 0:
        raise FactoryError("client payouts exceed the funding amount")
    outputs = list(client_payouts)
    if remainder:
        if remainder < dust_limit(lsp_script):
            raise FactoryError(f"LSP remainder of {remainder} sat would be dust")
        outputs.append(TxOut(remainder, lsp_script))
    outputs.append(anchor)
    prevout = TxIn(ref.outpoint, sequence=_SEQUENCE_ENABLE_LOCKTIME)
    version = params.fees.tx_version
    tx = Transaction(version, (prevout,), tuple(outputs), locktime)
    if version == 3 and tx.with_witness(0, (bytes(64),)).vsize > TRUC_MAX_VSIZE:
        tx = Transaction(2, (prevout,), tuple(outputs), locktime)
    spent = funding.txout(ref.amount)
    return _funding_spend(funding, ref, tx, spent, session_id)
