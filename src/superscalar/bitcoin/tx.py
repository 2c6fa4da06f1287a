"""Bitcoin transactions as immutable values, with strict (de)serialization.

Factories build and exchange many transactions with untrusted peers, so parsing
is strict: any malformed, non-canonical or trailing input raises `TxDecodeError`
and nothing else. Hashes (`txid`, `wtxid`) are in internal byte order; only
`txid_hex` uses the reversed display order block explorers show.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

__all__ = [
    "COIN",
    "MAX_COMPACT_SIZE",
    "MAX_MONEY",
    "AmountError",
    "OutPoint",
    "Transaction",
    "TxDecodeError",
    "TxError",
    "TxIn",
    "TxOut",
    "check_amount",
    "encode_varint",
    "hash256",
    "read_varint",
]

COIN = 100_000_000
MAX_MONEY = 21_000_000 * COIN
MAX_COMPACT_SIZE = 0x02000000
"""Bitcoin Core refuses CompactSize values above this (`MAX_SIZE`) when reading."""

_U32 = 0xFFFFFFFF
_NULL_TXID = bytes(32)


class TxError(ValueError):
    """A transaction (or part of one) that is not well formed."""


class AmountError(TxError):
    """An amount outside 0..MAX_MONEY satoshis, or not an integer."""


class TxDecodeError(TxError):
    """Bytes that do not parse as exactly one transaction (or varint)."""


def hash256(data: bytes) -> bytes:
    """SHA256(SHA256(data)), the hash behind txids."""
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def check_amount(value: int, what: str = "amount") -> int:
    """Return `value` if it is an integer number of satoshis in 0..MAX_MONEY."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise AmountError(f"{what} must be an int of satoshis, not {type(value).__name__}")
    if not 0 <= value <= MAX_MONEY:
        raise AmountError(f"{what} {value} is outside 0..{MAX_MONEY} sat")
    return value


