"""Frames: split/reassemble, canonical encoding, size limits, streams fed in arbitrary pieces."""

from __future__ import annotations

import itertools
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from superscalar.wire.errors import FramingError, NoiseStateError, WireError
from superscalar.wire.framing import (
    MAX_CHUNK,
    MessageStream,
    Reassembler,
    split_message,
)
from superscalar.wire.noise import MAX_MESSAGE_SIZE
from tests.wire.helpers import transports


def streams(**kwargs: int) -> tuple[MessageStream, MessageStream]:
    a, b = transports()
    return MessageStream(a, **kwargs), MessageStream(b, **kwargs)


@given(message=st.binary(max_size=600), chunk=st.integers(min_value=1, max_value=64))
def test_split_then_reassemble_is_identity_and_canonical(message: bytes, chunk: int) -> None:
    frames = split_message(message, chunk)
    assert all(f[0] == 1 and len(f) == chunk + 1 for f in frames[:-1])
    assert frames[-1][0] == 0 and len(frames[-1]) <= chunk
    assert len(frames) == len(message) // chunk + 1
    r = Reassembler(chunk_size=chunk)
    results = [r.push(f) for f in frames]
    assert results[:-1] == [None] * (len(frames) - 1)
    assert results[-1] == message
    assert not r.pending


def test_default_frames_fill_a_bolt8_packet_exactly() -> None:
    frames = split_message(bytes(MAX_CHUNK * 2 + 5))
    assert [len(f) for f in frames] == [MAX_MESSAGE_SIZE, MAX_MESSAGE_SIZE, 6]


@pytest.mark.parametrize(
    ("frames", "why"),
    [
        ([b""], "empty frame"),
        ([b"\x02abc"], "unknown frame flags"),
        ([b"\x81abcd"], "unknown frame flags"),
        ([b"\x01ab"], "non-final frame carries 2"),
        ([b"\x01abcd", b"\x01abc"], "non-final frame carries 3"),
        ([b"\x00abcde"], "exceeds 4"),
    ],
)
def test_non_canonical_frames_are_refused(frames: list[bytes], why: str) -> None:
    r = Reassembler(chunk_size=4)
    with pytest.raises(FramingError, match=why):
        for f in frames:
            r.push(f)


def test_size_limit_is_enforced_before_the_message_completes() -> None:
    r = Reassembler(max_message_size=10, chunk_size=4)
    assert r.push(b"\x01aaaa") is None
    assert r.push(b"\x01bbbb") is None
    with pytest.raises(FramingError, match="limit"):
        r.push(b"\x01cccc")  # 12 > 10, refused although more frames were announced
    exact = Reassembler(max_message_size=8, chunk_size=4)
    exact.push(b"\x01aaaa")
    assert exact.push(b"\x00bbbb") == b"aaaabbbb"


@settings(max_examples=40, deadline=None)
@given(
    messages=st.lists(st.binary(max_size=200), min_size=1, max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=20),
    chunk=st.integers(min_value=1, max_value=50),
)
def test_stream_delivers_the_same_messages_however_the_bytes_are_cut(
    messages: list[bytes], cuts: list[int], chunk: int
) -> None:
    tx, rx = streams(chunk_size=chunk)
    wire = b"".join(tx.encode(m) for m in messages)
    points = sorted({c % (len(wire) + 1) for c in cuts} | {0, len(wire)})
    got: list[bytes] = []
    for start, end in itertools.pairwise(points):
        got += rx.feed(wire[start:end])
    assert got == messages
    assert not rx.mid_message


def test_stream_carries_a_message_larger_than_a_packet() -> None:
    tx, rx = streams()
    big = os.urandom(200_000)
    wire = tx.encode(big)
    assert len(wire) > len(big)  # four packets, each with 34 bytes of header and tags
    got: list[bytes] = []
    for i in range(0, len(wire), 7_777):
        got += rx.feed(wire[i : i + 7_777])
        if len(got) == 0 and i + 7_777 < len(wire):
            assert rx.mid_message
    assert got == [big]


def test_stream_refuses_oversized_messages_both_ways() -> None:
    tx, rx = streams(max_message_size=100, chunk_size=30)
    with pytest.raises(ValueError):
        tx.encode(bytes(101))
    big_tx = MessageStream(tx.transport, max_message_size=1000, chunk_size=30)
    with pytest.raises(FramingError, match="limit"):
        rx.feed(big_tx.encode(bytes(101)))
    with pytest.raises(NoiseStateError):
        rx.feed(b"")  # poisoned after a failure


@settings(max_examples=80, deadline=None)
@given(garbage=st.binary(min_size=1, max_size=400))
def test_garbage_raises_only_wire_errors_then_poisons(garbage: bytes) -> None:
    _, rx = streams()
    try:
        out = rx.feed(garbage)
    except WireError:
        with pytest.raises(WireError):
            rx.feed(b"\x00" * 50)
    else:  # fewer bytes than one header: nothing to decide yet
        assert out == [] and len(garbage) < 18


def test_valid_packet_with_a_bad_frame_is_a_framing_error() -> None:
    a, b = transports()
    rx = MessageStream(b)
    with pytest.raises(FramingError, match="flags"):
        rx.feed(a.encrypt_message(b"\x07hello"))


def test_empty_message_round_trips() -> None:
    tx, rx = streams()
    assert rx.feed(tx.encode(b"")) == [b""]
