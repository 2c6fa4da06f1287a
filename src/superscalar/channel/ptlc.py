"""Adaptor signatures for PTLC outputs: who signs what, locked to which point.

Two places hand the offerer's signature over as an adaptor (pre-)signature
locked to the PTLC's point P, so that using it on chain publishes p:

- the PTLC-success tx of the receiver's commitment (in commitment_signed,
  in place of the plain HTLC signature);
- the receiver's claim tx on the offerer's commitment (in the offerer's
  revoke_and_ack for that commitment).

Pre-signatures are deterministic (fixed aux randomness; the nonce still
commits to key, message and P): the offerer never has to store what it
sent, because it recomputes the same pre-signature to extract p from a
completed signature it sees on chain.
"""

from __future__ import annotations

from ..crypto import adaptor, schnorr
from ..crypto.adaptor import AdaptorSignature
from ..crypto.errors import CryptoError
from ..crypto.keys import PublicKey, SecretKey, XOnlyPublicKey
from .commitment import Commitment, OutputKind
from .errors import InvalidHtlcSignatureError

__all__ = [
    "PRESIG_SIZE",
    "claim_presignatures",
    "parse_presignature",
    "presign_ptlc",
    "second_stage_signatures",
    "verify_claim_presignatures",
    "verify_second_stage_signature",
]

PRESIG_SIZE = 65
_AUX = bytes(32)


def presign_ptlc(key: SecretKey, sighash: bytes, point: PublicKey) -> AdaptorSignature:
    """The offerer's deterministic pre-signature on a PTLC spend, locked to `point`."""
    return adaptor.presign(key, sighash, point, _AUX)


def parse_presignature(data: bytes) -> AdaptorSignature:
    try:
        return AdaptorSignature.from_bytes(data)
    except (CryptoError, TypeError, ValueError) as exc:
        raise InvalidHtlcSignatureError(f"malformed PTLC adaptor signature: {exc}") from exc


def _received_point(commitment: Commitment, vout: int) -> PublicKey | None:
    out = commitment.outputs[vout]
    if out.kind is OutputKind.RECEIVED_HTLC and out.htlc is not None:
        return out.htlc.point
    return None


def second_stage_signatures(key: SecretKey, commitment: Commitment) -> tuple[bytes, ...]:
    """Our signatures on the peer's second-stage txs: adaptor sigs where it received a PTLC."""
    sigs: list[bytes] = []
    for vout in commitment.htlc_vouts:
        sighash = commitment.second_stage_sighash(vout)
        point = _received_point(commitment, vout)
        if point is None:
            sigs.append(schnorr.sign(key, sighash))
        else:
            sigs.append(presign_ptlc(key, sighash, point).to_bytes())
    return tuple(sigs)


def verify_second_stage_signature(
    key: XOnlyPublicKey, commitment: Commitment, vout: int, sighash: bytes, sig: bytes
) -> bool:
    """The peer's signature on our second-stage tx `vout` (an adaptor sig for a PTLC)."""
    point = _received_point(commitment, vout)
    if point is None:
        return isinstance(sig, bytes) and len(sig) == 64 and schnorr.verify(key, sighash, sig)
    if not isinstance(sig, bytes) or len(sig) != PRESIG_SIZE:
        return False
    try:
        presig = AdaptorSignature.from_bytes(sig)
    except CryptoError:
        return False
    return adaptor.verify_presignature(key, sighash, point, presig)


def claim_presignatures(key: SecretKey, commitment: Commitment) -> tuple[bytes, ...]:
    """Our pre-signatures on the peer's claim of each PTLC we offered in our `commitment`."""
    sigs: list[bytes] = []
    for vout in commitment.ptlc_claim_vouts:
        htlc = commitment.outputs[vout].htlc
        assert htlc is not None and htlc.point is not None
        sigs.append(presign_ptlc(key, commitment.ptlc_claim_sighash(vout), htlc.point).to_bytes())
    return tuple(sigs)


def verify_claim_presignatures(commitment: Commitment, sigs: tuple[bytes, ...]) -> None:
    """Check the offerer's claim pre-signatures for its `commitment`; raise if any is wrong."""
    vouts = commitment.ptlc_claim_vouts
    if not isinstance(sigs, tuple) or len(sigs) != len(vouts):
        raise InvalidHtlcSignatureError(
            f"{len(sigs) if isinstance(sigs, tuple) else '?'} PTLC claim signatures for"
            f" {len(vouts)} offered PTLC outputs"
        )
    key = commitment.keys.local_htlc.xonly()
    for vout, sig in zip(vouts, sigs, strict=True):
        htlc = commitment.outputs[vout].htlc
        assert htlc is not None and htlc.point is not None
        if not isinstance(sig, bytes) or len(sig) != PRESIG_SIZE:
            raise InvalidHtlcSignatureError(f"PTLC {htlc.id} claim signature is not 65 bytes")
        presig = parse_presignature(sig)
        if not adaptor.verify_presignature(
            key, commitment.ptlc_claim_sighash(vout), htlc.point, presig
        ):
            raise InvalidHtlcSignatureError(
                f"PTLC {htlc.id} claim adaptor signature does not verify"
            )
