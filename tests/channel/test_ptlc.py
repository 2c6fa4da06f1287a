"""PTLCs in the channel core: a point lock settled by its scalar, adaptor signatures
in commitment_signed and revoke_and_ack, and the receiver's rule never to reveal the
scalar before it can claim the PTLC from every unrevoked commitment of the offerer's."""

from __future__ import annotations

from dataclasses import replace

import pytest

from superscalar.channel import (
    AddHtlc,
    FailHtlc,
    FulfillHtlc,
    IncomingHtlcCommitted,
    LoopbackChannel,
    OutgoingHtlcFailed,
    OutgoingHtlcFulfilled,
    Reestablish,
    RevokeAndAck,
    Side,
    SignCommitment,
    local_commitment,
    remote_commitment,
    step,
)
from superscalar.channel.commitment import OutputKind
from superscalar.channel.errors import (
    BadPreimageError,
    InvalidHtlcSignatureError,
    UnexpectedMessageError,
)
from superscalar.channel.htlc import (
    Htlc,
    UpdateAddHtlc,
    UpdateFulfillHtlc,
    check_preimage,
    ptlc_payment_hash,
)
from superscalar.channel.messages import CommitmentSigned
from superscalar.crypto import adaptor, schnorr
from superscalar.crypto.adaptor import AdaptorSignature
from superscalar.crypto.keys import CURVE_ORDER, PublicKey, SecretKey
from superscalar.node.chancodec import decode_message, decode_state, encode_message, encode_state

from .support import HEIGHT, make_pair, payment_hash

CLTV = HEIGHT + 50
AMOUNT = 40_000_000


def _odd_key() -> SecretKey:
    """A key whose point has odd y: the scalar must match the full point, parity kept."""
    n = 7
    while SecretKey.from_int(n).public_key.has_even_y:
        n += 1
    return SecretKey.from_int(n)


SECRET = _odd_key()
POINT = SECRET.public_key


def add_ptlc(pair: LoopbackChannel, sender: Side, point: PublicKey = POINT) -> int:
    pair.apply(sender, AddHtlc(AMOUNT, ptlc_payment_hash(point), CLTV, point=point))
    pair.settle()
    committed = [e for e in pair.other(sender).notices if isinstance(e, IncomingHtlcCommitted)]
    return committed[-1].htlc.id


def test_a_ptlcs_payment_hash_must_be_the_id_bound_to_its_point() -> None:
    with pytest.raises(ValueError, match="ptlc_payment_hash"):
        Htlc(0, AMOUNT, payment_hash(1), CLTV, point=POINT)
    assert Htlc(0, AMOUNT, ptlc_payment_hash(POINT), CLTV, point=POINT).is_ptlc


def test_only_the_scalar_of_the_exact_point_opens_a_ptlc() -> None:
    htlc = Htlc(0, AMOUNT, ptlc_payment_hash(POINT), CLTV, point=POINT)
    check_preimage(htlc, SECRET.to_bytes())
    negated = SecretKey.from_int(CURVE_ORDER - SECRET.to_int())  # same x, other parity
    for wrong in (negated.to_bytes(), SecretKey.from_int(5).to_bytes(), bytes(32), b"\x01" * 31):
        with pytest.raises(BadPreimageError):
            check_preimage(htlc, wrong)


def test_a_committed_ptlc_reaches_the_receiver_with_its_point() -> None:
    pair = make_pair()
    ptlc_id = add_ptlc(pair, pair.a)
    (incoming,) = [e for e in pair.b.notices if isinstance(e, IncomingHtlcCommitted)]
    assert incoming.htlc.id == ptlc_id and incoming.htlc.point == POINT
    kinds = {o.kind for o in local_commitment(pair.b.state).outputs}
    assert OutputKind.RECEIVED_HTLC in kinds


