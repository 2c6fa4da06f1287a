"""Typed messages: JSON shape, hex bytes, strict decoding, fuzzing, registry rules, negotiation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from superscalar.crypto.keys import PublicKey, SecretKey
from superscalar.wire import codec
from superscalar.wire.codec import (
    PROTOCOL_VERSION,
    Error,
    ErrorCode,
    Hex,
    Hex32,
    Hex33,
    Init,
    Message,
    NegotiationError,
    PeerWarning,
    Ping,
    Pong,
    PublicKeyHex,
    Record,
    UInt,
    XOnlyHex,
    decode,
    encode,
    message_types,
    negotiate,
)
from superscalar.wire.errors import DecodeFailure, WireDecodeError
from superscalar.wire.framing import DEFAULT_MAX_MESSAGE_SIZE


class SampleSig(Record):
    node: UInt
    sig: Hex32


class SampleMessage(Message, tag="test_sample"):
    """A message exercising every supported field kind (registered for the tests only)."""

    id: Hex32
    keys: tuple[Hex33, ...] = ()
    blob: Hex = Hex()
    note: Hex | None = None
    node: PublicKeyHex | None = None
    xonly: XOnlyHex | None = None
    sigs: tuple[SampleSig, ...] = ()
    amount: UInt = 0

    def __post_init__(self) -> None:
        if self.amount == 13:
            raise ValueError("unlucky amount")


KEY = SecretKey(b"\x07" * 32)


def sample() -> SampleMessage:
    return SampleMessage(
        id=Hex32(b"\xaa" * 32),
        keys=(Hex33(KEY.public_key.data),),
        blob=Hex(b"\x00\xff"),
        node=PublicKeyHex.of(KEY.public_key),
        xonly=XOnlyHex.of(KEY.xonly_public_key),
        sigs=(SampleSig(node=3, sig=Hex32(b"\x01" * 32)),),
        amount=21_000_000 * 100_000_000,
    )


@pytest.fixture
def scratch_registry() -> Iterator[None]:
    """Let a test define (bad) message classes without leaving them registered."""
    saved = list(codec._CLASSES)
    yield
    codec._CLASSES[:] = saved
    codec._decoder = None


# --- shape and round trips ----------------------------------------------------------------


def test_generic_messages_are_registered() -> None:
    types = message_types()
    for tag, cls in {"init": Init, "error": Error, "warning": PeerWarning, "ping": Ping}.items():
        assert types[tag] is cls
    assert types["pong"] is Pong


def test_json_is_tagged_and_bytes_are_lowercase_hex() -> None:
    m = sample()
    obj = json.loads(encode(m))
    assert obj["type"] == "test_sample"
    assert obj["id"] == "aa" * 32
    assert obj["blob"] == "00ff"
    assert obj["node"] == KEY.public_key.hex()
    assert obj["xonly"] == KEY.xonly_public_key.hex()
    assert obj["sigs"] == [{"node": 3, "sig": "01" * 32}]
    assert obj["note"] is None
    back = decode(encode(m))
    assert back == m
    assert isinstance(back, SampleMessage) and back.node is not None and back.xonly is not None
    assert back.node.to_key() == KEY.public_key
    assert back.xonly.to_key() == KEY.xonly_public_key


def test_plain_bytes_given_to_hex_fields_are_coerced_and_size_checked() -> None:
    m = SampleMessage(id=b"\x01" * 32, keys=(b"\x02" * 33,), blob=b"xy")  # type: ignore[arg-type]
    assert type(m.id) is Hex32 and type(m.keys[0]) is Hex33 and type(m.blob) is Hex
    assert json.loads(encode(m))["blob"] == "7879"
    with pytest.raises(ValueError, match="32 bytes"):
        SampleMessage(id=b"\x01" * 31)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Hex(5)  # type: ignore[arg-type]


def test_messages_are_frozen_and_hashable() -> None:
    m = sample()
    with pytest.raises(AttributeError):
        m.amount = 1  # type: ignore[misc]
    assert hash(m) == hash(decode(encode(m)))
    assert m.type_tag == "test_sample"


_text = st.text(max_size=40)
_feature = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
_u64 = st.integers(min_value=0, max_value=2**63 - 1)

GENERIC = st.one_of(
    st.builds(Ping, nonce=_u64),
    st.builds(Pong, nonce=_u64),
    st.builds(
        Error,
        code=_feature,
        message=_text,
        subject=st.none() | st.text(max_size=20),
    ),
    st.builds(PeerWarning, code=_feature, message=_text),
    st.lists(_feature, unique=True, max_size=5).flatmap(
        lambda fs: st.builds(
            Init,
            version=st.integers(1, 10),
            min_version=st.just(1),
            features=st.just(tuple(fs)),
            required=st.lists(st.sampled_from(fs), unique=True).map(tuple) if fs else st.just(()),
            user_agent=st.text(max_size=30),
        )
    ),
    st.builds(
        SampleMessage,
        id=st.binary(min_size=32, max_size=32).map(Hex32),
        keys=st.lists(st.just(Hex33(KEY.public_key.data)), max_size=3).map(tuple),
        blob=st.binary(max_size=50).map(Hex),
        note=st.none() | st.binary(max_size=10).map(Hex),
        amount=_u64.filter(lambda v: v != 13),
    ),
)


@given(message=GENERIC)
def test_every_message_round_trips(message: Message) -> None:
    assert decode(encode(message)) == message


# --- strict decoding ----------------------------------------------------------------------


def _fails(data: Any, failure: DecodeFailure, match: str | None = None) -> None:
    with pytest.raises(WireDecodeError, match=match) as info:
        decode(data)
    assert info.value.failure is failure


def test_unknown_or_missing_type_is_reported_as_such() -> None:
    _fails(b'{"type":"no_such_message"}', DecodeFailure.UNKNOWN_TYPE, "no_such_message")
    _fails(b'{"nonce":1}', DecodeFailure.UNKNOWN_TYPE, "type")
    _fails(b'{"type":7}', DecodeFailure.UNKNOWN_TYPE)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b'{"type":"ping","nonce":-1}', "nonce"),
        (b'{"type":"ping","nonce":9223372036854775808}', "nonce"),
        (b'{"type":"ping","nonce":"1"}', "nonce"),
        (b'{"type":"ping","nonce":1,"extra":true}', "unknown field"),
        (b'{"type":"init","version":2,"min_version":3}', "min_version"),
        (b'{"type":"init","features":["a","a"]}', "duplicate"),
        (b'{"type":"init","features":["Caps"]}', "features"),
        (b'{"type":"init","required":["x"]}', "required"),
        (b'{"type":"error","message":"' + b"x" * 1001 + b'"}', "message"),
        (b'{"type":"test_sample","id":"AA' + b"aa" * 31 + b'"}', "lowercase hex"),
        (b'{"type":"test_sample","id":"' + b"a" * 63 + b'"}', "hex"),
        (b'{"type":"test_sample","id":"' + b"aa" * 31 + b'"}', "32 bytes"),
        (b'{"type":"test_sample","id":"' + b"aa" * 32 + b'","amount":13}', "unlucky"),
        (b'{"type":"test_sample","id":"' + b"aa" * 32 + b'","node":"' + b"05" * 33 + b'"}', "node"),
        (b'{"type":"test_sample","id":"' + b"aa" * 32 + b'","sigs":[{"node":1}]}', "sig"),
        (b"[]", "array"),
        (b"7", "int"),
    ],
)
def test_ill_typed_input_is_invalid_with_a_reason(data: bytes, match: str) -> None:
    _fails(data, DecodeFailure.INVALID, match)


@pytest.mark.parametrize(
    "data",
    [b"", b"{", b"\xff\xfe", b'{"type":"ping"} {}', b"nul\x00", "\ud800", b"{" * 10_000],
)
def test_malformed_json_is_not_json(data: Any) -> None:
    _fails(data, DecodeFailure.NOT_JSON)


def test_too_large_input_is_refused_before_parsing() -> None:
    _fails(b" " * (DEFAULT_MAX_MESSAGE_SIZE + 1), DecodeFailure.TOO_LARGE)
    with pytest.raises(WireDecodeError) as info:
        decode(encode(Ping(nonce=1)), max_size=5)
    assert info.value.failure is DecodeFailure.TOO_LARGE


def test_non_bytes_input_is_a_decode_error() -> None:
    _fails(12, DecodeFailure.INVALID)
    _fails(None, DecodeFailure.INVALID)


@settings(max_examples=300)
@given(data=st.binary(max_size=300))
def test_fuzzed_bytes_raise_only_wire_decode_error(data: bytes) -> None:
    try:
        result = decode(data)
    except WireDecodeError:
        return
    assert isinstance(result, Message)


FIELD_NAMES = (
    *("version", "min_version", "features", "required", "code", "message", "nonce", "subject"),
    *("id", "keys", "blob", "note", "node", "xonly", "sigs", "amount", "z"),
)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@settings(max_examples=200)
@given(
    tag=st.sampled_from(["init", "error", "warning", "ping", "pong", "test_sample", "x"]),
    fields=st.dictionaries(
        st.sampled_from(FIELD_NAMES),
        _json,
        max_size=5,
    ),
)
def test_fuzzed_json_objects_raise_only_wire_decode_error(tag: str, fields: dict[str, Any]) -> None:
    data = json.dumps({"type": tag, **fields}).encode()
    try:
        message = decode(data)
    except WireDecodeError:
        return
    assert decode(encode(message)) == message


@settings(max_examples=200)
@given(message=GENERIC, position=st.integers(min_value=0), byte=st.integers(0, 255))
def test_mutated_encodings_raise_only_wire_decode_error(
    message: Message, position: int, byte: int
) -> None:
    data = bytearray(encode(message))
    data[position % len(data)] = byte
    try:
        result = decode(bytes(data))
    except WireDecodeError:
        return
    assert decode(encode(result)) == result


# --- registry rules -----------------------------------------------------------------------


@pytest.mark.usefixtures("scratch_registry")
def test_a_bytes_field_is_refused_when_the_registry_is_built() -> None:
    class Bad(Message, tag="test_bad_bytes"):
        raw: bytes

    with pytest.raises(TypeError, match="Hex"):
        decode(b'{"type":"ping"}')


class Plain(msgspec.Struct, frozen=True):
    """A nested struct that is not a Record (refused by the registry)."""

    x: int


@pytest.mark.usefixtures("scratch_registry")
def test_nested_struct_must_be_a_record() -> None:
    class Bad(Message, tag="test_bad_nested"):
        inner: Plain

    with pytest.raises(TypeError, match="Record"):
        message_types()


@pytest.mark.usefixtures("scratch_registry")
def test_mutable_containers_are_refused() -> None:
    class Bad(Message, tag="test_bad_list"):
        items: list[int]

    with pytest.raises(TypeError, match="not a list"):
        message_types()


@pytest.mark.usefixtures("scratch_registry")
def test_hex_nested_beyond_the_coercion_reach_is_refused() -> None:
    class Bad(Message, tag="test_bad_nested_hex"):
        items: tuple[tuple[Hex32, ...], ...]

    with pytest.raises(TypeError, match="Hex may only"):
        message_types()


@pytest.mark.usefixtures("scratch_registry")
def test_unions_of_two_hex_types_are_refused() -> None:
    class Bad(Message, tag="test_bad_union"):
        item: Hex32 | Hex33

    with pytest.raises(TypeError, match="unions may not contain more than one custom type"):
        message_types()


@pytest.mark.usefixtures("scratch_registry")
def test_crypto_dataclasses_are_refused_with_a_hint() -> None:
    class Bad(Message, tag="test_bad_key"):
        node: PublicKey

    with pytest.raises(TypeError, match="PublicKeyHex"):
        message_types()


def test_key_hex_types_refuse_points_off_the_curve() -> None:
    with pytest.raises(ValueError, match="public key"):
        PublicKeyHex(b"\x05" * 33)
    with pytest.raises(ValueError, match="x-only"):
        XOnlyHex(b"\xff" * 32)


@pytest.mark.usefixtures("scratch_registry")
def test_duplicate_tags_are_refused() -> None:
    class Again(Message, tag="ping"):
        nonce: UInt = 0

    with pytest.raises(TypeError, match="'ping'"):
        message_types()


@pytest.mark.usefixtures("scratch_registry")
def test_tags_must_be_explicit_snake_case() -> None:
    class NoTag(Message):
        x: UInt = 0

    with pytest.raises(TypeError, match="explicit snake_case"):
        message_types()


@pytest.mark.usefixtures("scratch_registry")
def test_a_new_message_is_one_struct() -> None:
    class FactoryHello(Message, tag="test_factory_hello"):
        factory_id: Hex32
        clients: tuple[PublicKeyHex, ...]

    m = FactoryHello(factory_id=Hex32(bytes(32)), clients=(PublicKeyHex.of(KEY.public_key),))
    assert "test_factory_hello" in message_types()
    assert decode(encode(m)) == m


# --- negotiation and errors ---------------------------------------------------------------


def test_negotiate_picks_highest_common_version_and_shared_features() -> None:
    ours = Init(version=3, min_version=1, features=("a", "b", "c"), required=("a",))
    theirs = Init(version=2, min_version=2, features=("a", "c", "z"))
    result = negotiate(ours, theirs)
    assert result.version == 2
    assert result.features == {"a", "c"}
    assert result.remote == theirs
    assert negotiate(Init(), Init()).version == PROTOCOL_VERSION


def test_negotiate_refuses_disjoint_versions_and_missing_required_features() -> None:
    with pytest.raises(NegotiationError) as info:
        negotiate(Init(version=1), Init(version=3, min_version=2))
    assert info.value.code is ErrorCode.UNSUPPORTED_VERSION
    with pytest.raises(NegotiationError, match="peer requires unsupported features: x") as info:
        negotiate(Init(), Init(features=("x",), required=("x",)))
    assert info.value.code is ErrorCode.MISSING_FEATURE
    with pytest.raises(NegotiationError, match="we require"):
        negotiate(Init(features=("x",), required=("x",)), Init())


def test_error_from_a_decode_error_carries_code_and_truncated_reason() -> None:
    exc = WireDecodeError(DecodeFailure.INVALID, "x" * 5000)
    err = Error.from_exception(exc)
    assert err.code == ErrorCode.DECODE.value
    assert len(err.message) == 1000
    assert decode(encode(err)) == err
