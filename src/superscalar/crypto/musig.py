"""MuSig2 (BIP327) as a small typed API over libsecp256k1's `secp256k1_musig_*`.

Secret nonces are single-use by construction: a `SecretNonce` cannot be copied,
pickled or printed, is consumed by `SigningSession.sign`, and raises
`NonceReuseError` if used again. Every participant's contribution (key, nonce,
partial signature) is parsed into a typed value so that bad input is caught at
the boundary and attributed to the signer who sent it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from ._secp import CTX, ParsedValue, check, ffi, lib, raise_last
from .adaptor import AdaptorSignature, presignature_from_musig
from .errors import (
    CryptoError,
    InvalidContributionError,
    InvalidKeyError,
    InvalidNonceError,
    InvalidPartialSignatureError,
    InvalidSignatureError,
    NonceReuseError,
)
from .hashes import tagged_hash
from .keys import PublicKey, SecretKey, XOnlyPublicKey

__all__ = [
    "AggregateNonce",
    "KeyAggContext",
    "PartialSignature",
    "PublicNonce",
    "SecretNonce",
    "SigningSession",
    "aggregate_keys",
    "aggregate_nonces",
    "generate_nonce",
    "sort_keys",
]


def _pubkey(key: PublicKey | bytes, signer: int) -> PublicKey:
    if isinstance(key, PublicKey):
        return key
    try:
        return PublicKey(key)
    except InvalidKeyError as exc:
        raise InvalidContributionError(signer, "pubkey") from exc


def sort_keys(pubkeys: Sequence[PublicKey]) -> list[PublicKey]:
    """BIP327 KeySort: lexicographic order of the compressed encodings."""
    return sorted(pubkeys, key=lambda k: k.data)


@dataclass(frozen=True)
class KeyAggContext:
    """The aggregate of an ordered list of keys, with any tweaks applied.

    Immutable: `tweak` returns a new context, so one base aggregation can serve
    many taproot outputs.
    """

    pubkeys: tuple[PublicKey, ...]
    tweaks: tuple[tuple[bytes, bool], ...]
    _cache: Any = field(repr=False, compare=False, hash=False)
    aggregate_pubkey: PublicKey = field(compare=False)
    """The tweaked aggregate point, parity included (BIP327 `GetPubkey` is its x)."""

    @property
    def xonly(self) -> XOnlyPublicKey:
        return self.aggregate_pubkey.xonly()

    @property
    def handle(self) -> Any:
        """The `secp256k1_musig_keyagg_cache *` behind this context, for libsecp256k1 calls."""
        return self._cache

    def tweak(self, tweak: bytes, *, xonly: bool) -> KeyAggContext:
        """Apply a plain (`xonly=False`) or x-only (BIP341-style) tweak."""
        if not isinstance(tweak, bytes) or len(tweak) != 32:
            raise InvalidKeyError("tweak must be 32 bytes")
        cache = ffi.new("secp256k1_musig_keyagg_cache *", self._cache[0])
        out = ffi.new("secp256k1_pubkey *")
        fn = (
            lib.secp256k1_musig_pubkey_xonly_tweak_add
            if xonly
            else lib.secp256k1_musig_pubkey_ec_tweak_add
        )
        check(
            fn(CTX, out, cache, tweak), InvalidKeyError, "tweak out of range or result is infinity"
        )
        return KeyAggContext(
            self.pubkeys, (*self.tweaks, (tweak, xonly)), cache, PublicKey.from_handle(out)
        )

    def taproot_tweak(self, merkle_root: bytes | None = None) -> KeyAggContext:
        """BIP341 output-key tweak: t = hash_TapTweak(P || merkle_root)."""
        data = self.xonly.data + (merkle_root or b"")
        return self.tweak(tagged_hash("TapTweak", data), xonly=True)

    def index_of(self, pubkey: PublicKey) -> int:
        """Position of `pubkey` (first occurrence): O(1), as it runs on every signature."""
        positions: dict[PublicKey, int] | None = self.__dict__.get("_positions")
        if positions is None:
            positions = {}
            for i, key in enumerate(self.pubkeys):
                positions.setdefault(key, i)
            object.__setattr__(self, "_positions", positions)
        try:
            return positions[pubkey]
        except KeyError:
            raise CryptoError("the signer's pubkey is not in the aggregated key list") from None


def aggregate_keys(pubkeys: Sequence[PublicKey | bytes]) -> KeyAggContext:
    """BIP327 KeyAgg of the keys in the order given (sort first with `sort_keys` if wanted)."""
    if not pubkeys:
        raise InvalidKeyError("cannot aggregate zero keys")
    keys = tuple(_pubkey(k, i) for i, k in enumerate(pubkeys))
    cache = ffi.new("secp256k1_musig_keyagg_cache *")
    ptrs = ffi.new("secp256k1_pubkey *[]", [k.handle for k in keys])
    check(
        lib.secp256k1_musig_pubkey_agg(CTX, ffi.NULL, cache, ptrs, len(keys)),
        InvalidKeyError,
        "key aggregation failed",
    )
    out = ffi.new("secp256k1_pubkey *")
    lib.secp256k1_musig_pubkey_get(CTX, out, cache)
    return KeyAggContext(keys, (), cache, PublicKey.from_handle(out))


@dataclass(frozen=True)
class PublicNonce(ParsedValue):
    """A signer's public nonce: two compressed points, 66 bytes."""

    data: bytes
    _c: Any = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.data, bytes) or len(self.data) != 66:
            raise InvalidNonceError("public nonce must be 66 bytes")
        c = ffi.new("secp256k1_musig_pubnonce *")
        check(
            lib.secp256k1_musig_pubnonce_parse(CTX, c, self.data),
            InvalidNonceError,
            "invalid public nonce",
        )
        object.__setattr__(self, "_c", c)

    @property
    def handle(self) -> Any:
        """The `secp256k1_musig_pubnonce *` behind this nonce, for libsecp256k1 calls."""
        return self._c

    @classmethod
    def from_hex(cls, text: str) -> PublicNonce:
        return cls(_unhex(text, InvalidNonceError))

    def hex(self) -> str:
        return self.data.hex()