def test_commitment_signed_carries_an_adaptor_signature_for_the_ptlc_success_tx() -> None:
    pair = make_pair()
    add_ptlc(pair, pair.a)
    commitment = local_commitment(pair.b.state)
    lc = pair.b.state.local_commit
    assert lc is not None
    (vout,) = commitment.htlc_vouts
    (sig,) = lc.htlc_signatures
    sighash = commitment.second_stage_sighash(vout)
    key = commitment.keys.remote_htlc.xonly()
    presig = AdaptorSignature.from_bytes(sig)
    assert adaptor.verify_presignature(key, sighash, POINT, presig)
    assert not schnorr.verify(key, sighash, sig[1:])  # useless without the scalar
    assert schnorr.verify(key, sighash, adaptor.adapt(presig, SECRET))


def test_revoke_and_ack_carries_the_offerers_claim_adaptor_signature() -> None:
    pair = make_pair()
    add_ptlc(pair, pair.a)
    theirs = remote_commitment(pair.b.state)  # alice's commitment, seen by bob
    (vout,) = theirs.ptlc_claim_vouts
    (sig,) = pair.b.state.remote_commit.ptlc_claim_signatures
    presig = AdaptorSignature.from_bytes(sig)
    key = theirs.keys.local_htlc.xonly()
    assert adaptor.verify_presignature(key, theirs.ptlc_claim_sighash(vout), POINT, presig)


def test_fulfilling_with_the_scalar_pays_the_receiver_and_hands_the_offerer_the_scalar() -> None:
    pair = make_pair()
    ptlc_id = add_ptlc(pair, pair.a)
    pair.apply(pair.b, FulfillHtlc(ptlc_id, SECRET.to_bytes()))
    pair.settle()
    (done,) = [e for e in pair.a.notices if isinstance(e, OutgoingHtlcFulfilled)]
    assert done.preimage == SECRET.to_bytes() and SecretKey(done.preimage).public_key == POINT
    lc = pair.b.state.local_commit
    assert lc is not None and not lc.spec.htlcs
    assert lc.spec.to_local_msat == 400_000_000 + AMOUNT


def test_failing_a_ptlc_returns_it_to_the_offerer() -> None:
    pair = make_pair()
    ptlc_id = add_ptlc(pair, pair.a)
    pair.apply(pair.b, FailHtlc(ptlc_id))
    pair.settle()
    assert [e.htlc.id for e in pair.a.notices if isinstance(e, OutgoingHtlcFailed)] == [ptlc_id]
    lc = pair.a.state.local_commit
    assert lc is not None and lc.spec.to_local_msat == 600_000_000


def test_the_receiver_refuses_to_fulfil_with_a_wrong_scalar() -> None:
    pair = make_pair()
    ptlc_id = add_ptlc(pair, pair.a)
    before = pair.b.state
    with pytest.raises(BadPreimageError):
        pair.apply(pair.b, FulfillHtlc(ptlc_id, SecretKey.from_int(5).to_bytes()))
    assert pair.b.state is before


def test_the_offerer_refuses_a_fulfil_with_a_wrong_scalar() -> None:
    pair = make_pair()
    ptlc_id = add_ptlc(pair, pair.a)
    wrong = SecretKey.from_int(CURVE_ORDER - SECRET.to_int()).to_bytes()  # parity flipped
    with pytest.raises(BadPreimageError):
        step(pair.a.secrets, pair.a.state, UpdateFulfillHtlc(ptlc_id, wrong))


def test_the_receiver_waits_for_the_claim_signature_of_the_offerers_newest_commitment() -> None:
    pair = make_pair()
    ptlc_id = add_ptlc(pair, pair.a)
    pair.apply(pair.b, AddHtlc(1_000_000, payment_hash(9), CLTV))
    pair.apply(pair.b, SignCommitment())  # alice's next commitment holds the PTLC, unrevoked
    with pytest.raises(UnexpectedMessageError, match="revoke_and_ack"):
        pair.apply(pair.b, FulfillHtlc(ptlc_id, SECRET.to_bytes()))
    pair.settle()
    pair.apply(pair.b, FulfillHtlc(ptlc_id, SECRET.to_bytes()))
    pair.settle()
    assert any(isinstance(e, OutgoingHtlcFulfilled) for e in pair.a.notices)


