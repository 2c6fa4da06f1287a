"""MuSig2 behaviour beyond the vectors: sessions, blame, single-use nonces."""

from __future__ import annotations

import contextlib
import copy
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from superscalar.crypto import musig, schnorr
from superscalar.crypto.errors import (
    CryptoError,
    InvalidNonceError,
    InvalidPartialSignatureError,
    NonceReuseError,
)
from superscalar.crypto.keys import CURVE_ORDER, SecretKey
from tests.crypto.strategies import messages, secret_keys


def run_session(
    keys: list[SecretKey], msg: bytes, taproot: bool = True
) -> tuple[musig.SigningSession, list[musig.PartialSignature], list[musig.PublicNonce]]:
    keyagg = musig.aggregate_keys([k.public_key for k in keys])
    if taproot:
        keyagg = keyagg.taproot_tweak(None)
    nonces = [
        musig.generate_nonce(k.public_key, secret_key=k, keyagg=keyagg, msg=msg) for k in keys
    ]
    session = musig.SigningSession(keyagg, musig.aggregate_nonces([p for _, p in nonces]), msg)
    psigs = [session.sign(sec, k) for (sec, _), k in zip(nonces, keys, strict=True)]
    return session, psigs, [p for _, p in nonces]


@settings(max_examples=25, deadline=None)
@given(st.lists(secret_keys, min_size=1, max_size=5, unique=True), messages, st.booleans())
def test_n_of_n_session_yields_a_valid_bip340_signature(
    keys: list[SecretKey], msg: bytes, taproot: bool
) -> None:
    session, psigs, nonces = run_session(keys, msg, taproot)
    sig = session.aggregate_verified(psigs, nonces)
    assert schnorr.verify(session.keyagg.xonly, msg, sig)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(secret_keys, min_size=2, max_size=5, unique=True),
    messages,
    st.data(),
)
def test_tampered_partial_signature_is_rejected_and_blames_its_signer(
    keys: list[SecretKey], msg: bytes, data: st.DataObject
) -> None:
    session, psigs, nonces = run_session(keys, msg)
    victim = data.draw(st.integers(0, len(keys) - 1))
    delta = data.draw(st.integers(1, CURVE_ORDER - 1))
    value = (int.from_bytes(psigs[victim].data, "big") + delta) % CURVE_ORDER
    psigs[victim] = musig.PartialSignature(value.to_bytes(32, "big"))
    with pytest.raises(InvalidPartialSignatureError) as info:
        session.aggregate_verified(psigs, nonces)
    assert info.value.signer == victim


def test_secret_nonce_is_single_use() -> None:
    key = SecretKey.generate()
    keyagg = musig.aggregate_keys([key.public_key])
    secnonce, pubnonce = musig.generate_nonce(key.public_key)
    session = musig.SigningSession(keyagg, musig.aggregate_nonces([pubnonce]), bytes(32))
    session.sign(secnonce, key)
    assert secnonce.used
    with pytest.raises(NonceReuseError):
        session.sign(secnonce, key)


def test_secret_nonce_cannot_be_copied_pickled_or_printed() -> None:
    key = SecretKey.generate()
    secnonce, _ = musig.generate_nonce(key.public_key)
    for attempt in (pickle.dumps, copy.copy, copy.deepcopy):
        with pytest.raises(TypeError):
            attempt(secnonce)
    assert "unused" in repr(secnonce)


def test_secret_nonce_for_another_key_is_refused_and_not_consumed() -> None:
    a, b = SecretKey.generate(), SecretKey.generate()
    keyagg = musig.aggregate_keys([a.public_key, b.public_key])
    secnonce, pubnonce = musig.generate_nonce(a.public_key)
    _, other = musig.generate_nonce(b.public_key)
    session = musig.SigningSession(keyagg, musig.aggregate_nonces([pubnonce, other]), bytes(32))
    with pytest.raises(CryptoError):
        session.sign(secnonce, b)
    assert not secnonce.used


def test_signer_outside_the_key_list_is_refused() -> None:
    a, outsider = SecretKey.generate(), SecretKey.generate()
    keyagg = musig.aggregate_keys([a.public_key])
    secnonce, pubnonce = musig.generate_nonce(outsider.public_key)
    session = musig.SigningSession(keyagg, musig.aggregate_nonces([pubnonce]), bytes(32))
    with pytest.raises(CryptoError, match="not in the aggregated key list"):
        session.sign(secnonce, outsider)


def test_key_order_matters_and_sorting_makes_it_canonical() -> None:
    keys = [SecretKey.generate().public_key for _ in range(3)]
    forward = musig.aggregate_keys(keys).xonly
    assert musig.aggregate_keys(keys[::-1]).xonly != forward
    assert (
        musig.aggregate_keys(musig.sort_keys(keys)).xonly
        == musig.aggregate_keys(musig.sort_keys(keys[::-1])).xonly
    )


def test_taproot_tweak_equals_the_bip341_output_key() -> None:
    keys = [SecretKey.generate().public_key for _ in range(3)]
    base = musig.aggregate_keys(keys)
    root = bytes(range(32))
    from superscalar.crypto.hashes import tagged_hash

    expected, _ = base.xonly.tweak_add(tagged_hash("TapTweak", base.xonly.data + root))
    assert base.taproot_tweak(root).xonly == expected


@given(st.binary(max_size=70))
def test_any_bytes_either_parse_as_a_public_nonce_or_raise_invalid_nonce(data: bytes) -> None:
    try:
        nonce = musig.PublicNonce(data)
    except InvalidNonceError:
        return
    assert nonce.data == data


@given(st.binary(max_size=70))
def test_any_bytes_either_parse_as_an_aggregate_nonce_or_raise(data: bytes) -> None:
    with contextlib.suppress(InvalidNonceError):
        musig.AggregateNonce(data)


def test_wrong_length_message_is_refused() -> None:
    key = SecretKey.generate()
    _, pubnonce = musig.generate_nonce(key.public_key)
    with pytest.raises(CryptoError):
        musig.SigningSession(
            musig.aggregate_keys([key.public_key]), musig.aggregate_nonces([pubnonce]), b"short"
        )


def test_public_values_survive_pickling() -> None:
    key = SecretKey.generate()
    _, pubnonce = musig.generate_nonce(key.public_key)
    assert pickle.loads(pickle.dumps(pubnonce)) == pubnonce
    assert pickle.loads(pickle.dumps(key.public_key)) == key.public_key


def test_counter_nonce_is_reproducible_and_distinct_per_counter() -> None:
    key = SecretKey.from_int(7)
    _, first = musig.generate_nonce_counter(key, 5, extra=bytes(32))
    _, again = musig.generate_nonce_counter(key, 5, extra=bytes(32))
    _, other = musig.generate_nonce_counter(key, 6, extra=bytes(32))
    assert first == again and first != other


def test_counter_nonce_signs_a_valid_two_of_two() -> None:
    keys = [SecretKey.from_int(11), SecretKey.from_int(12)]
    keyagg = musig.aggregate_keys([k.public_key for k in keys])
    msg = bytes(range(32))
    nonces = [musig.generate_nonce_counter(k, 1) for k in keys]
    session = musig.SigningSession(keyagg, musig.aggregate_nonces([p for _, p in nonces]), msg)
    psigs = [session.sign(sec, k) for (sec, _), k in zip(nonces, keys, strict=True)]
    assert schnorr.verify(keyagg.xonly, msg, session.aggregate(psigs))
