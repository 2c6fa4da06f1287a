"""Commitment transactions and their second-stage HTLC transactions.

A commitment spends the 2-of-2 funding output and pays, from its holder's
side: to_local (revocable, CSV-delayed), to_remote, one output per untrimmed
HTLC, and one P2A anchor. It pays **zero fee** and is version 3 (TRUC): the
broadcaster bumps it by spending the anchor in a child (1p1c package), as the
factory's own transactions do. The anchor carries exactly what the other
outputs leave of the funding amount — the sub-satoshi remainders of msat
balances and every trimmed (below-dust) output — so value is conserved with
no fee, the trimmed value goes to whoever confirms the transaction (as it
goes to fees in BOLT #3), and no output is ever below the dust limit.

Encoding follows BOLT #3: the 48-bit commitment number, XOR-obscured with
SHA256(initiator payment basepoint || acceptor payment basepoint), is split
over nLockTime (0x20 << 24 | low 24 bits) and the input's nSequence
(0x80 << 24 | high 24 bits); outputs are in BIP69 order, HTLCs tie-broken by
CLTV expiry.

Second-stage transactions (HTLC-timeout for an offered HTLC, HTLC-success for
a received one) are version 3, zero fee, with the HTLC's full value in a
revocable CSV-delayed output plus a 0-sat P2A anchor for CPFP. Their input
has nSequence 1; the HTLC-timeout's nLockTime is the HTLC's CLTV expiry. The
counterparty's signature on them is a BIP340 signature over SIGHASH_DEFAULT,
exchanged in commitment_signed.

PTLCs (see `scripts`): on the receiver's commitment the PTLC-success tx is
built exactly like an HTLC-success tx, but the offerer's signature on it is
an adaptor signature locked to the PTLC's point. On the offerer's
commitment the receiver claims with `ptlc_claim_tx`: version 3, zero fee,
nSequence 1, the PTLC's full value to the receiver's static to_remote
script plus a 0-sat P2A anchor — fixed, so the offerer can adaptor-sign it
in advance (in its revoke_and_ack).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ..bitcoin.script import P2A_SCRIPT
from ..bitcoin.sighash import SighashContext
from ..bitcoin.taproot import TapLeaf, TaprootSpendInfo
from ..bitcoin.tx import OutPoint, Transaction, TxIn, TxOut
from ..crypto.hashes import sha256
from ..crypto.keys import PublicKey
from .config import ChannelConfig, Funding
from .htlc import CommitmentSpec, Direction, Htlc
from .keys import CommitmentKeys
from .scripts import (
    OFFERED_SUCCESS_LEAF,
    OFFERED_TIMEOUT_LEAF,
    RECEIVED_SUCCESS_LEAF,
    offered_htlc_output,
    offered_ptlc_output,
    received_htlc_output,
    received_ptlc_output,
    second_stage_output,
    to_local_output,
    to_remote_output,
)

__all__ = [
    "COMMITMENT_VERSION",
    "Commitment",
    "CommitmentOutput",
    "OutputKind",
    "build_commitment",
    "commitment_number_from_tx",
    "obscuring_factor",
]

COMMITMENT_VERSION = 3
_LOCKTIME_TAG = 0x20 << 24
_SEQUENCE_TAG = 0x80 << 24
_MASK24 = (1 << 24) - 1
_MASK48 = (1 << 48) - 1
SECOND_STAGE_SEQUENCE = 1


class OutputKind(Enum):
    TO_LOCAL = "to_local"
    TO_REMOTE = "to_remote"
    OFFERED_HTLC = "offered_htlc"
    RECEIVED_HTLC = "received_htlc"
    ANCHOR = "anchor"


@dataclass(frozen=True, slots=True)
class CommitmentOutput:
    """One output of a commitment: what it is, its value and how to spend it."""

    kind: OutputKind
    txout: TxOut
    spend: TaprootSpendInfo | None = None
    htlc: Htlc | None = None


def obscuring_factor(initiator_payment: PublicKey, acceptor_payment: PublicKey) -> int:
    """Lower 48 bits of SHA256(initiator payment basepoint || acceptor payment basepoint)."""
    return int.from_bytes(sha256(initiator_payment.data + acceptor_payment.data)[-6:], "big")


def commitment_number_from_tx(tx: Transaction, factor: int) -> int | None:
    """The commitment number a transaction encodes, or None if it is no commitment of ours."""
    if len(tx.inputs) != 1:
        return None
    sequence, locktime = tx.inputs[0].sequence, tx.locktime
    if sequence >> 24 != 0x80 or locktime >> 24 != 0x20:
        return None
    obscured = ((sequence & _MASK24) << 24) | (locktime & _MASK24)
    return obscured ^ factor


@dataclass(frozen=True)
class Commitment:
    """One side's commitment transaction (unsigned) with everything needed to spend it."""

    number: int
    spec: CommitmentSpec
    keys: CommitmentKeys
    to_self_delay: int
    funding_txout: TxOut
    tx: Transaction
    outputs: tuple[CommitmentOutput, ...]

    @property
    def txid(self) -> bytes:
        return self.tx.txid

    @property
    def htlc_vouts(self) -> tuple[int, ...]:
        """Untrimmed HTLC outputs in vout order: the order of commitment_signed's HTLC sigs."""
        return tuple(
            i
            for i, o in enumerate(self.outputs)
            if o.kind in (OutputKind.OFFERED_HTLC, OutputKind.RECEIVED_HTLC)
        )

    def vout(self, kind: OutputKind) -> int | None:
        """The vout of the to_local, to_remote or anchor output (None if trimmed)."""
        for i, o in enumerate(self.outputs):
            if o.kind is kind:
                return i
        return None

    def htlc_vout(self, direction: Direction, htlc_id: int) -> int | None:
        """Where an HTLC (holder's direction) landed; None if it was trimmed."""
        kind = (
            OutputKind.OFFERED_HTLC if direction is Direction.OFFERED else OutputKind.RECEIVED_HTLC
        )
        for i, o in enumerate(self.outputs):
            if o.kind is kind and o.htlc is not None and o.htlc.id == htlc_id:
                return i
        return None

    def funding_sighash(self) -> bytes:
        """The key-path sighash the 2-of-2 MuSig2 session signs."""
        return SighashContext(self.tx, (self.funding_txout,)).key_path(0)

    def second_stage_leaf(self, vout: int) -> TapLeaf:
        """The 2-of-2 leaf a second-stage tx spends: offered→timeout, received→success."""
        out = self.outputs[vout]
        if out.spend is None or out.kind not in (OutputKind.OFFERED_HTLC, OutputKind.RECEIVED_HTLC):
            raise ValueError(f"output {vout} is not an HTLC output")
        index = (
            OFFERED_TIMEOUT_LEAF if out.kind is OutputKind.OFFERED_HTLC else RECEIVED_SUCCESS_LEAF
        )
        return out.spend.leaves[index]

    def second_stage_output(self) -> TaprootSpendInfo:
        return second_stage_output(
            self.keys.revocation, self.keys.local_delayed, self.to_self_delay
        )

    def second_stage_tx(self, vout: int) -> Transaction:
        """The holder's unsigned HTLC-timeout (offered) or HTLC-success (received) tx."""
        out = self.outputs[vout]
        if out.htlc is None:
            raise ValueError(f"output {vout} is not an HTLC output")
        locktime = out.htlc.cltv_expiry if out.kind is OutputKind.OFFERED_HTLC else 0
        return Transaction(
            COMMITMENT_VERSION,
            (TxIn(OutPoint(self.txid, vout), b"", SECOND_STAGE_SEQUENCE),),
            (
                TxOut(out.txout.value, self.second_stage_output().script_pubkey),
                TxOut(0, P2A_SCRIPT),
            ),
            locktime,
        )

    def second_stage_sighash(self, vout: int, tx: Transaction | None = None) -> bytes:
        """What both HTLC keys sign to spend HTLC output `vout` with a second-stage tx."""
        tx = tx if tx is not None else self.second_stage_tx(vout)
        leaf = self.second_stage_leaf(vout)
        return SighashContext(tx, (self.outputs[vout].txout,)).script_path(0, leaf.leaf_hash)

    def second_stage_sighashes(self) -> list[bytes]:
        return [self.second_stage_sighash(v) for v in self.htlc_vouts]

    @property
    def ptlc_claim_vouts(self) -> tuple[int, ...]:
        """Untrimmed offered PTLC outputs in vout order: the order of the claim signatures."""
        return tuple(
            i
            for i, o in enumerate(self.outputs)
            if o.kind is OutputKind.OFFERED_HTLC and o.htlc is not None and o.htlc.is_ptlc
        )

    def ptlc_claim_tx(self, vout: int) -> Transaction:
        """The receiver's fixed claim of offered PTLC `vout`, to its static to_remote script."""
        out = self.outputs[vout]
        if out.kind is not OutputKind.OFFERED_HTLC or out.htlc is None or not out.htlc.is_ptlc:
            raise ValueError(f"output {vout} is not an offered PTLC")
        return Transaction(
            COMMITMENT_VERSION,
            (TxIn(OutPoint(self.txid, vout), b"", SECOND_STAGE_SEQUENCE),),
            (
                TxOut(out.txout.value, to_remote_output(self.keys.remote_payment).script_pubkey),
                TxOut(0, P2A_SCRIPT),
            ),
            0,
        )

    def ptlc_claim_sighash(self, vout: int) -> bytes:
        """What both HTLC keys sign for `ptlc_claim_tx(vout)` (the offerer as adaptor sig)."""
        out = self.outputs[vout]
        assert out.spend is not None
        leaf = out.spend.leaves[OFFERED_SUCCESS_LEAF]
        return SighashContext(self.ptlc_claim_tx(vout), (out.txout,)).script_path(0, leaf.leaf_hash)

    def ptlc_claim_sighashes(self) -> list[bytes]:
        return [self.ptlc_claim_sighash(v) for v in self.ptlc_claim_vouts]


