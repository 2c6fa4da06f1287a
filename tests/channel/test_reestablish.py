"""channel_reestablish: after a reconnect both sides re-send what the other lost and agree again.

Each test loses a precise set of in-flight messages (a cleared inbox is a
dropped TCP stream), reconnects both sides and checks that they converge on
identical commitments — or, when one side lost *state*, that the right side
refuses to operate.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from superscalar.channel import (
    AddHtlc,
    ChannelError,
    ChannelOpen,
    ChannelReestablish,
    ChannelSecrets,
    ChannelState,
    CommitmentSigned,
    DataLossDetected,
    DataLossError,
    ForceClose,
    FulfillHtlc,
    FundingSigned,
    IncomingHtlcCommitted,
    InvalidRevocationError,
    LoopbackChannel,
    OutgoingHtlcFailed,
    PeerBehindError,
    Reestablish,
    RevokeAndAck,
    SendMessage,
    SignCommitment,
    Status,
    UnexpectedMessageError,
    UpdateAddHtlc,
    accept_open,
    local_commitment,
    open_message,
    remote_commitment,
    resend_funding_signed,
    step,
)

from .support import (
    CLOSE_SCRIPTS,
    CONFIG,
    FUNDING,
    HEIGHT,
    SEEDS,
    add_committed,
    make_pair,
    pay,
    payment_hash,
    preimage,
)

CLTV = HEIGHT + 50


def disconnect(pair: LoopbackChannel) -> None:
    pair.a.inbox.clear()
    pair.b.inbox.clear()


def reconnect(pair: LoopbackChannel) -> None:
    """Both sides send their reestablish, then everything is delivered and signed."""
    pair.apply(pair.a, Reestablish())
    pair.apply(pair.b, Reestablish())
    pair.settle()


def assert_same_views(pair: LoopbackChannel) -> None:
    a, b = pair.a.state, pair.b.state
    assert not a.reestablishing and not b.reestablishing
    assert local_commitment(a).txid == remote_commitment(b).txid
    assert local_commitment(b).txid == remote_commitment(a).txid
    assert a.remote_next_commit is None and b.remote_next_commit is None
    total = a.funding.amount_msat
    assert local_commitment(a).spec.total_msat == total == local_commitment(b).spec.total_msat


def test_reestablish_in_sync_resends_nothing() -> None:
    pair = make_pair()
    pay(pair, pair.a, 5_000_000, 1, CLTV)
    before = (pair.a.state.local_commit, pair.b.state.local_commit)
    pair.apply(pair.a, Reestablish())
    pair.apply(pair.b, Reestablish())
    assert [type(m) for m in pair.a.inbox] == [ChannelReestablish]
    pair.deliver(pair.a)
    pair.deliver(pair.b)
    assert not pair.a.inbox and not pair.b.inbox
    assert (pair.a.state.local_commit, pair.b.state.local_commit) == before
    assert_same_views(pair)


def test_lost_commitment_signed_is_resent_with_its_updates() -> None:
    pair = make_pair()
    pair.apply(pair.a, AddHtlc(7_000_000, payment_hash(1), CLTV))
    pair.apply(pair.a, SignCommitment())
    signed = pair.a.state.remote_next_commit
    disconnect(pair)  # bob never saw the add nor the signature
    pair.apply(pair.a, Reestablish())
    pair.apply(pair.b, Reestablish())
    pair.deliver(pair.a)
    pair.deliver(pair.b)  # alice's reestablish
    resent = list(pair.b.inbox)
    assert [type(m) for m in resent] == [UpdateAddHtlc, CommitmentSigned]
    assert isinstance(resent[1], CommitmentSigned) and signed is not None
    assert resent[1].commitment_number == signed.number
    pair.settle()
    assert_same_views(pair)
    assert len(local_commitment(pair.b.state).spec.htlcs) == 1
    assert any(isinstance(e, IncomingHtlcCommitted) for e in pair.b.notices)


def test_lost_revoke_and_ack_is_resent() -> None:
    pair = make_pair()
    pair.apply(pair.a, AddHtlc(7_000_000, payment_hash(1), CLTV))
    pair.apply(pair.a, SignCommitment())
    pair.deliver_all()  # bob revoked; alice got it... now lose bob's next revocation
    pair.apply(pair.b, SignCommitment())
    pair.deliver(pair.a)  # alice takes bob's signature, answers with revoke_and_ack
    assert [type(m) for m in pair.b.inbox] == [RevokeAndAck]
    disconnect(pair)
    pair.apply(pair.a, Reestablish())
    pair.apply(pair.b, Reestablish())
    pair.deliver(pair.b)
    pair.deliver(pair.a)  # bob's reestablish: it still waits for alice's revocation
    assert [type(m) for m in pair.b.inbox] == [RevokeAndAck]
    pair.settle()
    assert_same_views(pair)
    assert pair.b.state.revocations.secret(pair.a.state.local_commit.number - 1) is not None  # type: ignore[union-attr]


def test_lost_messages_in_both_directions_are_resent_in_order() -> None:
    pair = make_pair()
    add_committed(pair, pair.a, 3_000_000, 1, CLTV)
    pair.apply(pair.b, AddHtlc(2_000_000, payment_hash(2), CLTV))
    pair.apply(pair.b, SignCommitment())
    pair.deliver(pair.a)  # add
    pair.deliver(pair.a)  # commitment_signed -> alice revokes (lost below)
    pair.apply(pair.a, AddHtlc(4_000_000, payment_hash(3), CLTV))
    pair.apply(pair.a, SignCommitment())  # also lost
    disconnect(pair)
    reconnect(pair)
    assert_same_views(pair)
    assert len(local_commitment(pair.a.state).spec.htlcs) == 3


def test_uncommitted_updates_are_dropped_and_the_add_fails() -> None:
    pair = make_pair()
    pair.apply(pair.a, AddHtlc(7_000_000, payment_hash(1), CLTV))
    pair.deliver(pair.b)  # bob holds the add, but no signature covers it
    reconnect(pair)
    failed = [e for e in pair.a.notices if isinstance(e, OutgoingHtlcFailed)]
    assert [f.htlc.payment_hash for f in failed] == [payment_hash(1)]
    assert pair.a.state.local_next_htlc_id == 0 == pair.b.state.remote_next_htlc_id
    assert not local_commitment(pair.b.state).spec.htlcs
    pair.apply(pair.a, AddHtlc(1_000_000, payment_hash(2), CLTV))  # the id is free again
    pair.settle()
    (received,) = local_commitment(pair.b.state).spec.received()
    assert (received.id, received.payment_hash) == (0, payment_hash(2))


def test_dropped_fulfill_is_announced_again_for_resumption() -> None:
    pair = make_pair()
    htlc_id = add_committed(pair, pair.a, 7_000_000, 1, CLTV)
    pair.apply(pair.b, FulfillHtlc(htlc_id, preimage(1)))
    disconnect(pair)
    pair.b.notices.clear()
    reconnect(pair)
    resumed = [e for e in pair.b.notices if isinstance(e, IncomingHtlcCommitted)]
    assert [e.htlc.id for e in resumed] == [htlc_id]
    pair.apply(pair.b, FulfillHtlc(htlc_id, preimage(1)))
    pair.settle()
    assert_same_views(pair)
    assert local_commitment(pair.b.state).spec.to_local_msat == 400_000_000 + 7_000_000


def test_updates_are_refused_until_the_peer_reestablishes() -> None:
    pair = make_pair()
    pair.apply(pair.a, Reestablish())
    before = pair.a.state
    with pytest.raises(UnexpectedMessageError):
        pair.apply(pair.a, AddHtlc(1_000_000, payment_hash(1), CLTV))
    assert pair.a.state is before


def test_reestablish_with_a_wrong_secret_is_refused() -> None:
    pair = make_pair()
    pay(pair, pair.a, 5_000_000, 1, CLTV)
    pair.apply(pair.a, Reestablish())
    pair.apply(pair.b, Reestablish())
    theirs = pair.a.inbox.popleft()
    assert isinstance(theirs, ChannelReestablish)
    before = pair.a.state
    with pytest.raises(InvalidRevocationError):
        pair.apply(pair.a, replace(theirs, last_remote_secret=bytes(range(32))))
    assert pair.a.state is before


def _one_side_restored_from_backup() -> LoopbackChannel:
    """Alice restarts from a backup two payments old; both sides send their reestablish."""
    pair = make_pair()
    pay(pair, pair.a, 5_000_000, 1, CLTV)
    backup = pair.a.state
    pay(pair, pair.a, 6_000_000, 2, CLTV)
    pair.a.state = backup
    pair.apply(pair.a, Reestablish())
    pair.apply(pair.b, Reestablish())
    return pair


def test_peer_proving_we_are_behind_stops_the_channel() -> None:
    pair = _one_side_restored_from_backup()
    pair.deliver(pair.a)  # bob's reestablish shows alice's revocation of a newer commitment
    assert pair.a.state.status is Status.DATA_LOSS
    assert any(isinstance(e, DataLossDetected) for e in pair.a.notices)
    with pytest.raises(DataLossError):  # our commitment is revoked: never broadcast it
        pair.apply(pair.a, ForceClose())
    with pytest.raises(DataLossError):
        pair.apply(pair.a, AddHtlc(1_000_000, payment_hash(3), CLTV))


def test_peer_that_lost_state_is_refused() -> None:
    pair = _one_side_restored_from_backup()
    before = pair.b.state
    with pytest.raises(PeerBehindError):
        pair.deliver(pair.b)  # alice's reestablish is two commitments behind
    assert pair.b.state is before


def test_reestablish_without_ours_first_is_refused() -> None:
    pair = make_pair()
    pair.apply(pair.a, Reestablish())
    with pytest.raises(ChannelError):
        pair.deliver(pair.b)


def _half_opened() -> tuple[list[ChannelSecrets], list[ChannelOpen], list[ChannelState]]:
    """Both opens accepted; b took a's funding_signed, a lost b's (a crashed before storing it)."""
    secrets = [ChannelSecrets.from_seed(seed) for seed in SEEDS]
    balances = (600_000_000, 400_000_000)
    opens = [
        open_message(
            s,
            FUNDING,
            CONFIG,
            is_initiator=i == 0,
            balance_msat=balances[i],
            close_script=CLOSE_SCRIPTS[i],
        )
        for i, s in enumerate(secrets)
    ]
    accepted = [accept_open(secrets[i], FUNDING, opens[i], opens[1 - i]) for i in (0, 1)]
    (a_signed,) = [e.message for e in accepted[0].effects if isinstance(e, SendMessage)]
    b_open = step(secrets[1], accepted[1].state, a_signed).state
    assert b_open.status is Status.OPEN and accepted[0].state.local_commit is None
    return secrets, opens, [accepted[0].state, b_open]


def test_lost_funding_signed_is_resent_for_the_same_commitment_zero() -> None:
    secrets, opens, (a, b) = _half_opened()
    signed = resend_funding_signed(secrets[1], b, opens[1], opens[0])
    assert isinstance(signed, FundingSigned)
    a = step(secrets[0], a, signed).state
    assert a.status is Status.OPEN
    assert local_commitment(a).txid == remote_commitment(b).txid
    assert local_commitment(b).txid == remote_commitment(a).txid


def test_funding_signed_is_not_resent_for_a_different_commitment_zero() -> None:
    secrets, opens, (_, b) = _half_opened()
    theirs = replace(opens[0], first_points=(opens[1].first_points[0], opens[0].first_points[1]))
    with pytest.raises(ChannelError, match="differs"):
        resend_funding_signed(secrets[1], b, opens[1], theirs)


def test_funding_signed_is_not_resent_once_the_channel_moved_on() -> None:
    pair = make_pair()
    pay(pair, pair.a, 5_000_000, 1, CLTV)
    secrets, opens, _ = _half_opened()
    with pytest.raises(UnexpectedMessageError, match="moved past"):
        resend_funding_signed(secrets[1], pair.b.state, opens[1], opens[0])
