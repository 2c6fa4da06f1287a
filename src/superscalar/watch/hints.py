"""Encrypted breach hints (BOLT-13 style): the tower learns nothing until the breach.

A client that revokes a commitment hands its tower a *hint*: `hint_id` = the
first 16 bytes of the revoked commitment's txid, and a *blob* = the response
(the penalty ladder) encrypted with ChaCha20-Poly1305 under the full 32-byte
txid. The tower indexes hints by id and, for every transaction in every block,
looks up `txid[:16]`: only when the revoked commitment itself is on chain does
it know the key, and only then can it read what to broadcast. The blob cannot
be decrypted from the id (16 of the 32 key bytes are missing), and the tower
cannot steal: the penalty pays the client's own script, already signed.

Each key is used for exactly one message (one txid, one blob), so the nonce
is fixed at zero, as in BOLT-13.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from ..bitcoin.tx import Transaction, TxError
from .core import EntryKind, WatchEntry, WatchError

__all__ = [
    "BLOB_VERSION",
    "MAX_BLOB",
    "Hint",
    "HintError",
    "decode_entry",
    "decrypt_hint",
    "encode_entry",
    "encrypt_hint",
    "hint_id",
]

BLOB_VERSION = 1
HINT_ID_LEN = 16
MAX_RESPONSES = 16
MAX_TX_BYTES = 400_000
MAX_BLOB = 64_000
"""A tower stores no bigger blob (a penalty ladder of a full HTLC set is well under)."""
_NONCE = bytes(12)
_HEADER = struct.Struct(">BBHHB")
_KINDS = {EntryKind.PENALTY: 1, EntryKind.NEWER_STATE: 2, EntryKind.LSTOCK_BURN: 3}
_KIND_OF = {v: k for k, v in _KINDS.items()}


class HintError(ValueError):
    """A hint blob that does not decrypt or does not decode: ignored, never acted on."""


@dataclass(frozen=True)
class Hint:
    """What a tower stores: an id to match and a blob it cannot read yet."""

    hint_id: bytes
    blob: bytes


def hint_id(txid: bytes) -> bytes:
    """The lookup key: the first 16 bytes of the breach txid (internal byte order)."""
    if len(txid) != 32:
        raise HintError("a txid is 32 bytes")
    return txid[:HINT_ID_LEN]


def encode_entry(entry: WatchEntry) -> bytes:
    """The plaintext of a hint (also how a watcher stores its entries)."""
    parts = [
        _HEADER.pack(
            BLOB_VERSION,
            _KINDS[entry.kind],
            entry.not_before,
            entry.deadline,
            len(entry.responses) | (0x80 if entry.anchored else 0),
        )
    ]
    for tx in entry.responses:
        raw = tx.to_bytes()
        parts.append(struct.pack(">I", len(raw)) + raw)
    return b"".join(parts)


def encrypt_hint(entry: WatchEntry) -> Hint:
    """Seal `entry`'s response under its trigger txid."""
    if len(entry.responses) > MAX_RESPONSES:
        raise HintError(f"at most {MAX_RESPONSES} responses per hint")
    key = entry.trigger_txid
    blob = ChaCha20Poly1305(key).encrypt(_NONCE, encode_entry(entry), hint_id(key))
    return Hint(hint_id(key), blob)


def decode_entry(txid: bytes, data: bytes) -> WatchEntry:
    """Strictly parse a hint plaintext; `HintError` on anything malformed."""
    if len(data) < _HEADER.size:
        raise HintError("blob too short")
    version, kind, not_before, deadline, count = _HEADER.unpack_from(data)
    if version != BLOB_VERSION:
        raise HintError(f"unknown blob version {version}")
    if kind not in _KIND_OF:
        raise HintError(f"unknown response kind {kind}")
    anchored, count = bool(count & 0x80), count & 0x7F
    if not 1 <= count <= MAX_RESPONSES:
        raise HintError(f"{count} responses")
    pos, txs = _HEADER.size, []
    for _ in range(count):
        if pos + 4 > len(data):
            raise HintError("truncated blob")
        (size,) = struct.unpack_from(">I", data, pos)
        pos += 4
        if size > MAX_TX_BYTES or pos + size > len(data):
            raise HintError("truncated or oversized transaction")
        try:
            txs.append(Transaction.from_bytes(data[pos : pos + size]))
        except (TxError, ValueError) as exc:
            raise HintError(f"bad transaction in blob: {exc}") from exc
        pos += size
    if pos != len(data):
        raise HintError("trailing bytes in blob")
    entry_kind = _KIND_OF[kind]
    if entry_kind is EntryKind.PENALTY and any(
        txin.prevout.txid != txid for tx in txs for txin in tx.inputs
    ):
        raise HintError("a penalty may only spend the breach transaction's outputs")
    try:
        return WatchEntry(entry_kind, txid, tuple(txs), not_before, deadline, anchored)
    except WatchError as exc:
        raise HintError(str(exc)) from exc


def decrypt_hint(txid: bytes, blob: bytes) -> WatchEntry:
    """Open a blob with the txid that just appeared on chain; `HintError` if it is not its key."""
    if len(txid) != 32:
        raise HintError("a txid is 32 bytes")
    try:
        data = ChaCha20Poly1305(txid).decrypt(_NONCE, blob, hint_id(txid))
    except InvalidTag as exc:
        raise HintError("blob does not open with this txid") from exc
    return decode_entry(txid, data)
