"""Key types: validation, hex round trips, immutability, no secret in output."""

from __future__ import annotations

import contextlib
import copy
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from superscalar.crypto.errors import InvalidKeyError
from superscalar.crypto.keys import CURVE_ORDER, PublicKey, SecretKey, XOnlyPublicKey


def test_secret_key_repr_and_str_hide_the_secret() -> None:
    key = SecretKey.from_int(0xDEADBEEF)
    assert key.hex() not in repr(key)
    assert key.hex() not in str(key)
    assert key.public_key.hex() in repr(key)


def test_secret_key_cannot_be_pickled_or_mutated() -> None:
    key = SecretKey.generate()
    with pytest.raises(TypeError):
        pickle.dumps(key)
    with pytest.raises(AttributeError):
        key._data = bytes(32)  # type: ignore[misc]


def test_keys_round_trip_through_hex_and_hash_equal() -> None:
    key = SecretKey.generate()
    assert SecretKey.from_hex(key.hex()) == key
    assert hash(SecretKey.from_hex(key.hex())) == hash(key)
    assert PublicKey.from_hex(key.public_key.hex()) == key.public_key
    assert XOnlyPublicKey.from_hex(key.xonly_public_key.hex()) == key.xonly_public_key
    assert {key.public_key, PublicKey(key.public_key.data)} == {key.public_key}


@pytest.mark.parametrize("value", [0, CURVE_ORDER, CURVE_ORDER + 1])
def test_secret_key_out_of_range_is_rejected(value: int) -> None:
    with pytest.raises(InvalidKeyError):
        SecretKey(value.to_bytes(33, "big")[-32:] if value < 2**256 else bytes(32))


@pytest.mark.parametrize(
    "text", ["", "zz", "02" + "00" * 32, "04" + "11" * 32, "02" + "ff" * 32, "0279be"]
)
def test_malformed_public_key_is_a_typed_error(text: str) -> None:
    with pytest.raises(InvalidKeyError):
        PublicKey.from_hex(text)


@given(st.binary(max_size=40))
def test_any_bytes_either_parse_as_a_public_key_or_raise_invalid_key(data: bytes) -> None:
    try:
        key = PublicKey(data)
    except InvalidKeyError:
        return
    assert key.data == data


@given(st.binary(min_size=32, max_size=32))
def test_any_32_bytes_either_parse_as_xonly_or_raise_invalid_key(data: bytes) -> None:
    with contextlib.suppress(InvalidKeyError):
        XOnlyPublicKey(data)


def test_wrong_type_is_a_typed_error() -> None:
    with pytest.raises(InvalidKeyError):
        PublicKey("02" * 33)  # type: ignore[arg-type]


def test_point_arithmetic_matches_scalar_arithmetic() -> None:
    a, b = SecretKey.from_int(7), SecretKey.from_int(11)
    assert PublicKey.combine([a.public_key, b.public_key]) == SecretKey.from_int(18).public_key
    assert a.public_key.multiply(b.to_bytes()) == SecretKey.from_int(77).public_key
    assert a.public_key.negate() == SecretKey.from_int(CURVE_ORDER - 7).public_key
    with pytest.raises(InvalidKeyError):
        PublicKey.combine([a.public_key, a.public_key.negate()])


def test_public_key_copies_are_equal() -> None:
    key = SecretKey.generate().public_key
    assert copy.deepcopy(key) == key