def _check_uint(value: int, bits: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TxError(f"{what} must be an int, not {type(value).__name__}")
    if not 0 <= value < (1 << bits):
        raise TxError(f"{what} {value} is outside 0..2^{bits}-1")
    return value


def _check_bytes(value: object, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray):
        raise TxError(f"{what} must be bytes, not {type(value).__name__}")
    return bytes(value)


# -- CompactSize ----------------------------------------------------------------


def encode_varint(n: int) -> bytes:
    """CompactSize encoding of a non-negative integer below 2^64."""
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < (1 << 64):
        raise TxError(f"varint value out of range: {n!r}")
    if n < 0xFD:
        return bytes((n,))
    if n <= 0xFFFF:
        return b"\xfd" + n.to_bytes(2, "little")
    if n <= _U32:
        return b"\xfe" + n.to_bytes(4, "little")
    return b"\xff" + n.to_bytes(8, "little")


def read_varint(data: bytes, offset: int = 0) -> tuple[int, int]:
    """Read a canonical CompactSize at `offset`; returns (value, next offset).

    Non-minimal encodings and truncated input raise `TxDecodeError`.
    """
    reader = _Reader(data, offset)
    value = reader.varint(limit=(1 << 64) - 1)
    return value, reader.pos


def _varbytes(data: bytes) -> bytes:
    return encode_varint(len(data)) + data


class _Reader:
    """Cursor over bytes that raises `TxDecodeError` instead of running off the end."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if n > self.remaining():
            raise TxDecodeError(
                f"truncated: need {n} bytes at offset {self.pos}, have {self.remaining()}"
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u32(self) -> int:
        value: int = struct.unpack("<I", self.take(4))[0]
        return value

    def u64(self) -> int:
        value: int = struct.unpack("<Q", self.take(8))[0]
        return value

    def varint(self, limit: int = MAX_COMPACT_SIZE) -> int:
        start = self.pos
        first = self.u8()
        if first < 0xFD:
            value, minimum = first, 0
        elif first == 0xFD:
            value, minimum = int.from_bytes(self.take(2), "little"), 0xFD
        elif first == 0xFE:
            value, minimum = int.from_bytes(self.take(4), "little"), 0x10000
        else:
            value, minimum = int.from_bytes(self.take(8), "little"), 0x100000000
        if value < minimum:
            raise TxDecodeError(f"non-canonical varint at offset {start}")
        if value > limit:
            raise TxDecodeError(f"varint {value} at offset {start} exceeds {limit}")
        return value

    def count(self, min_item_size: int, what: str) -> int:
        """A varint item count, refused early if the items cannot fit in what is left."""
        start = self.pos
        n = self.varint()
        if n * min_item_size > self.remaining():
            raise TxDecodeError(f"{what} count {n} at offset {start} exceeds the data left")
        return n

    def varbytes(self) -> bytes:
        return self.take(self.count(1, "byte"))


# -- values ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutPoint:
    """A reference to output `vout` of transaction `txid` (internal byte order)."""

    txid: bytes
    vout: int

    def __post_init__(self) -> None:
        txid = _check_bytes(self.txid, "txid")
        if len(txid) != 32:
            raise TxError(f"txid must be 32 bytes, got {len(txid)}")
        object.__setattr__(self, "txid", txid)
        _check_uint(self.vout, 32, "vout")

    @classmethod
    def from_txid_hex(cls, txid_hex: str, vout: int) -> OutPoint:
        """From a txid in display (reversed) hex, as explorers and RPCs show it."""
        try:
            raw = bytes.fromhex(txid_hex)
        except ValueError as exc:
            raise TxError("txid is not valid hex") from exc
        return cls(raw[::-1], vout)

    @classmethod
    def null(cls) -> OutPoint:
        """The null outpoint a coinbase input spends."""
        return cls(_NULL_TXID, _U32)

    @property
    def is_null(self) -> bool:
        return self.txid == _NULL_TXID and self.vout == _U32

    @property
    def txid_hex(self) -> str:
        return self.txid[::-1].hex()

    def serialize(self) -> bytes:
        return self.txid + self.vout.to_bytes(4, "little")

    def __str__(self) -> str:
        return f"{self.txid_hex}:{self.vout}"


@dataclass(frozen=True, slots=True)
class TxIn:
    """A transaction input; `witness` is its segwit stack (empty for none)."""

    prevout: OutPoint
    script_sig: bytes = b""
    sequence: int = _U32
    witness: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.prevout, OutPoint):
            raise TxError("prevout must be an OutPoint")
        object.__setattr__(self, "script_sig", _check_bytes(self.script_sig, "script_sig"))
        _check_uint(self.sequence, 32, "sequence")
        if not isinstance(self.witness, tuple | list):
            raise TxError("witness must be a tuple of bytes")
        witness = tuple(_check_bytes(item, "witness item") for item in self.witness)
        object.__setattr__(self, "witness", witness)

    def serialize(self) -> bytes:
        """The input without its witness, as it appears in the txid serialization."""
        return (
            self.prevout.serialize()
            + _varbytes(self.script_sig)
            + self.sequence.to_bytes(4, "little")
        )

    def serialize_witness(self) -> bytes:
        return encode_varint(len(self.witness)) + b"".join(_varbytes(w) for w in self.witness)


@dataclass(frozen=True, slots=True)
class TxOut:
    """A transaction output: `value` satoshis locked to `script_pubkey`."""

    value: int
    script_pubkey: bytes

    def __post_init__(self) -> None:
        check_amount(self.value, "output value")
        object.__setattr__(self, "script_pubkey", _check_bytes(self.script_pubkey, "script"))

    def serialize(self) -> bytes:
        return self.value.to_bytes(8, "little") + _varbytes(self.script_pubkey)


@dataclass(frozen=True, slots=True)
class Transaction:
    """A Bitcoin transaction. Hashes and sizes are computed once, on first use."""

    version: int
    inputs: tuple[TxIn, ...]
    outputs: tuple[TxOut, ...]
    locktime: int = 0
    _cache: dict[str, bytes] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        _check_uint(self.version, 32, "version")
        _check_uint(self.locktime, 32, "locktime")
        if not isinstance(self.inputs, tuple | list) or not isinstance(self.outputs, tuple | list):
            raise TxError("inputs and outputs must be tuples")
        inputs, outputs = tuple(self.inputs), tuple(self.outputs)
        if not all(isinstance(i, TxIn) for i in inputs):
            raise TxError("inputs must be TxIn values")
        if not all(isinstance(o, TxOut) for o in outputs):
            raise TxError("outputs must be TxOut values")
        object.__setattr__(self, "inputs", inputs)
        object.__setattr__(self, "outputs", outputs)

    # -- serialization ----------------------------------------------------------

    @property
    def has_witness(self) -> bool:
        return any(txin.witness for txin in self.inputs)

    def _legacy_bytes(self) -> bytes:
        cached = self._cache.get("legacy")
        if cached is None:
            cached = (
                self.version.to_bytes(4, "little")
                + encode_varint(len(self.inputs))
                + b"".join(txin.serialize() for txin in self.inputs)
                + encode_varint(len(self.outputs))
                + b"".join(txout.serialize() for txout in self.outputs)
                + self.locktime.to_bytes(4, "little")
            )
            self._cache["legacy"] = cached
        return cached

    def _full_bytes(self) -> bytes:
        if not self.has_witness:
            return self._legacy_bytes()
        cached = self._cache.get("full")
        if cached is None:
            cached = (
                self.version.to_bytes(4, "little")
                + b"\x00\x01"
                + encode_varint(len(self.inputs))
                + b"".join(txin.serialize() for txin in self.inputs)
                + encode_varint(len(self.outputs))
                + b"".join(txout.serialize() for txout in self.outputs)
                + b"".join(txin.serialize_witness() for txin in self.inputs)
                + self.locktime.to_bytes(4, "little")
            )
            self._cache["full"] = cached
        return cached

    def serialize(self, include_witness: bool = True) -> bytes:
        """BIP144 serialization if any input has a witness (and asked for), else legacy."""
        return self._full_bytes() if include_witness else self._legacy_bytes()

    def to_bytes(self) -> bytes:
        return self._full_bytes()

    def hex(self) -> str:
        return self._full_bytes().hex()

    @classmethod
    def from_hex(cls, text: str) -> Transaction:
        try:
            raw = bytes.fromhex(text)
        except (ValueError, TypeError) as exc:
            raise TxDecodeError("transaction is not valid hex") from exc
        return cls.from_bytes(raw)

    @classmethod
    def from_bytes(cls, data: bytes) -> Transaction:
        """Parse exactly one transaction; anything malformed raises `TxDecodeError`.

        Refused as Bitcoin Core refuses them: truncated data, trailing bytes,
        non-canonical varints, a segwit flag other than 1, a segwit
        serialization whose witnesses are all empty, amounts above MAX_MONEY.
        A legacy serialization with zero inputs is indistinguishable from a
        segwit marker and is refused too.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TxDecodeError(f"transaction must be bytes, not {type(data).__name__}")
        data = bytes(data)
        try:
            return cls._parse(_Reader(data))
        except TxDecodeError:
            raise
        except TxError as exc:  # a value the constructors refuse, e.g. an amount
            raise TxDecodeError(str(exc)) from exc

    @classmethod
    def _parse(cls, r: _Reader) -> Transaction:
        tx = cls.parse_prefix(r)
        if r.remaining():
            raise TxDecodeError(f"{r.remaining()} trailing bytes after transaction")
        return tx

    @classmethod
    def parse_prefix(cls, r: _Reader) -> Transaction:
        """Parse one transaction at the reader's cursor, leaving it just past the end."""
        version = r.u32()
        segwit = False
        if r.remaining() >= 1 and r.data[r.pos] == 0:
            r.pos += 1
            flag = r.u8()
            if flag != 1:
                raise TxDecodeError(f"unknown segwit flag {flag:#04x} (or zero inputs)")
            segwit = True
        n_in = r.count(41, "input")
        raw_inputs: list[tuple[OutPoint, bytes, int]] = []
        for _ in range(n_in):
            prevout = OutPoint(r.take(32), r.u32())
            script_sig = r.varbytes()
            raw_inputs.append((prevout, script_sig, r.u32()))
        n_out = r.count(9, "output")
        outputs: list[TxOut] = []
        for _ in range(n_out):
            value = r.u64()
            outputs.append(TxOut(value, r.varbytes()))
        witnesses: list[tuple[bytes, ...]] = [()] * n_in
        if segwit:
            if n_in == 0:
                raise TxDecodeError("segwit transaction with zero inputs")
            for i in range(n_in):
                n_items = r.count(1, "witness item")
                witnesses[i] = tuple(r.varbytes() for _ in range(n_items))
            if not any(witnesses):
                raise TxDecodeError("segwit serialization with all witnesses empty")
        locktime = r.u32()
        inputs = tuple(
            TxIn(prevout, script_sig, sequence, witness)
            for (prevout, script_sig, sequence), witness in zip(raw_inputs, witnesses, strict=True)
        )
        return cls(version, inputs, tuple(outputs), locktime)

    # -- identity and size --------------------------------------------------------

    @property
    def txid(self) -> bytes:
        """Double-SHA256 of the legacy serialization, internal byte order."""
        cached = self._cache.get("txid")
        if cached is None:
            cached = self._cache["txid"] = hash256(self._legacy_bytes())
        return cached

    @property
    def wtxid(self) -> bytes:
        """Double-SHA256 of the full serialization (equals `txid` without witnesses)."""
        cached = self._cache.get("wtxid")
        if cached is None:
            cached = self._cache["wtxid"] = hash256(self._full_bytes())
        return cached

    @property
    def txid_hex(self) -> str:
        """The txid in display order (byte-reversed), as explorers and RPCs show it."""
        return self.txid[::-1].hex()

    @property
    def wtxid_hex(self) -> str:
        return self.wtxid[::-1].hex()

    @property
    def weight(self) -> int:
        """BIP141 weight: 3 x base size + total size."""
        return 3 * len(self._legacy_bytes()) + len(self._full_bytes())

    @property
    def vsize(self) -> int:
        """Virtual size in vbytes: weight / 4, rounded up."""
        return (self.weight + 3) // 4

    # -- conveniences -------------------------------------------------------------

    def outpoint(self, vout: int) -> OutPoint:
        """The outpoint of this transaction's output `vout`."""
        if not 0 <= vout < len(self.outputs):
            raise TxError(f"transaction has no output {vout}")
        return OutPoint(self.txid, vout)

    @property
    def is_coinbase(self) -> bool:
        return len(self.inputs) == 1 and self.inputs[0].prevout.is_null

    @property
    def total_out(self) -> int:
        return sum(txout.value for txout in self.outputs)

    def with_witnesses(self, witnesses: Sequence[Iterable[bytes]]) -> Transaction:
        """A copy with input i's witness replaced by `witnesses[i]` (one per input)."""
        if len(witnesses) != len(self.inputs):
            raise TxError(f"need {len(self.inputs)} witnesses, got {len(witnesses)}")
        inputs = tuple(
            replace(txin, witness=tuple(w)) for txin, w in zip(self.inputs, witnesses, strict=True)
        )
        return replace(self, inputs=inputs)

    def with_witness(self, index: int, witness: Iterable[bytes]) -> Transaction:
        """A copy with input `index`'s witness replaced."""
        if not 0 <= index < len(self.inputs):
            raise TxError(f"transaction has no input {index}")
        inputs = list(self.inputs)
        inputs[index] = replace(inputs[index], witness=tuple(witness))
        return replace(self, inputs=tuple(inputs))

    def without_witnesses(self) -> Transaction:
        return replace(self, inputs=tuple(replace(txin, witness=()) for txin in self.inputs))
