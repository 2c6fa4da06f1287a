"""BOLT-8 handshake and transport beyond the vectors: round trips, rotation, tampering, misuse."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from superscalar.wire.errors import (
    HandshakeError,
    HandshakeMacError,
    NoiseError,
    NoiseStateError,
    TransportError,
)
from superscalar.wire.noise import (
    ACT_ONE_SIZE,
    ACT_THREE_SIZE,
    HEADER_SIZE,
    MAX_MESSAGE_SIZE,
    ROTATION_INTERVAL,
    Initiator,
    Responder,
)
from tests.wire.helpers import ALICE, BOB, MALLORY, handshake, transports


def test_handshake_authenticates_both_node_keys_and_agrees_on_keys() -> None:
    ka, kb = handshake()
    assert ka.remote_static == BOB.public_key
    assert kb.remote_static == ALICE.public_key
    assert (ka.sk, ka.rk, ka.ck) == (kb.rk, kb.sk, kb.ck)


def test_fresh_ephemeral_keys_give_fresh_session_keys() -> None:
    assert handshake()[0].sk != handshake()[0].sk


def test_session_keys_repr_hides_key_material() -> None:
    ka, _ = handshake()
    text = repr(ka)
    assert ka.sk.hex() not in text and ka.rk.hex() not in text and ka.ck.hex() not in text


def test_dialling_the_wrong_node_key_fails_act_one() -> None:
    ini, res = Initiator(ALICE, MALLORY.public_key), Responder(BOB)
    with pytest.raises(HandshakeMacError) as info:
        res.receive_act_one(ini.act_one())
    assert info.value.code == "ACT1_BAD_TAG"


def test_responder_impersonator_fails_act_two() -> None:
    # Mallory answers a dial meant for Bob: she cannot compute es, so her act two
    # (built on a handshake that mixed her own key) fails the initiator's MAC check.
    ini = Initiator(ALICE, BOB.public_key)
    act1 = ini.act_one()
    mallory_ini = Initiator(ALICE, MALLORY.public_key)
    act2 = Responder(MALLORY).receive_act_one(mallory_ini.act_one())
    with pytest.raises(HandshakeMacError) as info:
        ini.receive_act_two(act2)
    assert info.value.code == "ACT2_BAD_TAG"
    assert len(act1) == ACT_ONE_SIZE


def test_handshake_steps_out_of_order_or_after_failure_are_refused() -> None:
    ini = Initiator(ALICE, BOB.public_key)
    with pytest.raises(NoiseStateError):
        ini.receive_act_two(b"\x00" * 50)
    ini.act_one()
    with pytest.raises(NoiseStateError):
        ini.act_one()
    with pytest.raises(HandshakeError):
        ini.receive_act_two(b"\x00" * 50)
    with pytest.raises(NoiseStateError):
        ini.receive_act_two(b"\x00" * 50)
    res = Responder(BOB)
    with pytest.raises(NoiseStateError):
        res.receive_act_three(b"\x00" * ACT_THREE_SIZE)


@settings(max_examples=60, deadline=None)
@given(data=st.binary(min_size=0, max_size=80))
def test_arbitrary_act_one_raises_only_handshake_errors(data: bytes) -> None:
    with pytest.raises(HandshakeError):
        Responder(BOB).receive_act_one(data)


@settings(max_examples=60, deadline=None)
@given(data=st.binary(min_size=0, max_size=80), act2=st.binary(min_size=50, max_size=50))
def test_arbitrary_acts_two_and_three_raise_only_handshake_errors(data: bytes, act2: bytes) -> None:
    ini, res = Initiator(ALICE, BOB.public_key), Responder(BOB)
    res.receive_act_one(ini.act_one())
    with pytest.raises(HandshakeError):
        res.receive_act_three(data)
    other = Initiator(ALICE, BOB.public_key)
    other.act_one()
    with pytest.raises(HandshakeError):
        other.receive_act_two(act2)  # a random act two never carries a valid tag


@settings(max_examples=40, deadline=None)
@given(
    skip=st.integers(min_value=0, max_value=ROTATION_INTERVAL + 100),
    messages=st.lists(st.binary(max_size=300), max_size=40),
)
def test_transport_round_trip_across_key_rotation(skip: int, messages: list[bytes]) -> None:
    a, b = transports()
    for _ in range(skip):  # land anywhere relative to the 1000-nonce rotation points
        assert b.decrypt_message(a.encrypt_message(b"x")) == b"x"
    for m in messages:
        assert b.decrypt_message(a.encrypt_message(m)) == m
        assert a.decrypt_message(b.encrypt_message(m[::-1])) == m[::-1]


def test_largest_packet_round_trips_and_one_more_byte_is_refused() -> None:
    a, b = transports()
    big = bytes(range(256)) * (MAX_MESSAGE_SIZE // 256) + b"\x00" * (MAX_MESSAGE_SIZE % 256)
    assert b.decrypt_message(a.encrypt_message(big)) == big
    with pytest.raises(ValueError):
        a.encrypt_message(big + b"\x00")


@settings(max_examples=60, deadline=None)
@given(message=st.binary(max_size=100), position=st.integers(min_value=0), bit=st.integers(0, 7))
def test_any_flipped_bit_is_detected_and_kills_the_transport(
    message: bytes, position: int, bit: int
) -> None:
    a, b = transports()
    packet = bytearray(a.encrypt_message(message))
    packet[position % len(packet)] ^= 1 << bit
    with pytest.raises(TransportError):
        b.decrypt_message(bytes(packet))
    with pytest.raises(NoiseStateError):
        b.decrypt_length(bytes(HEADER_SIZE))


def test_replayed_or_reordered_packets_are_refused() -> None:
    a, b = transports()
    p1, p2 = a.encrypt_message(b"one"), a.encrypt_message(b"two")
    assert b.decrypt_message(p1) == b"one"
    with pytest.raises(TransportError):
        b.decrypt_message(p1)
    a2, b2 = transports()
    q1, q2 = a2.encrypt_message(b"one"), a2.encrypt_message(b"two")
    with pytest.raises(TransportError):
        b2.decrypt_message(q2)
    assert p2 and q1


@settings(max_examples=60, deadline=None)
@given(garbage=st.binary(max_size=200))
def test_garbage_packets_raise_only_noise_errors(garbage: bytes) -> None:
    _, b = transports()
    with pytest.raises(NoiseError):
        b.decrypt_message(garbage)
