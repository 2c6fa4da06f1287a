"""Unilateral resolution: spending commitment and second-stage outputs on chain.

Two kinds of transaction come out of here:

- second-stage HTLC transactions of *our* commitment (HTLC-success with the
  preimage, HTLC-timeout after expiry): zero fee, a P2A anchor, signed by
  both HTLC keys — the peer's signature came in commitment_signed;
- sweeps: single-signer spends of outputs that are ours (to_local after its
  CSV delay, second-stage outputs after theirs, our to_remote, the peer's
  HTLCs claimed on its own commitment, and penalties). A sweep pays its own
  fee at a given feerate, computed on the exact final size (BIP340
  signatures are always 64 bytes), so `inputs = output + fee` to the satoshi.

PTLCs: the receiver completes the offerer's adaptor signature with the
scalar p — in its PTLC-success tx (`htlc_second_stage`) or in the fixed
claim tx on the offerer's commitment (`claim_remote_ptlc`) — and the offerer
recomputes its own deterministic pre-signature and extracts p from the
completed signature in the confirmed witness (`extract_ptlc_secret`).
Timeouts and penalties are the same as for HTLCs.

Every builder returns a fully signed transaction; the caller broadcasts it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..bitcoin.fees import Feerate, dust_limit
from ..bitcoin.sighash import SighashContext
from ..bitcoin.taproot import TapLeaf, TaprootSpendInfo
from ..bitcoin.tx import OutPoint, Transaction, TxIn, TxOut
from ..crypto import adaptor, schnorr
from ..crypto.errors import CryptoError
from ..crypto.keys import SecretKey
from .commitment import Commitment, OutputKind
from .errors import BadPreimageError, ChannelError, UnknownHtlcError
from .htlc import Direction, check_preimage
from .keys import ChannelSecrets, derive_privkey
from .ptlc import parse_presignature, presign_ptlc
from .scripts import (
    OFFERED_SUCCESS_LEAF,
    RECEIVED_SUCCESS_LEAF,
    RECEIVED_TIMEOUT_LEAF,
    to_remote_output,
)

__all__ = [
    "SpendInput",
    "build_sweep",
    "claim_remote_htlc_success",
    "claim_remote_htlc_timeout",
    "claim_remote_ptlc",
    "extract_ptlc_secret",
    "htlc_second_stage",
    "sweep_second_stage",
    "sweep_to_local",
    "sweep_to_remote",
]

SWEEP_SEQUENCE = 0xFFFFFFFD
_DUMMY_SIG = bytes(64)


@dataclass(frozen=True)
class SpendInput:
    """One output to spend alone: key path (`leaf` None), script path, or P2A (`key` None).

    `key` is the *untweaked* secret of the internal key (key path) or of the
    leaf's key (script path). `stack` holds witness items pushed above the
    signature (a preimage); `locktime` is the least nLockTime the spend needs.
    """

    outpoint: OutPoint
    txout: TxOut
    sequence: int = SWEEP_SEQUENCE
    key: SecretKey | None = None
    spend: TaprootSpendInfo | None = None
    leaf: TapLeaf | None = None
    stack: tuple[bytes, ...] = ()
    locktime: int = 0

    def witness(self, signature: bytes) -> tuple[bytes, ...]:
        if self.key is None:
            return ()
        if self.leaf is None:
            return (signature,)
        assert self.spend is not None
        return self.spend.script_path_witness(self.leaf, [signature, *self.stack])

    def sign(self, ctx: SighashContext, index: int) -> tuple[bytes, ...]:
        if self.key is None:
            return ()
        assert self.spend is not None
        if self.leaf is None:
            digest = ctx.key_path(index)
            return self.witness(schnorr.sign(self.spend.tweak_secret_key(self.key), digest))
        digest = ctx.script_path(index, self.leaf.leaf_hash)
        return self.witness(schnorr.sign(self.key, digest))


def build_sweep(
    inputs: Sequence[SpendInput], destination: bytes, feerate: Feerate, *, version: int = 2
) -> Transaction:
    """One transaction spending `inputs` to `destination`, paying `feerate` on its exact size."""
    if not inputs:
        raise ChannelError("nothing to sweep")
    locktime = max(i.locktime for i in inputs)
    total = sum(i.txout.value for i in inputs)
    draft = Transaction(
        version,
        tuple(TxIn(i.outpoint, b"", i.sequence, i.witness(_DUMMY_SIG)) for i in inputs),
        (TxOut(0, destination),),
        locktime,
    )
    fee = feerate.fee_for_vsize(draft.vsize)
    value = total - fee
    if value < dust_limit(destination):
        raise ChannelError(f"sweeping {total} sat at this feerate leaves {value} sat: dust")
    unsigned = Transaction(
        version,
        tuple(TxIn(i.outpoint, b"", i.sequence) for i in inputs),
        (TxOut(value, destination),),
        locktime,
    )
    ctx = SighashContext(unsigned, tuple(i.txout for i in inputs))
    signed = unsigned.with_witnesses([i.sign(ctx, n) for n, i in enumerate(inputs)])
    if signed.vsize != draft.vsize:  # pragma: no cover - witness sizes are fixed
        raise AssertionError("sweep size changed after signing")
    return signed


# -- our own commitment ---------------------------------------------------------------


def _htlc_index(commitment: Commitment, direction: Direction, htlc_id: int) -> tuple[int, int]:
    vout = commitment.htlc_vout(direction, htlc_id)
    if vout is None:
        raise UnknownHtlcError(f"{direction.value} HTLC {htlc_id} has no output (trimmed or gone)")
    return vout, commitment.htlc_vouts.index(vout)


def htlc_second_stage(
    secrets: ChannelSecrets,
    commitment: Commitment,
    remote_htlc_signatures: Sequence[bytes],
    direction: Direction,
    htlc_id: int,
    preimage: bytes | None = None,
) -> Transaction:
    """Our signed HTLC-success (received HTLC, needs `preimage`) or HTLC-timeout (offered).

    For a received PTLC `preimage` is its scalar, which completes the peer's adaptor
    signature (and so publishes the scalar on chain)."""
    vout, index = _htlc_index(commitment, direction, htlc_id)
    out = commitment.outputs[vout]
    assert out.htlc is not None and out.spend is not None
    tx = commitment.second_stage_tx(vout)
    sighash = commitment.second_stage_sighash(vout, tx)
    ours = schnorr.sign(derive_privkey(secrets.htlc, commitment.keys.per_commitment_point), sighash)
    theirs = remote_htlc_signatures[index]
    if direction is Direction.RECEIVED:
        if preimage is None:
            raise ChannelError("an HTLC-success transaction needs the preimage")
        check_preimage(out.htlc, preimage)
        if out.htlc.is_ptlc:
            stack = [adaptor.adapt(parse_presignature(theirs), SecretKey(preimage)), ours]
        else:
            stack = [theirs, ours, preimage]
    else:
        stack = [theirs, ours]
    leaf = commitment.second_stage_leaf(vout)
    return tx.with_witness(0, out.spend.script_path_witness(leaf, stack))


def sweep_to_local(secrets: ChannelSecrets, commitment: Commitment) -> SpendInput:
    """Our to_local output, spendable `to_self_delay` blocks after the commitment confirms."""
    vout = commitment.vout(OutputKind.TO_LOCAL)
    if vout is None:
        raise ChannelError("this commitment has no to_local output")
    out = commitment.outputs[vout]
    assert out.spend is not None
    key = derive_privkey(secrets.delayed_payment, commitment.keys.per_commitment_point)
    return SpendInput(
        OutPoint(commitment.txid, vout),
        out.txout,
        commitment.to_self_delay,
        key,
        out.spend,
        out.spend.leaves[0],
    )


def sweep_second_stage(
    secrets: ChannelSecrets, commitment: Commitment, second_stage: Transaction
) -> SpendInput:
    """Output 0 of one of our HTLC-success/-timeout txs, after `to_self_delay`."""
    info = commitment.second_stage_output()
    if second_stage.outputs[0].script_pubkey != info.script_pubkey:
        raise ChannelError("not a second-stage transaction of this commitment")
    key = derive_privkey(secrets.delayed_payment, commitment.keys.per_commitment_point)
    return SpendInput(
        OutPoint(second_stage.txid, 0),
        second_stage.outputs[0],
        commitment.to_self_delay,
        key,
        info,
        info.leaves[0],
    )


# -- the peer's commitment ----------------------------------------------------------------


def sweep_to_remote(secrets: ChannelSecrets, commitment: Commitment) -> SpendInput:
    """Our output on the peer's commitment (static key, 1-block delay)."""
    vout = commitment.vout(OutputKind.TO_REMOTE)
    if vout is None:
        raise ChannelError("this commitment has no to_remote output")
    info = to_remote_output(secrets.payment.public_key)
    out = commitment.outputs[vout]
    if out.txout.script_pubkey != info.script_pubkey:
        raise ChannelError("the to_remote output is not ours")
    return SpendInput(
        OutPoint(commitment.txid, vout), out.txout, 1, secrets.payment, info, info.leaves[0]
    )