@dataclass(frozen=True)
class AggregateNonce(ParsedValue):
    """The sum of all signers' nonces (66 bytes; either half may be infinity)."""

    data: bytes
    _c: Any = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.data, bytes) or len(self.data) != 66:
            raise InvalidNonceError("aggregate nonce must be 66 bytes")
        c = ffi.new("secp256k1_musig_aggnonce *")
        check(
            lib.secp256k1_musig_aggnonce_parse(CTX, c, self.data),
            InvalidNonceError,
            "invalid aggregate nonce",
        )
        object.__setattr__(self, "_c", c)

    @property
    def handle(self) -> Any:
        """The `secp256k1_musig_aggnonce *` behind this nonce, for libsecp256k1 calls."""
        return self._c

    @classmethod
    def from_hex(cls, text: str) -> AggregateNonce:
        return cls(_unhex(text, InvalidNonceError))

    def hex(self) -> str:
        return self.data.hex()

    def add_to_first(self, point: PublicKey) -> AggregateNonce:
        """(R1 + T, R2): the nonce offset that turns a session into an adaptor session."""
        first = self.data[:33]
        at_infinity = first == bytes(33)
        moved = point if at_infinity else PublicKey.combine([PublicKey(first), point])
        return AggregateNonce(moved.data + self.data[33:])


def _unhex(text: str, error: type[CryptoError]) -> bytes:
    try:
        return bytes.fromhex(text)
    except (ValueError, TypeError) as exc:
        raise error("not valid hex") from exc


class SecretNonce:
    """A signer's secret nonce: use once, never store, never send.

    The wrapped libsecp256k1 object is zeroed by signing; this class also
    refuses a second use itself, so the C library's abort path is never reached.
    """

    __slots__ = ("_c", "pubkey", "public_nonce")

    def __init__(self, c: Any, public_nonce: PublicNonce, pubkey: PublicKey) -> None:
        self._c: Any = c
        self.public_nonce = public_nonce
        self.pubkey = pubkey

    @property
    def used(self) -> bool:
        return self._c is None

    def take_handle(self) -> Any:
        """Hand the `secp256k1_musig_secnonce *` over for one signing call; later calls raise."""
        c = self._c
        if c is None:
            raise NonceReuseError("this secret nonce was already used to sign")
        self._c = None
        return c

    def __repr__(self) -> str:
        state = "used" if self._c is None else "unused"
        return f"SecretNonce(<{state}, public {self.public_nonce.data.hex()[:16]}…>)"

    def _refuse(self, *_: object) -> NoReturn:
        raise TypeError("a secret nonce cannot be copied or serialized")

    __copy__ = __deepcopy__ = __reduce__ = __reduce_ex__ = __getstate__ = _refuse