def build_commitment(
    funding: Funding,
    funding_script: bytes,
    number: int,
    spec: CommitmentSpec,
    keys: CommitmentKeys,
    config: ChannelConfig,
    obscuring: int,
) -> Commitment:
    """Build the commitment transaction for `spec` (holder's view) — BOLT #3 steps 1-9."""
    if spec.total_msat != funding.amount_msat:
        raise ValueError(
            f"spec pays {spec.total_msat} msat but the funding output holds {funding.amount_msat}"
        )
    if not 0 <= number <= _MASK48:
        raise ValueError("commitment number out of range")
    dust = config.dust_limit_sat
    delay = config.to_self_delay
    made: list[tuple[tuple[int, bytes, int, str, int], CommitmentOutput]] = []

    def add(out: CommitmentOutput, cltv: int = 0, tiebreak: tuple[str, int] = ("", 0)) -> None:
        made.append(((out.txout.value, out.txout.script_pubkey, cltv, *tiebreak), out))

    to_local = spec.to_local_msat // 1000
    if to_local >= dust:
        info = to_local_output(keys.revocation, keys.local_delayed, delay)
        add(CommitmentOutput(OutputKind.TO_LOCAL, TxOut(to_local, info.script_pubkey), info))
    to_remote = spec.to_remote_msat // 1000
    if to_remote >= dust:
        info = to_remote_output(keys.remote_payment)
        add(CommitmentOutput(OutputKind.TO_REMOTE, TxOut(to_remote, info.script_pubkey), info))
    for item in spec.htlcs:
        htlc = item.htlc
        if htlc.amount_sat < dust:
            continue  # trimmed: its value goes to the anchor
        if htlc.is_ptlc:
            kind = (
                OutputKind.OFFERED_HTLC
                if item.direction is Direction.OFFERED
                else OutputKind.RECEIVED_HTLC
            )
            info = (
                offered_ptlc_output(keys.revocation, keys.local_htlc, keys.remote_htlc)
                if item.direction is Direction.OFFERED
                else received_ptlc_output(
                    keys.revocation, keys.local_htlc, keys.remote_htlc, htlc.cltv_expiry
                )
            )
        elif item.direction is Direction.OFFERED:
            kind = OutputKind.OFFERED_HTLC
            info = offered_htlc_output(
                keys.revocation, keys.local_htlc, keys.remote_htlc, htlc.payment_hash
            )
        else:
            kind = OutputKind.RECEIVED_HTLC
            info = received_htlc_output(
                keys.revocation,
                keys.local_htlc,
                keys.remote_htlc,
                htlc.payment_hash,
                htlc.cltv_expiry,
            )
        out = CommitmentOutput(kind, TxOut(htlc.amount_sat, info.script_pubkey), info, htlc)
        add(out, htlc.cltv_expiry, (item.direction.value, htlc.id))
    anchor = funding.amount_sat - sum(o.txout.value for _, o in made)
    add(CommitmentOutput(OutputKind.ANCHOR, TxOut(anchor, P2A_SCRIPT)))
    made.sort(key=lambda pair: pair[0])
    outputs = tuple(o for _, o in made)
    obscured = number ^ obscuring
    tx = Transaction(
        COMMITMENT_VERSION,
        (TxIn(funding.outpoint, b"", _SEQUENCE_TAG | (obscured >> 24)),),
        tuple(o.txout for o in outputs),
        _LOCKTIME_TAG | (obscured & _MASK24),
    )
    return Commitment(
        number, spec, keys, delay, TxOut(funding.amount_sat, funding_script), tx, outputs
    )
