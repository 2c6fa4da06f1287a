"""The BOLT-2 update flow between two loopback sides: open, add, commit, revoke, settle."""

from __future__ import annotations

from superscalar.channel import (
    AddHtlc,
    ChannelReady,
    ChannelState,
    CommitmentSigned,
    FailHtlc,
    FulfillHtlc,
    IncomingHtlcCommitted,
    OutgoingHtlcFailed,
    OutgoingHtlcFulfilled,
    PersistRevokedCommitment,
    PersistState,
    RevokeAndAck,
    SendMessage,
    SignCommitment,
    Status,
    UpdateAddHtlc,
    accept_open,
    channel_balances,
    has_changes_to_sign,
    local_commitment,
    open_message,
    remote_commitment,
    step,
)
from superscalar.channel.keys import ChannelSecrets

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


def _views_agree(a: ChannelState, b: ChannelState) -> None:
    assert a.local_commit is not None and b.local_commit is not None
    assert a.local_commit.spec == b.remote_commit.spec
    assert b.local_commit.spec == a.remote_commit.spec
    assert local_commitment(a).txid == remote_commitment(b).txid
    assert local_commitment(b).txid == remote_commitment(a).txid


def test_open_signs_both_commitments_zero_and_reports_ready() -> None:
    secrets = [ChannelSecrets.from_seed(s) for s in SEEDS]
    opens = [
        open_message(
            s, FUNDING, CONFIG, is_initiator=i == 0, balance_msat=b, close_script=CLOSE_SCRIPTS[i]
        )
        for i, (s, b) in enumerate(zip(secrets, (600_000_000, 400_000_000), strict=True))
    ]
    first = [accept_open(secrets[i], FUNDING, opens[i], opens[1 - i]) for i in (0, 1)]
    signed = [
        step(secrets[i], first[i].state, first[1 - i].effects[-1].message)  # type: ignore[union-attr]
        for i in (0, 1)
    ]
    for t in signed:
        assert t.state.status is Status.OPEN
        assert any(isinstance(e, ChannelReady) for e in t.effects)
    _views_agree(signed[0].state, signed[1].state)


def test_payment_moves_exact_msat_from_payer_to_payee() -> None:
    pair = make_pair()
    pay(pair, pair.a, 12_345_678, 1, CLTV)
    _views_agree(pair.a.state, pair.b.state)
    assert channel_balances(pair.a.state).local_msat == 600_000_000 - 12_345_678
    assert channel_balances(pair.b.state).local_msat == 400_000_000 + 12_345_678


def test_failed_htlc_returns_to_the_offerer() -> None:
    pair = make_pair()
    htlc_id = add_committed(pair, pair.b, 7_000_000, 2, CLTV)
    pair.apply(pair.a, FailHtlc(htlc_id, b"no route"))
    pair.settle()
    balances = channel_balances(pair.b.state)
    assert (balances.local_msat, balances.remote_msat) == (400_000_000, 600_000_000)
    failed = [e for e in pair.b.notices if isinstance(e, OutgoingHtlcFailed)]
    assert [(e.htlc.id, e.reason) for e in failed] == [(htlc_id, b"no route")]


def test_several_htlcs_in_flight_in_both_directions() -> None:
    pair = make_pair()
    for n in range(3):
        pair.apply(pair.a, AddHtlc(1_000_000 * (n + 1), payment_hash(n), CLTV))
        pair.apply(pair.b, AddHtlc(2_000_000 * (n + 1), payment_hash(10 + n), CLTV + n))
    pair.settle()
    _views_agree(pair.a.state, pair.b.state)
    spec = pair.a.state.local_commit.spec  # type: ignore[union-attr]
    assert len(spec.offered()) == 3 and len(spec.received()) == 3
    assert spec.to_local_msat == 600_000_000 - 6_000_000
    assert spec.to_remote_msat == 400_000_000 - 12_000_000
    assert len(local_commitment(pair.a.state).htlc_vouts) == 6


