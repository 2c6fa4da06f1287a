"""The client's close verdict (`node.closing`): only the chain disarms a safety net."""

from __future__ import annotations

import pytest

from superscalar.node.closing import (
    ChainView,
    CloseVerdict,
    Closing,
    SignedClose,
    close_verdict,
    closing_status,
)

A = SignedClose("aa" * 32, "ff" * 32, 0)
B = SignedClose("bb" * 32, "ee" * 32, 0)
SIGNED = Closing().with_pending(A).with_signed(A, 100)


def test_nothing_signed_decides_nothing() -> None:
    pending = Closing().with_pending(A)
    view = ChainView(10_000, A.txid, inputs_spent=True)
    assert close_verdict(pending, view, 6) is CloseVerdict.WAIT
    assert close_verdict(Closing(), view, 6) is CloseVerdict.WAIT


def test_a_close_we_signed_confirmed_closes() -> None:
    assert close_verdict(SIGNED, ChainView(101, A.txid, True), 6) is CloseVerdict.CONFIRMED


def test_another_confirmed_txid_is_not_our_close() -> None:
    assert close_verdict(SIGNED, ChainView(101, B.txid, False), 6) is CloseVerdict.WAIT


def test_input_spent_by_something_else_abandons() -> None:
    assert close_verdict(SIGNED, ChainView(101, None, True), 6) is CloseVerdict.ABANDONED


@pytest.mark.parametrize(("height", "verdict"), [(105, "wait"), (106, "exit"), (500, "exit")])
def test_unconfirmed_past_the_deadline_exits(height: int, verdict: str) -> None:
    assert close_verdict(SIGNED, ChainView(height, None, False), 6) == verdict


def test_a_re_signed_close_keeps_the_first_deadline_and_both_txids() -> None:
    again = SIGNED.with_pending(B).with_signed(B, 120)
    assert again.signed == (A, B) and again.signed_height == 100 and again.pending is None
    assert close_verdict(again, ChainView(103, B.txid, False), 6) is CloseVerdict.CONFIRMED
    assert Closing.from_json(again.to_json()) == again
    pending = again.with_pending(A)
    assert Closing.from_json(pending.to_json()) == pending


def test_status_shows_the_exit_height() -> None:
    assert closing_status(None, 6) is None
    status = closing_status(SIGNED, 6)
    assert status is not None
    assert status["signed_txids"] == [A.txid] and status["exit_height"] == 106
