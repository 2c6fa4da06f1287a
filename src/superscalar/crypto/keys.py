"""Secret, public and x-only key types over libsecp256k1.

Values are immutable and hashable, round-trip through hex, and carry their
parsed libsecp256k1 form so hot paths never re-parse. A secret key never
prints itself: repr, str and logging show only its public key.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass, field
from typing import Any

from ._secp import CTX, ParsedValue, check, ffi, lib
from .errors import InvalidKeyError

__all__ = ["CURVE_ORDER", "PublicKey", "SecretKey", "XOnlyPublicKey", "scalar_bytes"]

CURVE_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_COMPRESSED = 0x102  # SECP256K1_EC_COMPRESSED


def scalar_bytes(value: int) -> bytes:
    """A scalar reduced mod n as 32 big-endian bytes."""
    return (value % CURVE_ORDER).to_bytes(32, "big")


def _expect_bytes(data: object, length: int, what: str) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidKeyError(f"{what} must be bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) != length:
        raise InvalidKeyError(f"{what} must be {length} bytes, got {len(data)}")
    return data


def _from_hex(text: str, what: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except (ValueError, TypeError) as exc:
        raise InvalidKeyError(f"{what} is not valid hex") from exc


@dataclass(frozen=True)
class PublicKey(ParsedValue):
    """A point on secp256k1, stored compressed (33 bytes)."""

    data: bytes
    _c: Any = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        data = _expect_bytes(self.data, 33, "public key")
        c = ffi.new("secp256k1_pubkey *")
        check(
            lib.secp256k1_ec_pubkey_parse(CTX, c, data, 33), InvalidKeyError, "invalid public key"
        )
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "_c", c)

    @property
    def handle(self) -> Any:
        """The `secp256k1_pubkey *` behind this key, for libsecp256k1 calls (crypto/, bench/)."""
        return self._c

    @classmethod
    def from_handle(cls, c: Any) -> PublicKey:
        """Wrap a `secp256k1_pubkey *` that libsecp256k1 has just filled in."""
        out = ffi.new("unsigned char[33]")
        size = ffi.new("size_t *", 33)
        lib.secp256k1_ec_pubkey_serialize(CTX, out, size, c, _COMPRESSED)
        key = object.__new__(cls)
        object.__setattr__(key, "data", bytes(out))
        object.__setattr__(key, "_c", c)
        return key

    @classmethod
    def from_hex(cls, text: str) -> PublicKey:
        return cls(_from_hex(text, "public key"))

    def hex(self) -> str:
        return self.data.hex()

    def __repr__(self) -> str:
        return f"PublicKey({self.data.hex()})"

    @property
    def has_even_y(self) -> bool:
        return self.data[0] == 2

    def xonly(self) -> XOnlyPublicKey:
        return XOnlyPublicKey(self.data[1:])

    def negate(self) -> PublicKey:
        c = ffi.new("secp256k1_pubkey *", self._c[0])
        lib.secp256k1_ec_pubkey_negate(CTX, c)
        return PublicKey.from_handle(c)

    def add_scalar(self, tweak: bytes) -> PublicKey:
        """P + t·G."""
        c = ffi.new("secp256k1_pubkey *", self._c[0])
        check(
            lib.secp256k1_ec_pubkey_tweak_add(CTX, c, _expect_bytes(tweak, 32, "tweak")),
            InvalidKeyError,
            "tweak out of range or result is infinity",
        )
        return PublicKey.from_handle(c)

    def multiply(self, scalar: bytes) -> PublicKey:
        """s·P."""
        c = ffi.new("secp256k1_pubkey *", self._c[0])
        check(
            lib.secp256k1_ec_pubkey_tweak_mul(CTX, c, _expect_bytes(scalar, 32, "scalar")),
            InvalidKeyError,
            "scalar out of range",
        )
        return PublicKey.from_handle(c)

    @staticmethod
    def combine(keys: list[PublicKey] | tuple[PublicKey, ...]) -> PublicKey:
        """The sum of the points; raises if it is the point at infinity."""
        if not keys:
            raise InvalidKeyError("cannot combine zero public keys")
        c = ffi.new("secp256k1_pubkey *")
        ptrs = ffi.new("secp256k1_pubkey *[]", [k.handle for k in keys])
        check(
            lib.secp256k1_ec_pubkey_combine(CTX, c, ptrs, len(keys)),
            InvalidKeyError,
            "sum of public keys is the point at infinity",
        )
        return PublicKey.from_handle(c)


@dataclass(frozen=True)
class XOnlyPublicKey(ParsedValue):
    """A BIP340 x-only public key (32 bytes; the point with even y)."""

    data: bytes
    _c: Any = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        data = _expect_bytes(self.data, 32, "x-only public key")
        c = ffi.new("secp256k1_xonly_pubkey *")
        check(lib.secp256k1_xonly_pubkey_parse(CTX, c, data), InvalidKeyError, "invalid x-only key")
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "_c", c)

    @property
    def handle(self) -> Any:
        """The `secp256k1_xonly_pubkey *` behind this key, for libsecp256k1 calls."""
        return self._c

    @classmethod
    def from_hex(cls, text: str) -> XOnlyPublicKey:
        return cls(_from_hex(text, "x-only public key"))

    def hex(self) -> str:
        return self.data.hex()

    def __repr__(self) -> str:
        return f"XOnlyPublicKey({self.data.hex()})"

    def to_public_key(self) -> PublicKey:
        """The even-y point with this x coordinate."""
        return PublicKey(b"\x02" + self.data)

    def tweak_add(self, tweak: bytes) -> tuple[XOnlyPublicKey, bool]:
        """`lift_x(P) + t·G` as (x-only key, y is odd) — the taproot output-key tweak."""
        out = ffi.new("secp256k1_pubkey *")
        check(
            lib.secp256k1_xonly_pubkey_tweak_add(
                CTX, out, self._c, _expect_bytes(tweak, 32, "tweak")
            ),
            InvalidKeyError,
            "tweak out of range or result is infinity",
        )
        full = PublicKey.from_handle(out)
        return full.xonly(), not full.has_even_y


class SecretKey:
    """A secp256k1 secret key. Immutable; never shows its bytes unless asked."""

    __slots__ = ("_data", "_keypair", "_public")

    _data: bytes
    _keypair: Any
    _public: PublicKey

    def __init__(self, data: bytes) -> None:
        data = _expect_bytes(data, 32, "secret key")
        keypair = ffi.new("secp256k1_keypair *")
        check(
            lib.secp256k1_keypair_create(CTX, keypair, data), InvalidKeyError, "invalid secret key"
        )
        pub = ffi.new("secp256k1_pubkey *")
        lib.secp256k1_keypair_pub(CTX, pub, keypair)
        object.__setattr__(self, "_data", data)
        object.__setattr__(self, "_keypair", keypair)
        object.__setattr__(self, "_public", PublicKey.from_handle(pub))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("SecretKey is immutable")

    @property
    def handle(self) -> Any:
        """The `secp256k1_keypair *` behind this key, for libsecp256k1 signing calls."""
        return self._keypair

    @classmethod
    def generate(cls) -> SecretKey:
        while True:
            try:
                return cls(os.urandom(32))
            except InvalidKeyError:  # pragma: no cover - probability ~2^-128
                continue

    @classmethod
    def from_hex(cls, text: str) -> SecretKey:
        return cls(_from_hex(text, "secret key"))

    @classmethod
    def from_int(cls, value: int) -> SecretKey:
        if not 0 < value < CURVE_ORDER:
            raise InvalidKeyError("secret key scalar out of range")
        return cls(value.to_bytes(32, "big"))

    def to_bytes(self) -> bytes:
        return self._data

    def hex(self) -> str:
        return self._data.hex()

    def to_int(self) -> int:
        return int.from_bytes(self._data, "big")

    @property
    def public_key(self) -> PublicKey:
        return self._public

    @property
    def xonly_public_key(self) -> XOnlyPublicKey:
        return self._public.xonly()

    def __repr__(self) -> str:
        return f"SecretKey(<secret for {self._public.hex()}>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretKey):
            return NotImplemented
        return hmac.compare_digest(self._data, other._data)

    def __hash__(self) -> int:
        return hash((SecretKey, self._public.data))

    def __reduce__(self) -> Any:
        raise TypeError("SecretKey cannot be pickled; store it with the keystore")