def _until_raa_for_bob(pair: LoopbackChannel) -> RevokeAndAck:
    """Add a PTLC from alice and run the flow until alice's revoke_and_ack for its new
    commitment (the one with the claim signature) waits in bob's inbox."""
    pair.apply(pair.a, AddHtlc(AMOUNT, ptlc_payment_hash(POINT), CLTV, point=POINT))
    pair.apply(pair.a, SignCommitment())
    pair.deliver_all()  # bob revokes; bob's side now has alice's add acked
    pair.apply(pair.b, SignCommitment())
    pair.deliver(pair.a)  # alice gets bob's commitment_signed, answers revoke_and_ack
    raa = pair.b.inbox[0]
    assert isinstance(raa, RevokeAndAck) and len(raa.ptlc_claim_signatures) == 1
    return raa


def test_a_revoke_and_ack_with_a_bad_claim_signature_is_refused() -> None:
    pair = make_pair()
    raa = _until_raa_for_bob(pair)
    sig = raa.ptlc_claim_signatures[0]
    forged = sig[:33] + ((int.from_bytes(sig[33:], "big") + 1) % CURVE_ORDER).to_bytes(32, "big")
    before = pair.b.state
    for bad in ((forged,), (), (sig, sig)):
        with pytest.raises(InvalidHtlcSignatureError):
            step(pair.b.secrets, before, replace(raa, ptlc_claim_signatures=bad))
    assert pair.b.state is before


def test_a_plain_signature_in_place_of_the_adaptor_signature_is_refused() -> None:
    pair = make_pair()
    pair.apply(pair.a, AddHtlc(AMOUNT, ptlc_payment_hash(POINT), CLTV, point=POINT))
    pair.apply(pair.a, SignCommitment())
    signed = pair.b.inbox.pop()
    assert isinstance(signed, CommitmentSigned)
    (sig,) = signed.htlc_signatures
    assert len(sig) == 65
    pair.deliver_all()
    for bad in (sig[1:], bytes(65)):
        with pytest.raises(InvalidHtlcSignatureError):
            step(pair.b.secrets, pair.b.state, replace(signed, htlc_signatures=(bad,)))


def test_a_channel_state_with_a_ptlc_survives_the_state_codec() -> None:
    pair = make_pair()
    add_ptlc(pair, pair.a)
    for state in (pair.a.state, pair.b.state):
        assert decode_state(encode_state(state)) == state
    assert pair.b.state.remote_commit.ptlc_claim_signatures


def test_a_lost_revoke_and_ack_is_resent_with_the_same_claim_signature() -> None:
    pair = make_pair()
    raa = _until_raa_for_bob(pair)
    pair.a.inbox.clear()
    pair.b.inbox.clear()  # the revoke_and_ack with the claim signature is lost
    assert not pair.b.state.remote_commit.ptlc_claim_signatures
    pair.apply(pair.a, Reestablish())
    pair.apply(pair.b, Reestablish())
    pair.settle()
    assert pair.b.state.remote_commit.ptlc_claim_signatures == raa.ptlc_claim_signatures
    (incoming,) = [e for e in pair.b.notices if isinstance(e, IncomingHtlcCommitted)]
    pair.apply(pair.b, FulfillHtlc(incoming.htlc.id, SECRET.to_bytes()))
    pair.settle()
    assert any(isinstance(e, OutgoingHtlcFulfilled) for e in pair.a.notices)


def test_a_peers_ptlc_add_with_a_hash_not_bound_to_its_point_is_refused_at_decode() -> None:
    msg = UpdateAddHtlc(Htlc(0, AMOUNT, ptlc_payment_hash(POINT), CLTV, point=POINT))
    assert decode_message(encode_message(msg)) == msg
    forged = encode_message(msg).replace(ptlc_payment_hash(POINT).hex(), payment_hash(1).hex())
    with pytest.raises(ValueError, match="ptlc_payment_hash"):
        decode_message(forged)
