"""The path view's wire encoding: exact round trip, and a strict decoder for hostile bytes."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from superscalar.factory import ClientExpectation, ClientView, ViewError, extract_view, verify_view

from .helpers import CHANNEL, make_params, make_tree, secret

TREE = make_tree(11, make_params(arity=(2, 3)))
PARAMS = TREE.shape.params
LSP = secret(0).public_key


def assert_strict(data: bytes) -> None:
    """Only `ViewError` escapes, and whatever decodes is the one encoding of its value."""
    try:
        view = ClientView.from_bytes(data, PARAMS, LSP)
    except ViewError:
        return
    assert view.to_bytes() == data


def test_every_clients_view_round_trips_exactly() -> None:
    for client in range(11):
        view = extract_view(TREE, client)
        assert ClientView.from_bytes(view.to_bytes(), PARAMS, LSP) == view


def test_truncated_view_is_refused() -> None:
    raw = extract_view(TREE, 3).to_bytes()
    for cut in (0, 1, 20, len(raw) // 2, len(raw) - 1):
        with pytest.raises(ViewError):
            ClientView.from_bytes(raw[:cut], PARAMS, LSP)


def test_trailing_bytes_are_refused() -> None:
    raw = extract_view(TREE, 3).to_bytes()
    with pytest.raises(ViewError, match="trailing"):
        ClientView.from_bytes(raw + b"\x00", PARAMS, LSP)


def test_invalid_participant_key_is_refused() -> None:
    view = extract_view(TREE, 0)
    raw = view.to_bytes()
    key = view.participants[4].data
    bad = raw.replace(key, b"\x05" + key[1:], 1)
    with pytest.raises(ViewError, match="malformed"):
        ClientView.from_bytes(bad, PARAMS, LSP)


def test_absurd_participant_count_is_refused_before_allocating() -> None:
    raw = extract_view(TREE, 0).to_bytes()
    # client 0 (1 byte), outpoint (36), amount (8), then the participant count
    bad = raw[:45] + b"\xfe\xff\xff\xff\x7f" + raw[46:]
    with pytest.raises(ViewError, match="exceeds"):
        ClientView.from_bytes(bad, PARAMS, LSP)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_random_bytes_decode_canonically_or_raise_view_error(data: bytes) -> None:
    assert_strict(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=0), st.integers(min_value=0, max_value=255), st.integers(0, 3))
def test_mutated_honest_view_decodes_canonically_or_raises_view_error(
    pos: int, byte: int, how: int
) -> None:
    raw = bytearray(extract_view(TREE, 5).to_bytes())
    i = pos % len(raw)
    if how == 0:
        raw[i] = byte
    elif how == 1:
        del raw[i]
    elif how == 2:
        raw.insert(i, byte)
    else:
        raw = raw[:i]
    assert_strict(bytes(raw))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=0), st.integers(min_value=0, max_value=255))
def test_mutated_view_that_decodes_is_refused_by_verify_view_with_view_error(
    pos: int, byte: int
) -> None:
    """Hostile bytes may decode, but checking them never raises anything but `ViewError`:
    a cheating LSP cannot crash the client with an index out of range."""
    honest = extract_view(TREE, 5)
    raw = bytearray(honest.to_bytes())
    i = pos % len(raw)
    raw[i] = byte
    expect = ClientExpectation(secret(6).public_key, CHANNEL, LSP, PARAMS, initial=True)
    try:
        view = ClientView.from_bytes(bytes(raw), PARAMS, LSP)
        verified = verify_view(view, expect)
    except ViewError:
        return
    # accepted: then what we would sign is exactly what the honest view has us sign
    assert verified.sessions == verify_view(honest, expect).sessions
