"""Encrypted breach hints: only the breach txid opens them; garbage never crashes the decoder."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from superscalar.bitcoin.tx import OutPoint, Transaction, TxIn, TxOut
from superscalar.watch import EntryKind, HintError, WatchEntry, decrypt_hint, encrypt_hint, hint_id
from superscalar.watch.hints import decode_entry

DEST = bytes.fromhex("5120") + bytes(32)
BREACH_TXID = hashlib.sha256(b"revoked commitment").digest()


def _entry(txid: bytes = BREACH_TXID) -> WatchEntry:
    rungs = tuple(
        Transaction(2, (TxIn(OutPoint(txid, 1)),), (TxOut(50_000 - fee, DEST),))
        for fee in (300, 900)
    )
    return WatchEntry(EntryKind.PENALTY, txid, rungs, not_before=0, deadline=143)


def test_a_hint_opens_with_the_breach_txid_into_the_same_entry() -> None:
    hint = encrypt_hint(_entry())
    assert hint.hint_id == BREACH_TXID[:16]
    opened = decrypt_hint(BREACH_TXID, hint.blob)
    assert opened.responses == _entry().responses
    assert (opened.kind, opened.not_before, opened.deadline) == (EntryKind.PENALTY, 0, 143)


def test_the_blob_reveals_no_transaction_bytes() -> None:
    hint = encrypt_hint(_entry())
    assert _entry().responses[0].to_bytes()[:40] not in hint.blob
    assert DEST not in hint.blob


def test_another_txid_with_the_same_id_prefix_cannot_open_it() -> None:
    hint = encrypt_hint(_entry())
    other = BREACH_TXID[:16] + bytes(16)
    assert hint_id(other) == hint.hint_id
    with pytest.raises(HintError, match="does not open"):
        decrypt_hint(other, hint.blob)


def test_a_tampered_blob_is_refused() -> None:
    blob = bytearray(encrypt_hint(_entry()).blob)
    blob[10] ^= 1
    with pytest.raises(HintError):
        decrypt_hint(BREACH_TXID, bytes(blob))


def test_a_penalty_spending_another_transaction_is_refused() -> None:
    foreign = hashlib.sha256(b"someone else").digest()
    entry = WatchEntry(
        EntryKind.PENALTY,
        BREACH_TXID,
        (Transaction(2, (TxIn(OutPoint(foreign, 0)),), (TxOut(1_000, DEST),)),),
        0,
        10,
    )
    with pytest.raises(HintError, match="only spend"):
        decrypt_hint(BREACH_TXID, encrypt_hint(entry).blob)


@given(st.binary(max_size=600))
def test_any_plaintext_decodes_or_is_refused_with_a_hint_error(data: bytes) -> None:
    try:
        entry = decode_entry(BREACH_TXID, data)
    except HintError:
        return
    assert entry.trigger_txid == BREACH_TXID


@given(st.binary(max_size=600), st.binary(min_size=32, max_size=32))
def test_any_blob_is_refused_cleanly_under_any_key(blob: bytes, txid: bytes) -> None:
    with pytest.raises(HintError):
        decrypt_hint(txid, blob)