def _nonce_gen(
    rand: bytes,
    pubkey: PublicKey,
    secret_key: SecretKey | None,
    keyagg: KeyAggContext | None,
    msg: bytes | None,
    extra: bytes | None,
) -> tuple[SecretNonce, PublicNonce]:
    for name, value in (("msg", msg), ("extra", extra)):
        if value is not None and len(value) != 32:
            raise CryptoError(f"nonce {name} must be 32 bytes")
    secnonce = ffi.new("secp256k1_musig_secnonce *")
    pubnonce = ffi.new("secp256k1_musig_pubnonce *")
    secrand = ffi.new("unsigned char[32]", rand)
    check(
        lib.secp256k1_musig_nonce_gen(
            CTX,
            secnonce,
            pubnonce,
            secrand,
            secret_key.to_bytes() if secret_key is not None else ffi.NULL,
            pubkey.handle,
            msg if msg is not None else ffi.NULL,
            keyagg.handle if keyagg is not None else ffi.NULL,
            extra if extra is not None else ffi.NULL,
        ),
        CryptoError,
        "nonce generation failed",
    )
    out = ffi.new("unsigned char[66]")
    lib.secp256k1_musig_pubnonce_serialize(CTX, out, pubnonce)
    public = PublicNonce(bytes(out))
    return SecretNonce(secnonce, public, pubkey), public


def generate_nonce(
    pubkey: PublicKey,
    *,
    secret_key: SecretKey | None = None,
    keyagg: KeyAggContext | None = None,
    msg: bytes | None = None,
    extra: bytes | None = None,
) -> tuple[SecretNonce, PublicNonce]:
    """BIP327 NonceGen with fresh randomness; the optional inputs only add defence in depth."""
    return _nonce_gen(os.urandom(32), pubkey, secret_key, keyagg, msg, extra)


def generate_nonce_counter(
    secret_key: SecretKey, counter: int, *, extra: bytes | None = None
) -> tuple[SecretNonce, PublicNonce]:
    """Deterministic nonce from (key, counter, extra) — libsecp256k1's `nonce_gen_counter`.

    For a holder that must re-create its nonce after a restart without storing
    a secret nonce. Safe only if `counter` never signs two different messages
    under this key: the caller owns that invariant.
    """
    if not 0 <= counter < (1 << 64):
        raise CryptoError("nonce counter must fit in 64 bits")
    if extra is not None and len(extra) != 32:
        raise CryptoError("extra input must be 32 bytes")
    secnonce = ffi.new("secp256k1_musig_secnonce *")
    pubnonce = ffi.new("secp256k1_musig_pubnonce *")
    check(
        lib.secp256k1_musig_nonce_gen_counter(
            CTX,
            secnonce,
            pubnonce,
            counter,
            secret_key.handle,
            ffi.NULL,
            ffi.NULL,
            ffi.NULL if extra is None else extra,
        ),
        CryptoError,
        "counter nonce generation failed",
    )
    out = ffi.new("unsigned char[66]")
    lib.secp256k1_musig_pubnonce_serialize(CTX, out, pubnonce)
    public = PublicNonce(bytes(out))
    return SecretNonce(secnonce, public, secret_key.public_key), public


def aggregate_nonces(nonces: Sequence[PublicNonce | bytes]) -> AggregateNonce:
    """BIP327 NonceAgg; a malformed nonce is blamed on the signer who sent it."""
    if not nonces:
        raise InvalidNonceError("cannot aggregate zero nonces")
    parsed = []
    for i, nonce in enumerate(nonces):
        try:
            parsed.append(nonce if isinstance(nonce, PublicNonce) else PublicNonce(nonce))
        except InvalidNonceError as exc:
            raise InvalidContributionError(i, "pubnonce") from exc
    agg = ffi.new("secp256k1_musig_aggnonce *")
    ptrs = ffi.new("secp256k1_musig_pubnonce *[]", [n.handle for n in parsed])
    check(
        lib.secp256k1_musig_nonce_agg(CTX, agg, ptrs, len(parsed)),
        InvalidNonceError,
        "nonce aggregation failed",
    )
    out = ffi.new("unsigned char[66]")
    lib.secp256k1_musig_aggnonce_serialize(CTX, out, agg)
    return AggregateNonce(bytes(out))


@dataclass(frozen=True)
class PartialSignature(ParsedValue):
    """One signer's share of the final signature (a scalar, 32 bytes)."""

    data: bytes
    _c: Any = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.data, bytes) or len(self.data) != 32:
            raise InvalidSignatureError("partial signature must be 32 bytes")
        c = ffi.new("secp256k1_musig_partial_sig *")
        check(
            lib.secp256k1_musig_partial_sig_parse(CTX, c, self.data),
            InvalidSignatureError,
            "partial signature out of range",
        )
        object.__setattr__(self, "_c", c)

    @property
    def handle(self) -> Any:
        """The `secp256k1_musig_partial_sig *` behind this share, for libsecp256k1 calls."""
        return self._c

    @classmethod
    def from_handle(cls, c: Any) -> PartialSignature:
        """Wrap a `secp256k1_musig_partial_sig *` that libsecp256k1 has just filled in."""
        out = ffi.new("unsigned char[32]")
        lib.secp256k1_musig_partial_sig_serialize(CTX, out, c)
        sig = object.__new__(cls)
        object.__setattr__(sig, "data", bytes(out))
        object.__setattr__(sig, "_c", c)
        return sig

    @classmethod
    def from_hex(cls, text: str) -> PartialSignature:
        return cls(_unhex(text, InvalidSignatureError))

    def hex(self) -> str:
        return self.data.hex()