def claim_remote_htlc_success(
    secrets: ChannelSecrets, commitment: Commitment, htlc_id: int, preimage: bytes
) -> SpendInput:
    """An HTLC the peer offered us, claimed with the preimage straight from its commitment."""
    vout, _ = _htlc_index(commitment, Direction.OFFERED, htlc_id)
    out = commitment.outputs[vout]
    assert out.htlc is not None and out.spend is not None
    if out.htlc.is_ptlc:
        raise ChannelError(f"HTLC {htlc_id} is a PTLC: claim it with claim_remote_ptlc")
    check_preimage(out.htlc, preimage)
    key = derive_privkey(secrets.htlc, commitment.keys.per_commitment_point)
    return SpendInput(
        OutPoint(commitment.txid, vout),
        out.txout,
        1,
        key,
        out.spend,
        out.spend.leaves[OFFERED_SUCCESS_LEAF],
        (preimage,),
    )


def claim_remote_htlc_timeout(
    secrets: ChannelSecrets, commitment: Commitment, htlc_id: int
) -> SpendInput:
    """An HTLC we offered, taken back from the peer's commitment after its expiry."""
    vout, _ = _htlc_index(commitment, Direction.RECEIVED, htlc_id)
    out = commitment.outputs[vout]
    assert out.htlc is not None and out.spend is not None
    key = derive_privkey(secrets.htlc, commitment.keys.per_commitment_point)
    return SpendInput(
        OutPoint(commitment.txid, vout),
        out.txout,
        1,
        key,
        out.spend,
        out.spend.leaves[RECEIVED_TIMEOUT_LEAF],
        locktime=out.htlc.cltv_expiry,
    )


