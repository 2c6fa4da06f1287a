"""BIP340-compatible Schnorr adaptor signatures (single signer and MuSig2).

A pre-signature (R, s) for adaptor point T satisfies

    s·G + g·T == lift_x(R.x) + e·P,   g = +1 if R has even y else −1,
    e = hash_BIP0340/challenge(R.x || P.x || m),

so adding g·t to s yields an ordinary BIP340 signature (R.x, s + g·t), and
anyone holding both learns t = g·(s' − s). This is the PTLC key turnover
primitive: a factory client's completed signature hands the LSP its key.
The MuSig2 variant comes from a session whose aggregate nonce is offset by T
(`SigningSession(..., adaptor=T)`); both verify with the same equation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import InvalidKeyError, InvalidSignatureError
from .hashes import tagged_hash
from .keys import CURVE_ORDER, PublicKey, SecretKey, XOnlyPublicKey, scalar_bytes

__all__ = ["AdaptorSignature", "adapt", "extract", "presign", "verify_presignature"]

_N = CURVE_ORDER


@dataclass(frozen=True)
class AdaptorSignature:
    """A pre-signature: the final nonce point R (33 bytes, parity kept) and scalar s."""

    nonce: PublicKey
    s: int

    def __post_init__(self) -> None:
        if not 0 <= self.s < _N:
            raise InvalidSignatureError("pre-signature scalar out of range")

    @property
    def sign(self) -> int:
        """g: +1 when R has even y, −1 otherwise."""
        return 1 if self.nonce.has_even_y else -1

    def to_bytes(self) -> bytes:
        return self.nonce.data + self.s.to_bytes(32, "big")

    @classmethod
    def from_bytes(cls, data: bytes) -> AdaptorSignature:
        if not isinstance(data, bytes) or len(data) != 65:
            raise InvalidSignatureError("pre-signature must be 65 bytes")
        try:
            nonce = PublicKey(data[:33])
        except InvalidKeyError as exc:
            raise InvalidSignatureError("pre-signature nonce is not a point") from exc
        return cls(nonce, int.from_bytes(data[33:], "big"))


def _challenge(rx: bytes, px: bytes, msg: bytes) -> int:
    return int.from_bytes(tagged_hash("BIP0340/challenge", rx + px + msg), "big") % _N


def _lhs_matches(s: int, offset: PublicKey, target: PublicKey) -> bool:
    """s·G + offset == target (s = 0 handled: then offset must equal target)."""
    if s == 0:
        return offset == target
    try:
        return PublicKey.combine([SecretKey.from_int(s).public_key, offset]) == target
    except InvalidKeyError:  # s·G == −offset: the sum is infinity
        return False


def _rhs(rx: bytes, pubkey: XOnlyPublicKey, e: int) -> PublicKey | None:
    """lift_x(R.x) + e·P, or None at infinity."""
    lifted = PublicKey(b"\x02" + rx)
    if e == 0:
        return lifted
    try:
        return PublicKey.combine([lifted, pubkey.to_public_key().multiply(scalar_bytes(e))])
    except InvalidKeyError:
        return None


def presign(
    secret_key: SecretKey, msg: bytes, adaptor_point: PublicKey, aux_rand: bytes | None = None
) -> AdaptorSignature:
    """Pre-sign `msg` so that only T's secret turns it into a valid BIP340 signature.

    The nonce commits to T as well as key and message, so pre-signing one message
    for two different adaptor points never reuses a nonce.
    """
    aux = os.urandom(32) if aux_rand is None else aux_rand
    if len(aux) != 32:
        raise InvalidSignatureError("aux_rand must be 32 bytes")
    pub = secret_key.public_key
    d = secret_key.to_int() if pub.has_even_y else _N - secret_key.to_int()
    px = pub.data[1:]
    masked = (d ^ int.from_bytes(tagged_hash("BIP0340/aux", aux), "big")).to_bytes(32, "big")
    k = (
        int.from_bytes(
            tagged_hash("SuperScalar/adaptor/nonce", masked + px + adaptor_point.data + msg), "big"
        )
        % _N
    )
    if k == 0:  # pragma: no cover - probability ~2^-256
        raise InvalidSignatureError("nonce derivation produced zero")
    nonce = PublicKey.combine([SecretKey.from_int(k).public_key, adaptor_point])
    g = 1 if nonce.has_even_y else -1
    e = _challenge(nonce.data[1:], px, msg)
    return AdaptorSignature(nonce, (g * k + e * d) % _N)


def verify_presignature(
    pubkey: XOnlyPublicKey, msg: bytes, adaptor_point: PublicKey, presig: AdaptorSignature
) -> bool:
    """True iff adapting `presig` with T's secret gives a valid signature by `pubkey`."""
    rx = presig.nonce.data[1:]
    target = _rhs(rx, pubkey, _challenge(rx, pubkey.data, msg))
    if target is None:
        return False
    offset = adaptor_point if presig.sign == 1 else adaptor_point.negate()
    return _lhs_matches(presig.s, offset, target)


def adapt(presig: AdaptorSignature, adaptor_secret: SecretKey) -> bytes:
    """Complete the pre-signature with t: the 64-byte BIP340 signature."""
    s = (presig.s + presig.sign * adaptor_secret.to_int()) % _N
    return presig.nonce.data[1:] + s.to_bytes(32, "big")


def extract(presig: AdaptorSignature, signature: bytes, adaptor_point: PublicKey) -> SecretKey:
    """Recover t from the pre-signature and the completed signature; checks t·G == T."""
    if not isinstance(signature, bytes) or len(signature) != 64:
        raise InvalidSignatureError("signature must be 64 bytes")
    if signature[:32] != presig.nonce.data[1:]:
        raise InvalidSignatureError(
            "signature does not complete this pre-signature (nonce differs)"
        )
    s_final = int.from_bytes(signature[32:], "big")
    t = (presig.sign * (s_final - presig.s)) % _N
    if t == 0:
        raise InvalidSignatureError("signature does not reveal an adaptor secret")
    secret = SecretKey.from_int(t)
    if secret.public_key != adaptor_point:
        raise InvalidSignatureError("extracted secret does not match the adaptor point")
    return secret


def presignature_from_musig(
    raw: bytes, agg_key: XOnlyPublicKey, msg: bytes, adaptor_point: PublicKey
) -> AdaptorSignature:
    """Turn a MuSig2 adaptor session's aggregate (R.x, s) into a checked pre-signature.

    libsecp256k1 does not report the final nonce's parity, so it is recovered by
    the verification equation itself; neither parity verifying means a bad share.
    """
    rx, s = raw[:32], int.from_bytes(raw[32:], "big")
    for prefix in (b"\x02", b"\x03"):
        candidate = AdaptorSignature(PublicKey(prefix + rx), s)
        if verify_presignature(agg_key, msg, adaptor_point, candidate):
            return candidate
    raise InvalidSignatureError("aggregate pre-signature does not verify")
