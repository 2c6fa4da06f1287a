"""BIP340 Schnorr signatures through libsecp256k1."""

from __future__ import annotations

import os
from typing import Any

from ._secp import CTX, ffi, lib
from .errors import InvalidSignatureError
from .keys import SecretKey, XOnlyPublicKey

__all__ = ["sign", "verify", "verify_or_raise"]


def sign(secret_key: SecretKey, msg: bytes, aux_rand: bytes | None = None) -> bytes:
    """Sign a message (any length, normally a 32-byte sighash); 64-byte signature.

    `aux_rand` defaults to fresh randomness, as BIP340 recommends; pass it only to
    reproduce test vectors.
    """
    if aux_rand is None:
        aux_rand = os.urandom(32)
    elif len(aux_rand) != 32:
        raise InvalidSignatureError("aux_rand must be 32 bytes")
    sig = ffi.new("unsigned char[64]")
    keypair: Any = secret_key.handle
    if len(msg) == 32:
        ok = lib.secp256k1_schnorrsig_sign32(CTX, sig, msg, keypair, aux_rand)
    else:
        extra = ffi.new("secp256k1_schnorrsig_extraparams *")
        extra.magic = (0xDA, 0x6F, 0xB3, 0x8C)
        extra.noncefp = ffi.NULL
        aux = ffi.new("unsigned char[32]", aux_rand)
        extra.ndata = aux
        ok = lib.secp256k1_schnorrsig_sign_custom(CTX, sig, msg, len(msg), keypair, extra)
    if ok != 1:  # pragma: no cover - only on a broken library
        raise InvalidSignatureError("schnorr signing failed")
    return bytes(sig)


def verify(pubkey: XOnlyPublicKey, msg: bytes, sig: bytes) -> bool:
    """True iff `sig` is a valid BIP340 signature of `msg` by `pubkey`."""
    if not isinstance(sig, bytes) or len(sig) != 64 or not isinstance(msg, bytes):
        return False
    return bool(lib.secp256k1_schnorrsig_verify(CTX, sig, msg, len(msg), pubkey.handle))


def verify_or_raise(pubkey: XOnlyPublicKey, msg: bytes, sig: bytes) -> None:
    if not verify(pubkey, msg, sig):
        raise InvalidSignatureError("schnorr signature does not verify")
