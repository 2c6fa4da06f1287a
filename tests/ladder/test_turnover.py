"""PTLC key turnover: the client's completed signature hands the LSP its factory key."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from superscalar.crypto.adaptor import AdaptorSignature
from superscalar.crypto.keys import CURVE_ORDER, SecretKey
from superscalar.ladder import (
    ClientStage,
    ClientTurnover,
    LspStage,
    LspTurnover,
    TurnoverContext,
    TurnoverError,
    client_step,
    complete_turnover,
    extract_turnover_key,
    factory_key,
    lsp_step,
    presign_turnover,
)
from superscalar.ladder.turnover import (
    Deferred,
    KeyRecovered,
    PresigReceived,
    ReadinessChanged,
    RefusalReceived,
    Refuse,
    Rejected,
    SendPresig,
    SendSignature,
    SignatureReceived,
)

OLD, NEW = hashlib.sha256(b"f0").digest(), hashlib.sha256(b"f1").digest()
LSP = SecretKey(hashlib.sha256(b"lsp").digest())
NODE = SecretKey(hashlib.sha256(b"alice-node").digest())


def _odd_key() -> SecretKey:
    """A factory key whose public point has odd y (the BIP340 negation case)."""
    rung = 0
    while factory_key(NODE, rung).public_key.has_even_y:
        rung += 1
    return factory_key(NODE, rung)


CLIENT = factory_key(NODE, 0)


def ctx(client: SecretKey = CLIENT) -> TurnoverContext:
    return TurnoverContext(OLD, NEW, client.public_key, LSP.public_key)


@pytest.mark.parametrize("client", [CLIENT, _odd_key()], ids=["first-rung", "odd-y-key"])
def test_completed_presignature_reveals_exactly_the_client_factory_key(client: SecretKey) -> None:
    c = ctx(client)
    presig = presign_turnover(LSP, c)
    sig = complete_turnover(client, c, presig)
    assert extract_turnover_key(c, presig, sig) == client


def test_factory_keys_differ_per_rung_and_from_the_node_key() -> None:
    keys = {factory_key(NODE, r).to_bytes() for r in range(4)}
    assert len(keys) == 4
    assert NODE.to_bytes() not in keys


def test_a_tampered_presignature_is_refused_by_the_client() -> None:
    c = ctx()
    presig = presign_turnover(LSP, c)
    bad = AdaptorSignature(presig.nonce, (presig.s + 1) % CURVE_ORDER)
    with pytest.raises(TurnoverError, match="does not verify"):
        complete_turnover(CLIENT, c, bad)


def test_a_presignature_for_another_factory_pair_is_refused() -> None:
    presig = presign_turnover(LSP, ctx())
    other = replace(ctx(), new_factory=hashlib.sha256(b"f9").digest())
    with pytest.raises(TurnoverError, match="does not verify"):
        complete_turnover(CLIENT, other, presig)


def test_a_completion_with_the_wrong_key_is_refused_by_the_lsp() -> None:
    c = ctx()
    presig = presign_turnover(LSP, c)
    wrong = factory_key(NODE, 1)
    forged = presig.nonce.data[1:] + (
        (presig.s + presig.sign * wrong.to_int()) % CURVE_ORDER
    ).to_bytes(32, "big")
    with pytest.raises(TurnoverError):
        extract_turnover_key(c, presig, forged)


def test_the_lsp_cannot_presign_with_a_key_other_than_its_own() -> None:
    with pytest.raises(TurnoverError):
        presign_turnover(CLIENT, ctx())


def test_a_turnover_to_the_same_factory_is_refused() -> None:
    with pytest.raises(TurnoverError):
        TurnoverContext(OLD, OLD, CLIENT.public_key, LSP.public_key)


# -- the two state machines --------------------------------------------------------------


def _presigned() -> LspTurnover:
    t = lsp_step(LSP, LspTurnover(ctx()), ReadinessChanged(moved=True, pending_htlcs=0))
    assert t.state.stage is LspStage.PRESIGNED
    return t.state


def test_lsp_waits_until_the_client_balance_is_in_the_new_factory() -> None:
    t = lsp_step(LSP, LspTurnover(ctx()), ReadinessChanged(moved=False, pending_htlcs=0))
    assert t.state.stage is LspStage.WAITING
    assert isinstance(t.effects[0], Deferred)


def test_lsp_waits_while_an_old_factory_htlc_is_pending() -> None:
    t = lsp_step(LSP, LspTurnover(ctx()), ReadinessChanged(moved=True, pending_htlcs=1))
    assert t.state.stage is LspStage.WAITING
    assert t.effects == (Deferred("1 HTLC(s) still pending in the old factory"),)


def test_happy_path_through_both_state_machines_ends_with_the_key_at_the_lsp() -> None:
    lsp_t = lsp_step(LSP, LspTurnover(ctx()), ReadinessChanged(moved=True, pending_htlcs=0))
    (send,) = lsp_t.effects
    assert isinstance(send, SendPresig)
    c = client_step(CLIENT, ClientTurnover(OLD), PresigReceived(ctx(), send.presig, True, 0))
    assert c.state == ClientTurnover(OLD, ClientStage.HANDED_OVER, NEW)
    (reply,) = c.effects
    assert isinstance(reply, SendSignature)
    done = lsp_step(LSP, lsp_t.state, SignatureReceived(reply.signature))
    assert done.state.stage is LspStage.DONE
    assert done.effects == (KeyRecovered(CLIENT),)
    assert done.state.secret == CLIENT


def test_client_refuses_while_its_balance_is_not_yet_moved() -> None:
    presig = _presigned().presig
    assert presig is not None
    c = client_step(CLIENT, ClientTurnover(OLD), PresigReceived(ctx(), presig, False, 0))
    assert c.state.stage is ClientStage.HOLDING
    assert isinstance(c.effects[0], Refuse)


def test_client_refuses_while_an_old_htlc_is_pending() -> None:
    presig = _presigned().presig
    assert presig is not None
    c = client_step(CLIENT, ClientTurnover(OLD), PresigReceived(ctx(), presig, True, 3))
    assert c.effects == (Refuse("3 HTLC(s) still pending in the old factory"),)


def test_an_unwilling_client_refuses_and_the_lsp_records_it() -> None:
    state = _presigned()
    assert state.presig is not None
    c = client_step(
        CLIENT, ClientTurnover(OLD), PresigReceived(ctx(), state.presig, True, 0, willing=False)
    )
    (refuse,) = c.effects
    assert isinstance(refuse, Refuse)
    t = lsp_step(LSP, state, RefusalReceived(refuse.reason))
    assert t.state.stage is LspStage.REFUSED
    assert t.state.reason == "client declines key turnover"


def test_client_refuses_a_turnover_of_a_factory_it_is_not_in() -> None:
    state = _presigned()
    assert state.presig is not None
    elsewhere = ClientTurnover(hashlib.sha256(b"other").digest())
    c = client_step(CLIENT, elsewhere, PresigReceived(ctx(), state.presig, True, 0))
    assert c.effects == (Refuse("turnover names another factory"),)


def test_lsp_rejects_a_bad_signature_and_keeps_waiting_for_a_good_one() -> None:
    state = _presigned()
    t = lsp_step(LSP, state, SignatureReceived(bytes(64)))
    assert t.state == state
    assert isinstance(t.effects[0], Rejected)


def test_a_repeated_presig_after_handover_is_answered_again() -> None:
    """A crash between persisting HANDED_OVER and sending: the resent request gets the sig."""
    state = _presigned()
    assert state.presig is not None
    first = client_step(CLIENT, ClientTurnover(OLD), PresigReceived(ctx(), state.presig, True, 0))
    again = client_step(CLIENT, first.state, PresigReceived(ctx(), state.presig, True, 0))
    assert again.effects == first.effects


def test_lsp_resends_the_same_presignature_when_asked_again() -> None:
    state = _presigned()
    t = lsp_step(LSP, state, ReadinessChanged(moved=True, pending_htlcs=0))
    assert t.state == state
    assert t.effects == (SendPresig(state.presig),)  # type: ignore[arg-type]


def test_after_a_refusal_the_lsp_may_ask_again_with_a_fresh_presignature() -> None:
    refused = lsp_step(LSP, _presigned(), RefusalReceived("busy")).state
    assert refused.stage is LspStage.REFUSED
    again = lsp_step(LSP, refused, ReadinessChanged(moved=True, pending_htlcs=0))
    assert again.state.stage is LspStage.PRESIGNED
    assert isinstance(again.effects[0], SendPresig)
