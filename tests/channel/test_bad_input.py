"""Bad input is refused with a typed error, and the refusing side's state is untouched.

Every test hands a side a bad message (or command), checks the error class,
checks the state object is the very same one with the same content, and —
where it matters — that the channel then carries on with the good message.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from superscalar.channel import (
    AddHtlc,
    BadPreimageError,
    ChannelConfig,
    ChannelError,
    CltvExpiryError,
    CommitmentSigned,
    Event,
    FulfillHtlc,
    HtlcLimitError,
    InitiateShutdown,
    InsufficientBalanceError,
    InvalidCommitmentSignatureError,
    InvalidHtlcSignatureError,
    InvalidRevocationError,
    LoopbackChannel,
    RevokeAndAck,
    Side,
    SignCommitment,
    StaleCommitmentError,
    UnexpectedMessageError,
    UnknownHtlcError,
    UpdateAddHtlc,
    UpdateFulfillHtlc,
    step,
)
from superscalar.channel.htlc import Htlc
from superscalar.crypto.keys import SecretKey
from superscalar.crypto.musig import PartialSignature, generate_nonce

from .support import CONFIG, HEIGHT, add_committed, make_pair, payment_hash, preimage

CLTV = HEIGHT + 50


def _refused(side: Side, event: Event, error: type[ChannelError]) -> None:
    before = side.state
    snapshot = repr(before)
    with pytest.raises(error):
        step(side.secrets, before, event)
    assert side.state is before
    assert repr(before) == snapshot


def _pending_commitment(pair: LoopbackChannel) -> CommitmentSigned:
    """Alice adds an HTLC and signs; Bob has taken the add, the signature waits in his inbox."""
    pair.apply(pair.a, AddHtlc(9_000_000, payment_hash(1), CLTV))
    pair.apply(pair.a, SignCommitment())
    pair.deliver(pair.b)
    message = pair.b.inbox[0]
    assert isinstance(message, CommitmentSigned)
    return message


def _carries_on(pair: LoopbackChannel) -> None:
    pair.settle()
    assert pair.a.state.local_commit is not None and pair.b.state.local_commit is not None
    assert pair.a.state.local_commit.spec == pair.b.state.remote_commit.spec
    assert pair.b.state.local_commit.spec == pair.a.state.remote_commit.spec


def test_wrong_partial_signature_is_refused() -> None:
    pair = make_pair()
    good = _pending_commitment(pair)
    forged = replace(good, partial_sig=PartialSignature((7).to_bytes(32, "big")))
    _refused(pair.b, forged, InvalidCommitmentSignatureError)
    _carries_on(pair)


def test_partial_signature_with_a_different_nonce_is_refused() -> None:
    pair = make_pair()
    good = _pending_commitment(pair)
    other = SecretKey.from_int(99)
    _, nonce = generate_nonce(other.public_key, secret_key=other)
    _refused(pair.b, replace(good, nonce=nonce), InvalidCommitmentSignatureError)
    _carries_on(pair)


def test_wrong_htlc_signature_is_refused() -> None:
    pair = make_pair()
    good = _pending_commitment(pair)
    assert len(good.htlc_signatures) == 1
    flipped = bytes([good.htlc_signatures[0][0] ^ 1]) + good.htlc_signatures[0][1:]
    _refused(pair.b, replace(good, htlc_signatures=(flipped,)), InvalidHtlcSignatureError)
    _refused(pair.b, replace(good, htlc_signatures=()), InvalidHtlcSignatureError)
    _carries_on(pair)


def test_replayed_commitment_signed_is_stale() -> None:
    pair = make_pair()
    good = _pending_commitment(pair)
    pair.settle()
    pair.apply(pair.a, AddHtlc(1_000_000, payment_hash(2), CLTV))
    pair.deliver(pair.b)
    _refused(pair.b, good, StaleCommitmentError)
    _carries_on(pair)


def test_revocation_for_the_wrong_commitment_number_is_stale() -> None:
    pair = make_pair()
    _pending_commitment(pair)
    pair.deliver(pair.b)  # bob answers with revoke_and_ack for alice to take
    revoke = pair.a.inbox[0]
    assert isinstance(revoke, RevokeAndAck)
    _refused(
        pair.a,
        replace(revoke, commitment_number=revoke.commitment_number + 1),
        StaleCommitmentError,
    )
    _carries_on(pair)


def test_revocation_with_a_secret_that_does_not_match_the_point_is_refused() -> None:
    pair = make_pair()
    _pending_commitment(pair)
    pair.deliver(pair.b)
    revoke = pair.a.inbox[0]
    assert isinstance(revoke, RevokeAndAck)
    wrong = pair.b.secrets.per_commitment_secret(revoke.commitment_number + 7)
    _refused(pair.a, replace(revoke, per_commitment_secret=wrong), InvalidRevocationError)
    _refused(pair.a, replace(revoke, per_commitment_secret=bytes(32)), InvalidRevocationError)
    _carries_on(pair)


def test_revocation_without_a_pending_commitment_is_unexpected() -> None:
    pair = make_pair()
    _pending_commitment(pair)
    pair.deliver(pair.b)
    revoke = pair.a.inbox.popleft()
    pair.apply(pair.a, revoke)
    _refused(pair.a, revoke, UnexpectedMessageError)


def test_commitment_signed_without_updates_is_refused() -> None:
    pair = make_pair()
    good = _pending_commitment(pair)
    pair.settle()
    assert pair.b.state.local_commit is not None
    again = replace(good, commitment_number=pair.b.state.local_commit.number + 1)
    _refused(pair.b, again, UnexpectedMessageError)


def test_signing_again_before_the_revocation_is_refused() -> None:
    pair = make_pair()
    _pending_commitment(pair)
    pair.apply(pair.a, AddHtlc(1_000_000, payment_hash(3), CLTV))
    _refused(pair.a, SignCommitment(), UnexpectedMessageError)


def _add(state_side: Side, htlc_id: int, amount: int, cltv: int = CLTV) -> UpdateAddHtlc:
    return UpdateAddHtlc(Htlc(htlc_id, amount, payment_hash(htlc_id), cltv))


def test_htlc_count_over_max_accepted_is_refused_both_ways() -> None:
    pair = make_pair(config=ChannelConfig(min_cltv_delta=10, max_accepted_htlcs=2))
    for n in range(2):
        pair.apply(pair.a, AddHtlc(1_000_000, payment_hash(n), CLTV))
    pair.deliver_all()
    _refused(pair.a, AddHtlc(1_000_000, payment_hash(2), CLTV), HtlcLimitError)
    _refused(pair.b, _add(pair.b, 2, 1_000_000), HtlcLimitError)


def test_value_in_flight_over_the_limit_is_refused_both_ways() -> None:
    pair = make_pair(
        config=ChannelConfig(min_cltv_delta=10, max_htlc_value_in_flight_msat=10_000_000)
    )
    pair.apply(pair.a, AddHtlc(6_000_000, payment_hash(0), CLTV))
    pair.deliver_all()
    _refused(pair.a, AddHtlc(4_000_001, payment_hash(1), CLTV), HtlcLimitError)
    _refused(pair.b, _add(pair.b, 1, 4_000_001), HtlcLimitError)


def test_htlc_below_the_minimum_is_refused() -> None:
    pair = make_pair(config=ChannelConfig(min_cltv_delta=10, htlc_minimum_msat=1000))
    _refused(pair.a, AddHtlc(999, payment_hash(0), CLTV), HtlcLimitError)
    _refused(pair.b, _add(pair.b, 0, 0), HtlcLimitError)


def test_htlc_eating_into_the_reserve_is_refused() -> None:
    pair = make_pair(config=ChannelConfig(min_cltv_delta=10, channel_reserve_sat=100_000))
    _refused(pair.a, AddHtlc(500_000_001, payment_hash(0), CLTV), InsufficientBalanceError)
    _refused(pair.b, _add(pair.b, 0, 500_000_001), InsufficientBalanceError)
    _refused(pair.b, _add(pair.b, 0, 600_000_001), InsufficientBalanceError)
    pair.apply(pair.a, AddHtlc(500_000_000, payment_hash(1), CLTV))  # exactly at the reserve


@pytest.mark.parametrize(
    ("cltv", "deadline"),
    [
        (HEIGHT + CONFIG.min_cltv_delta - 1, None),  # inside the exit budget
        (HEIGHT + 2017, None),  # beyond BOLT's 2016-block ceiling
        (HEIGHT + 200, HEIGHT + 199),  # past the factory's timeout
        (500_000_000, None),  # a timestamp, not a height
    ],
)
def test_bad_cltv_expiry_is_refused_both_ways(cltv: int, deadline: int | None) -> None:
    pair = make_pair(config=replace(CONFIG, cltv_deadline=deadline))
    _refused(pair.a, AddHtlc(1_000_000, payment_hash(0), cltv), CltvExpiryError)
    _refused(pair.b, _add(pair.b, 0, 1_000_000, cltv), CltvExpiryError)


def test_exit_budget_boundary_is_accepted() -> None:
    pair = make_pair()
    pair.apply(pair.a, AddHtlc(1_000_000, payment_hash(0), HEIGHT + CONFIG.min_cltv_delta))
    pair.settle()


def test_bad_preimage_is_refused_as_command_and_as_message() -> None:
    pair = make_pair()
    htlc_id = add_committed(pair, pair.a, 5_000_000, 4, CLTV)
    _refused(pair.b, FulfillHtlc(htlc_id, preimage(5)), BadPreimageError)
    _refused(pair.a, UpdateFulfillHtlc(htlc_id, preimage(5)), BadPreimageError)
    pair.apply(pair.b, FulfillHtlc(htlc_id, preimage(4)))
    _carries_on(pair)


def test_settling_an_htlc_that_is_not_irrevocably_committed_is_refused() -> None:
    pair = make_pair()
    _pending_commitment(pair)  # HTLC 0 is not yet in both commitments
    _refused(pair.b, FulfillHtlc(0, preimage(1)), UnknownHtlcError)
    _refused(pair.a, UpdateFulfillHtlc(0, preimage(1)), UnknownHtlcError)
    _refused(pair.a, UpdateFulfillHtlc(42, preimage(1)), UnknownHtlcError)


def test_settling_the_same_htlc_twice_is_refused() -> None:
    pair = make_pair()
    htlc_id = add_committed(pair, pair.a, 5_000_000, 4, CLTV)
    pair.apply(pair.b, FulfillHtlc(htlc_id, preimage(4)))
    pair.deliver(pair.a)
    _refused(pair.b, FulfillHtlc(htlc_id, preimage(4)), UnknownHtlcError)
    _refused(pair.a, UpdateFulfillHtlc(htlc_id, preimage(4)), UnknownHtlcError)


def test_add_with_an_out_of_order_id_is_refused() -> None:
    pair = make_pair()
    _refused(pair.b, _add(pair.b, 1, 1_000_000), UnexpectedMessageError)


def test_add_after_shutdown_is_refused() -> None:
    pair = make_pair()
    pair.apply(pair.a, InitiateShutdown(fee_sat=500))
    _refused(pair.a, AddHtlc(1_000_000, payment_hash(0), CLTV), UnexpectedMessageError)
    pair.deliver(pair.b)
    _refused(pair.b, _add(pair.b, 0, 1_000_000), UnexpectedMessageError)
