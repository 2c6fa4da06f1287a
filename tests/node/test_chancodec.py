"""The channel codec: states and messages survive JSON, and the result keeps working."""

from __future__ import annotations

import pytest

from superscalar.bench.channel import Hub
from superscalar.channel import (
    CommitmentSigned,
    Htlc,
    UpdateAddHtlc,
    reestablish_message,
    start_reestablish,
)
from superscalar.node.chancodec import (
    decode_message,
    decode_state,
    encode_message,
    encode_state,
)


def test_states_round_trip_and_keep_paying() -> None:
    hub = Hub()
    hub.pay()
    for ch in (hub.ch1, hub.ch2):
        for side in (ch.a, ch.b):
            restored = decode_state(encode_state(side.state))
            assert restored == side.state
            side.state = restored  # a restarted node continues from the stored state
    hub.pay()
    hub.pay()
    assert hub.ch1.a.state.local_commit is not None
    assert not hub.ch1.a.state.local_commit.spec.htlcs


def test_messages_round_trip() -> None:
    hub = Hub()
    msg = UpdateAddHtlc(Htlc(3, 5_000, bytes(range(32)), 800_100, b"\x02" * 33))
    assert decode_message(encode_message(msg)) == msg
    lc = hub.ch1.a.state.local_commit
    assert lc is not None
    signed = CommitmentSigned(7, lc.partial_sig, lc.nonce, (bytes(64),))
    assert decode_message(encode_message(signed)) == signed


def test_reestablish_and_a_reestablishing_state_round_trip() -> None:
    hub = Hub()
    hub.pay()
    side = hub.ch1.a
    msg = reestablish_message(side.secrets, side.state)
    assert decode_message(encode_message(msg)) == msg
    waiting = start_reestablish(side.secrets, side.state).state
    restored = decode_state(encode_state(waiting))
    assert restored == waiting and restored.reestablishing


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[]",
        "{}",
        '{"d":"ChannelState","f":{}}',
        '{"d":"Popen","f":{"args":"ls"}}',
        '{"d":"UpdateAddHtlc","f":{"id":1}}',
        '{"d":"UpdateAddHtlc","f":{"htlc":{"d":"Htlc","f":{"id":1}}}}',
        '{"d":"UpdateAddHtlc","f":{"htlc":{"d":"Htlc","f":{"id":1,"amount_msat":1,'
        '"payment_hash":{"b":"zz"},"cltv_expiry":1}}}}',
    ],
)
def test_garbage_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        decode_message(text)