@dataclass(frozen=True)
class SigningSession:
    """Everything fixed for one signature: keys (with tweaks), aggregate nonce, message.

    With `adaptor` set, the session's nonce is offset by the adaptor point T and
    the aggregate is a pre-signature (see `superscalar.crypto.adaptor`), valid
    only once adapted with T's secret.
    """

    keyagg: KeyAggContext
    aggnonce: AggregateNonce
    msg: bytes
    adaptor: PublicKey | None = None
    _c: Any = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.msg, bytes) or len(self.msg) != 32:
            raise CryptoError("MuSig2 message must be 32 bytes")
        aggnonce = (
            self.aggnonce if self.adaptor is None else self.aggnonce.add_to_first(self.adaptor)
        )
        c = ffi.new("secp256k1_musig_session *")
        check(
            lib.secp256k1_musig_nonce_process(
                CTX, c, aggnonce.handle, self.msg, self.keyagg.handle
            ),
            CryptoError,
            "nonce processing failed",
        )
        object.__setattr__(self, "_c", c)

    @property
    def handle(self) -> Any:
        """The `secp256k1_musig_session *` behind this session, for libsecp256k1 calls."""
        return self._c

    def sign(self, secnonce: SecretNonce, secret_key: SecretKey) -> PartialSignature:
        """Consume `secnonce` and sign. The key must be one of the aggregated keys."""
        if secnonce.pubkey != secret_key.public_key:
            raise CryptoError("secret nonce was generated for a different key")
        self.keyagg.index_of(secret_key.public_key)
        c_nonce = secnonce.take_handle()
        out = ffi.new("secp256k1_musig_partial_sig *")
        if (
            lib.secp256k1_musig_partial_sign(
                CTX, out, c_nonce, secret_key.handle, self.keyagg.handle, self._c
            )
            != 1
        ):
            raise_last(CryptoError, "partial signing failed")
        return PartialSignature.from_handle(out)

    def verify(self, psig: PartialSignature, pubnonce: PublicNonce, pubkey: PublicKey) -> bool:
        """BIP327 PartialSigVerify of one signer's share."""
        return bool(
            lib.secp256k1_musig_partial_sig_verify(
                CTX, psig.handle, pubnonce.handle, pubkey.handle, self.keyagg.handle, self._c
            )
        )

    def _aggregate(self, psigs: Sequence[PartialSignature]) -> bytes:
        if not psigs:
            raise InvalidSignatureError("no partial signatures to aggregate")
        out = ffi.new("unsigned char[64]")
        ptrs = ffi.new("secp256k1_musig_partial_sig *[]", [p.handle for p in psigs])
        check(
            lib.secp256k1_musig_partial_sig_agg(CTX, out, self._c, ptrs, len(psigs)),
            InvalidSignatureError,
            "aggregation failed",
        )
        return bytes(out)

    def aggregate(self, psigs: Sequence[PartialSignature]) -> bytes:
        """BIP327 PartialSigAgg: the BIP340 signature, unchecked (see `aggregate_verified`)."""
        if self.adaptor is not None:
            raise CryptoError("adaptor session: use aggregate_presignature")
        return self._aggregate(psigs)

    def check_all(
        self, psigs: Sequence[PartialSignature], pubnonces: Sequence[PublicNonce]
    ) -> None:
        """Verify every share against its signer (keyagg order); blame the first bad one."""
        if not len(psigs) == len(pubnonces) == len(self.keyagg.pubkeys):
            raise CryptoError("need one partial signature and one nonce per signer")
        for i, (psig, nonce, key) in enumerate(
            zip(psigs, pubnonces, self.keyagg.pubkeys, strict=True)
        ):
            if not self.verify(psig, nonce, key):
                raise InvalidPartialSignatureError(i)

    def aggregate_verified(
        self, psigs: Sequence[PartialSignature], pubnonces: Sequence[PublicNonce]
    ) -> bytes:
        """Verify each share, then aggregate: a bad share raises naming its signer."""
        self.check_all(psigs, pubnonces)
        return self.aggregate(psigs)

    def aggregate_presignature(self, psigs: Sequence[PartialSignature]) -> AdaptorSignature:
        """Aggregate an adaptor session's shares into an `AdaptorSignature`."""
        if self.adaptor is None:
            raise CryptoError("not an adaptor session")
        raw = self._aggregate(psigs)
        return presignature_from_musig(raw, self.keyagg.xonly, self.msg, self.adaptor)
