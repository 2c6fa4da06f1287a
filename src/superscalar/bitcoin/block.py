"""Blocks: headers, merkle roots, the BIP141 witness commitment and a BIP34 coinbase.

The embedded regtest node assembles blocks from these values and hands the
bytes to libbitcoinkernel; nothing here decides validity, the kernel does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from superscalar.bitcoin.script import Op, build_script
from superscalar.bitcoin.tx import (
    OutPoint,
    Transaction,
    TxDecodeError,
    TxIn,
    TxOut,
    _Reader,
    encode_varint,
    hash256,
)

__all__ = [
    "REGTEST_BITS",
    "WITNESS_COMMITMENT_HEADER",
    "Block",
    "BlockHeader",
    "bits_to_target",
    "coinbase_transaction",
    "merkle_root",
    "witness_commitment_script",
]

REGTEST_BITS = 0x207FFFFF
"""Regtest's constant difficulty (powLimit): about half of all hashes qualify."""

WITNESS_COMMITMENT_HEADER = bytes.fromhex("aa21a9ed")
_WITNESS_RESERVED = bytes(32)


def bits_to_target(bits: int) -> int:
    """Expand a compact `nBits` into the 256-bit target a block hash must not exceed."""
    exponent, mantissa = bits >> 24, bits & 0x007FFFFF
    if exponent <= 3:
        return mantissa >> (8 * (3 - exponent))
    return mantissa << (8 * (exponent - 3))


def merkle_root(hashes: Sequence[bytes]) -> bytes:
    """Bitcoin's merkle root (odd levels duplicate their last hash)."""
    if not hashes:
        raise ValueError("merkle root of no hashes")
    level = list(hashes)
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [hash256(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def witness_commitment_script(transactions: Sequence[Transaction]) -> bytes:
    """The coinbase OP_RETURN committing to the wtxids of `transactions` (coinbase excluded).

    BIP141: the coinbase's own wtxid counts as 32 zero bytes and its witness is
    one 32-byte reserved value, here all zeros.
    """
    root = merkle_root([bytes(32), *(tx.wtxid for tx in transactions)])
    commitment = hash256(root + _WITNESS_RESERVED)
    return build_script(Op.OP_RETURN, WITNESS_COMMITMENT_HEADER + commitment)


def coinbase_transaction(
    height: int,
    outputs: Sequence[TxOut],
    transactions: Sequence[Transaction] = (),
    extra_nonce: int = 0,
) -> Transaction:
    """A coinbase for block `height` paying `outputs`, with the witness commitment.

    The scriptSig starts with the BIP34 height push and always carries an
    extra-nonce push, so it meets the 2..100 byte rule even at heights 1..16.
    """
    script_sig = build_script(height, extra_nonce.to_bytes(4, "little"))
    commitment = TxOut(0, witness_commitment_script(transactions))
    return Transaction(
        version=2,
        inputs=(TxIn(OutPoint.null(), script_sig, 0xFFFFFFFF, (_WITNESS_RESERVED,)),),
        outputs=(*outputs, commitment),
        locktime=0,
    )


@dataclass(frozen=True, slots=True)
class BlockHeader:
    """An 80-byte block header; hashes are in internal byte order."""

    version: int
    prev_hash: bytes
    merkle_root: bytes
    time: int
    bits: int
    nonce: int

    def serialize(self) -> bytes:
        return (
            self.version.to_bytes(4, "little")
            + self.prev_hash
            + self.merkle_root
            + self.time.to_bytes(4, "little")
            + self.bits.to_bytes(4, "little")
            + self.nonce.to_bytes(4, "little")
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> BlockHeader:
        if len(data) != 80:
            raise TxDecodeError(f"block header must be 80 bytes, got {len(data)}")
        return cls(
            int.from_bytes(data[0:4], "little"),
            data[4:36],
            data[36:68],
            int.from_bytes(data[68:72], "little"),
            int.from_bytes(data[72:76], "little"),
            int.from_bytes(data[76:80], "little"),
        )

    @property
    def hash(self) -> bytes:
        return hash256(self.serialize())

    @property
    def hash_hex(self) -> str:
        """The block hash in display (reversed) order, as RPCs show it."""
        return self.hash[::-1].hex()

    def meets_target(self) -> bool:
        return int.from_bytes(self.hash, "little") <= bits_to_target(self.bits)


@dataclass(frozen=True, slots=True)
class Block:
    """A block: header plus transactions (the first is the coinbase)."""

    header: BlockHeader
    transactions: tuple[Transaction, ...]
    _cache: dict[str, bytes] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def serialize(self) -> bytes:
        cached = self._cache.get("raw")
        if cached is None:
            cached = (
                self.header.serialize()
                + encode_varint(len(self.transactions))
                + b"".join(tx.to_bytes() for tx in self.transactions)
            )
            self._cache["raw"] = cached
        return cached

    @property
    def hash(self) -> bytes:
        return self.header.hash

    @property
    def hash_hex(self) -> str:
        return self.header.hash_hex

    @property
    def weight(self) -> int:
        base = 80 + len(encode_varint(len(self.transactions)))
        return 4 * base + sum(tx.weight for tx in self.transactions)

    @classmethod
    def from_bytes(cls, data: bytes) -> Block:
        """Parse one block; malformed or trailing data raises `TxDecodeError`."""
        header = BlockHeader.from_bytes(bytes(data[:80]))
        reader = _Reader(bytes(data), 80)
        # 51 bytes is the smallest transaction `Transaction` parses (one input, no
        # outputs); a larger bound would misreport well-formed (if invalid) blocks.
        count = reader.count(51, "transaction")
        txs: list[Transaction] = []
        try:
            for _ in range(count):
                txs.append(Transaction.parse_prefix(reader))
        except TxDecodeError:
            raise
        except ValueError as exc:
            raise TxDecodeError(str(exc)) from exc
        if reader.remaining():
            raise TxDecodeError(f"{reader.remaining()} trailing bytes after block")
        return cls(header, tuple(txs))

    @staticmethod
    def assemble(
        prev_hash: bytes, time: int, transactions: Sequence[Transaction], bits: int = REGTEST_BITS
    ) -> Block:
        """Build and grind a block over `transactions` (coinbase first) until it meets `bits`."""
        root = merkle_root([tx.txid for tx in transactions])
        nonce = 0
        while True:
            header = BlockHeader(0x20000000, prev_hash, root, time, bits, nonce)
            if header.meets_target():
                return Block(header, tuple(transactions))
            nonce += 1
            if nonce > 0xFFFFFFFF:
                raise ValueError("nonce space exhausted; change the time or coinbase")
