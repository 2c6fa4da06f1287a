"""Test-only MuSig2 helpers that the product API deliberately does not offer.

BIP327's signing vectors hand out secret nonces as bytes and define a
deterministic signer; a real secret nonce never exists as bytes. These helpers
load a vector's (k1, k2, pk) into libsecp256k1's secret-nonce object so the
library itself signs — only test code may do this.
"""

from __future__ import annotations

from typing import Any

from coincurve._libsecp256k1 import ffi

from superscalar.crypto import musig
from superscalar.crypto.hashes import tagged_hash
from superscalar.crypto.keys import CURVE_ORDER, PublicKey, SecretKey

_SECNONCE_MAGIC = bytes([0x22, 0x0E, 0xDC, 0xF1])


def secnonce_from_vector(data: bytes) -> musig.SecretNonce:
    """A `SecretNonce` from BIP327's 97-byte k1 || k2 || pk encoding."""
    k1, k2, pk = data[:32], data[32:64], PublicKey(data[64:97])
    c: Any = ffi.new("secp256k1_musig_secnonce *")
    ffi.memmove(c, _SECNONCE_MAGIC + k1 + k2 + bytes(ffi.buffer(pk._c)), 132)
    public = musig.PublicNonce(_point(k1) + _point(k2)) if _valid(k1, k2) else None
    return musig.SecretNonce(c, public, pk)  # type: ignore[arg-type]


def _valid(*scalars: bytes) -> bool:
    return all(0 < int.from_bytes(s, "big") < CURVE_ORDER for s in scalars)


def _point(k: bytes) -> bytes:
    return SecretKey(k).public_key.data


def deterministic_sign(
    secret_key: SecretKey,
    aggothernonce: bytes,
    keyagg: musig.KeyAggContext,
    msg: bytes,
    rand: bytes | None,
) -> tuple[musig.PublicNonce, musig.PartialSignature]:
    """BIP327 DeterministicSign, nonce derivation in Python, signing in libsecp256k1."""
    sk = secret_key.to_bytes()
    if rand is not None:
        mask = tagged_hash("MuSig/aux", rand)
        sk = bytes(a ^ b for a, b in zip(sk, mask, strict=True))
    ks = []
    for i in range(2):
        h = tagged_hash(
            "MuSig/deterministic/nonce",
            sk + aggothernonce + keyagg.xonly.data + len(msg).to_bytes(8, "big") + msg + bytes([i]),
        )
        ks.append((int.from_bytes(h, "big") % CURVE_ORDER).to_bytes(32, "big"))
    secnonce = secnonce_from_vector(ks[0] + ks[1] + secret_key.public_key.data)
    pubnonce = secnonce.public_nonce
    aggnonce = musig.aggregate_nonces([pubnonce, musig.AggregateNonce(aggothernonce).data])
    session = musig.SigningSession(keyagg, aggnonce, msg)
    return pubnonce, session.sign(secnonce, secret_key)