def claim_remote_ptlc(
    secrets: ChannelSecrets,
    commitment: Commitment,
    htlc_id: int,
    scalar: bytes,
    claim_signatures: Sequence[bytes],
) -> Transaction:
    """A PTLC the peer offered us, claimed from its commitment with the fixed claim tx.

    `claim_signatures` are the peer's adaptor signatures for this commitment (kept in
    `RemoteCommit.ptlc_claim_signatures`); completing ours publishes `scalar`. Zero
    fee with a P2A anchor, like a second-stage tx: confirm it with a CPFP child.
    """
    vout, _ = _htlc_index(commitment, Direction.OFFERED, htlc_id)
    out = commitment.outputs[vout]
    assert out.htlc is not None and out.spend is not None
    if not out.htlc.is_ptlc:
        raise ChannelError(f"HTLC {htlc_id} is not a PTLC")
    check_preimage(out.htlc, scalar)
    index = commitment.ptlc_claim_vouts.index(vout)
    if index >= len(claim_signatures):
        raise ChannelError(f"no claim signature of the peer for PTLC {htlc_id}")
    tx = commitment.ptlc_claim_tx(vout)
    sighash = commitment.ptlc_claim_sighash(vout)
    theirs = adaptor.adapt(parse_presignature(claim_signatures[index]), SecretKey(scalar))
    if not schnorr.verify(commitment.keys.local_htlc.xonly(), sighash, theirs):
        raise ChannelError(f"the peer's claim signature for PTLC {htlc_id} does not complete")
    ours = schnorr.sign(derive_privkey(secrets.htlc, commitment.keys.per_commitment_point), sighash)
    leaf = out.spend.leaves[OFFERED_SUCCESS_LEAF]
    return tx.with_witness(0, out.spend.script_path_witness(leaf, [ours, theirs]))


def extract_ptlc_secret(
    secrets: ChannelSecrets, commitment: Commitment, htlc_id: int, spend: Transaction
) -> SecretKey:
    """The scalar of a PTLC we offered, read from the confirmed tx that claimed it.

    `commitment` is the one on chain: ours (the peer used our claim pre-signature) or
    the peer's (its PTLC-success tx used our second-stage pre-signature). Our
    pre-signature is recomputed (deterministic), so nothing but our keys is needed.
    Raises `BadPreimageError` if `spend` does not reveal it (e.g. a timeout spend).
    """
    ours_is_holder = commitment.htlc_vout(Direction.OFFERED, htlc_id) is not None
    direction = Direction.OFFERED if ours_is_holder else Direction.RECEIVED
    vout, _ = _htlc_index(commitment, direction, htlc_id)
    out = commitment.outputs[vout]
    assert out.htlc is not None and out.spend is not None
    if out.htlc.point is None:
        raise ChannelError(f"HTLC {htlc_id} is not a PTLC")
    spent = OutPoint(commitment.txid, vout)
    inputs = [i for i, txin in enumerate(spend.inputs) if txin.prevout == spent]
    if not inputs:
        raise BadPreimageError(f"the transaction does not spend PTLC {htlc_id}'s output")
    witness = spend.inputs[inputs[0]].witness
    if ours_is_holder:  # our claim leaf: stack [their sig, our sig]
        leaf, sighash = out.spend.leaves[OFFERED_SUCCESS_LEAF], commitment.ptlc_claim_sighash(vout)
        position = 1
    else:  # their PTLC-success leaf: stack [our sig, their sig]
        leaf, sighash = (
            out.spend.leaves[RECEIVED_SUCCESS_LEAF],
            commitment.second_stage_sighash(vout),
        )
        position = 0
    if len(witness) != 4 or witness[2] != leaf.script:
        raise BadPreimageError(f"PTLC {htlc_id} was not spent by its success path")
    key = derive_privkey(secrets.htlc, commitment.keys.per_commitment_point)
    presig = presign_ptlc(key, sighash, out.htlc.point)
    try:
        return adaptor.extract(presig, witness[position], out.htlc.point)
    except CryptoError as exc:
        raise BadPreimageError(f"PTLC {htlc_id}'s spend does not reveal its scalar: {exc}") from exc