def test_incoming_htlc_is_forwardable_only_once_irrevocably_committed() -> None:
    pair = make_pair()
    pair.apply(pair.a, AddHtlc(5_000_000, payment_hash(3), CLTV))
    pair.apply(pair.a, SignCommitment())
    pair.deliver_all()  # bob: add, commitment_signed -> revoke_and_ack; alice: revoke
    assert not [e for e in pair.b.notices if isinstance(e, IncomingHtlcCommitted)]
    pair.apply(pair.b, SignCommitment())
    pair.deliver(pair.a)  # alice revokes her old commitment
    assert not [e for e in pair.b.notices if isinstance(e, IncomingHtlcCommitted)]
    pair.deliver(pair.b)  # bob receives that revocation
    committed = [e for e in pair.b.notices if isinstance(e, IncomingHtlcCommitted)]
    assert [e.htlc.payment_hash for e in committed] == [payment_hash(3)]


def test_preimage_is_passed_upstream_as_soon_as_it_arrives() -> None:
    pair = make_pair()
    htlc_id = add_committed(pair, pair.a, 5_000_000, 4, CLTV)
    pair.apply(pair.b, FulfillHtlc(htlc_id, preimage(4)))
    pair.deliver(pair.a)
    fulfilled = [e for e in pair.a.notices if isinstance(e, OutgoingHtlcFulfilled)]
    assert [(e.htlc.id, e.preimage) for e in fulfilled] == [(htlc_id, preimage(4))]


def test_every_send_comes_after_the_state_is_persisted() -> None:
    pair = make_pair()
    t = pair.apply(pair.a, AddHtlc(5_000_000, payment_hash(5), CLTV))
    assert isinstance(t.effects[0], PersistState) and isinstance(t.effects[1], SendMessage)
    t = pair.apply(pair.a, SignCommitment())
    assert [type(e) for e in t.effects] == [PersistState, SendMessage]
    assert isinstance(t.effects[1], SendMessage)
    assert isinstance(t.effects[1].message, CommitmentSigned)
    pair.deliver(pair.b)
    t = pair.deliver(pair.b)  # commitment_signed -> revoke_and_ack
    assert t is not None and [type(e) for e in t.effects] == [PersistState, SendMessage]
    assert isinstance(t.effects[1], SendMessage)
    assert isinstance(t.effects[1].message, RevokeAndAck)
    t = pair.deliver(pair.a)  # the revocation: its row is stored before the state moves on
    assert t is not None and isinstance(t.effects[0], PersistRevokedCommitment)
    assert isinstance(t.effects[1], PersistState)


def test_revocation_rows_describe_each_revoked_remote_commitment() -> None:
    pair = make_pair()
    pay(pair, pair.a, 1_000_000, 6, CLTV)
    numbers = sorted(pair.a.revoked)
    assert numbers == list(range(pair.a.state.remote_commit.number))
    for number in numbers:
        assert pair.a.state.revocations.secret(number) == (
            pair.b.secrets.per_commitment_secret(number)
        )
    assert pair.a.state.revocations.secret(pair.a.state.remote_commit.number) is None


def test_nothing_to_sign_once_both_sides_are_settled() -> None:
    pair = make_pair()
    pay(pair, pair.b, 3_000_000, 7, CLTV)
    assert not has_changes_to_sign(pair.a.state) and not has_changes_to_sign(pair.b.state)
    assert channel_balances(pair.a.state).quiescent


def test_htlc_ids_keep_counting_after_settlement() -> None:
    pair = make_pair()
    pay(pair, pair.a, 1_000_000, 8, CLTV)
    t = pair.apply(pair.a, AddHtlc(1_000_000, payment_hash(9), CLTV))
    sent = t.effects[-1]
    assert isinstance(sent, SendMessage) and isinstance(sent.message, UpdateAddHtlc)
    assert sent.message.htlc.id == 1
