"""Adaptor signatures: pre-sign, verify, adapt, extract — single signer and MuSig2."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from superscalar.crypto import adaptor, musig, schnorr
from superscalar.crypto.adaptor import AdaptorSignature
from superscalar.crypto.errors import CryptoError, InvalidSignatureError
from superscalar.crypto.keys import CURVE_ORDER, SecretKey
from tests.crypto.strategies import messages, secret_keys


@settings(max_examples=40, deadline=None)
@given(secret_keys, secret_keys, messages)
def test_adapted_presignature_is_a_valid_bip340_signature(
    key: SecretKey, secret: SecretKey, msg: bytes
) -> None:
    presig = adaptor.presign(key, msg, secret.public_key)
    assert adaptor.verify_presignature(key.xonly_public_key, msg, secret.public_key, presig)
    assert not schnorr.verify(key.xonly_public_key, msg, presig.to_bytes()[1:])
    sig = adaptor.adapt(presig, secret)
    assert schnorr.verify(key.xonly_public_key, msg, sig)


@settings(max_examples=40, deadline=None)
@given(secret_keys, secret_keys, messages)
def test_extract_returns_the_adaptor_secret(key: SecretKey, secret: SecretKey, msg: bytes) -> None:
    presig = adaptor.presign(key, msg, secret.public_key)
    sig = adaptor.adapt(presig, secret)
    assert adaptor.extract(presig, sig, secret.public_key) == secret


@settings(max_examples=15, deadline=None)
@given(st.lists(secret_keys, min_size=1, max_size=4, unique=True), secret_keys, messages)
def test_musig_adaptor_session_completes_and_reveals_the_secret(
    keys: list[SecretKey], secret: SecretKey, msg: bytes
) -> None:
    keyagg = musig.aggregate_keys([k.public_key for k in keys]).taproot_tweak(None)
    nonces = [musig.generate_nonce(k.public_key) for k in keys]
    session = musig.SigningSession(
        keyagg, musig.aggregate_nonces([p for _, p in nonces]), msg, adaptor=secret.public_key
    )
    psigs = [session.sign(sec, k) for (sec, _), k in zip(nonces, keys, strict=True)]
    session.check_all(psigs, [p for _, p in nonces])
    presig = session.aggregate_presignature(psigs)
    assert adaptor.verify_presignature(keyagg.xonly, msg, secret.public_key, presig)
    sig = adaptor.adapt(presig, secret)
    assert schnorr.verify(keyagg.xonly, msg, sig)
    assert adaptor.extract(presig, sig, secret.public_key) == secret


def test_presignature_for_another_adaptor_point_does_not_verify() -> None:
    key, t1, t2 = SecretKey.generate(), SecretKey.generate(), SecretKey.generate()
    presig = adaptor.presign(key, bytes(32), t1.public_key)
    assert not adaptor.verify_presignature(key.xonly_public_key, bytes(32), t2.public_key, presig)


def test_tampered_presignature_does_not_verify() -> None:
    key, t = SecretKey.generate(), SecretKey.generate()
    presig = adaptor.presign(key, bytes(32), t.public_key)
    bad = AdaptorSignature(presig.nonce, (presig.s + 1) % CURVE_ORDER)
    assert not adaptor.verify_presignature(key.xonly_public_key, bytes(32), t.public_key, bad)


def test_extract_with_an_unrelated_signature_fails() -> None:
    key, t = SecretKey.generate(), SecretKey.generate()
    presig = adaptor.presign(key, bytes(32), t.public_key)
    other = schnorr.sign(key, bytes(32))
    with pytest.raises(InvalidSignatureError):
        adaptor.extract(presig, other, t.public_key)


def test_plain_aggregate_refused_on_an_adaptor_session() -> None:
    key, t = SecretKey.generate(), SecretKey.generate()
    sec, pub = musig.generate_nonce(key.public_key)
    session = musig.SigningSession(
        musig.aggregate_keys([key.public_key]),
        musig.aggregate_nonces([pub]),
        bytes(32),
        adaptor=t.public_key,
    )
    psig = session.sign(sec, key)
    with pytest.raises(CryptoError):
        session.aggregate([psig])


@given(st.binary(max_size=80))
def test_presignature_decoder_raises_only_typed_errors(data: bytes) -> None:
    try:
        presig = AdaptorSignature.from_bytes(data)
    except InvalidSignatureError:
        return
    assert presig.to_bytes() == data


def test_presignature_round_trips_through_bytes() -> None:
    key, t = SecretKey.generate(), SecretKey.generate()
    presig = adaptor.presign(key, bytes(32), t.public_key)
    assert AdaptorSignature.from_bytes(presig.to_bytes()) == presig
