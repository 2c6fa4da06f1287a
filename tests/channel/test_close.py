"""Cooperative close and the balances a factory-level close pays out."""

from __future__ import annotations

from dataclasses import replace

import pytest

from superscalar.bitcoin.tx import TxOut
from superscalar.chain.consensus import verify_transaction
from superscalar.channel import (
    AddHtlc,
    BroadcastTransaction,
    ChannelClosed,
    ClosingComplete,
    FulfillHtlc,
    InitiateShutdown,
    InsufficientBalanceError,
    InvalidCommitmentSignatureError,
    LoopbackChannel,
    Status,
    UnexpectedMessageError,
    channel_balances,
    step,
)
from superscalar.crypto.musig import PartialSignature

from .support import (
    CLOSE_SCRIPTS,
    FUNDING,
    HEIGHT,
    add_committed,
    funding_script,
    make_pair,
    payment_hash,
    preimage,
)

CLTV = HEIGHT + 50


def _broadcasts(pair: LoopbackChannel) -> list[BroadcastTransaction]:
    return [e for s in (pair.a, pair.b) for e in s.notices if isinstance(e, BroadcastTransaction)]


def _intercept_closing_complete(pair: LoopbackChannel, fee: int = 1_000) -> ClosingComplete:
    pair.apply(pair.a, InitiateShutdown(fee_sat=fee))
    pair.deliver(pair.b)  # bob answers with his shutdown and nonce
    pair.deliver(pair.a)  # alice signs
    message = pair.b.inbox[0]
    assert isinstance(message, ClosingComplete)
    return message


def test_both_sides_end_with_the_same_valid_closing_transaction() -> None:
    pair = make_pair()
    pair.apply(pair.a, InitiateShutdown(fee_sat=1_000))
    pair.deliver_all()
    closes = _broadcasts(pair)
    assert len(closes) == 2 and closes[0].tx == closes[1].tx
    tx = closes[0].tx
    verify_transaction(tx, [TxOut(FUNDING.amount_sat, funding_script())])
    outputs = {o.script_pubkey: o.value for o in tx.outputs}
    assert outputs == {CLOSE_SCRIPTS[0]: 600_000 - 1_000, CLOSE_SCRIPTS[1]: 400_000}
    assert pair.a.state.status is Status.CLOSED and pair.b.state.status is Status.CLOSED
    assert all(
        any(isinstance(e, ChannelClosed) and e.cooperative for e in s.notices)
        for s in (pair.a, pair.b)
    )


def test_close_waits_until_every_htlc_is_resolved() -> None:
    pair = make_pair()
    htlc_id = add_committed(pair, pair.a, 10_000_000, 1, CLTV)
    pair.apply(pair.a, InitiateShutdown(fee_sat=1_000))
    pair.deliver_all()
    assert _broadcasts(pair) == []
    assert not channel_balances(pair.a.state).quiescent
    pair.apply(pair.b, FulfillHtlc(htlc_id, preimage(1)))
    pair.settle()
    closes = _broadcasts(pair)
    assert len(closes) == 2
    outputs = {o.script_pubkey: o.value for o in closes[0].tx.outputs}
    assert outputs == {CLOSE_SCRIPTS[0]: 590_000 - 1_000, CLOSE_SCRIPTS[1]: 410_000}


def test_close_completes_when_the_closer_settles_the_last_htlc() -> None:
    pair = make_pair()
    htlc_id = add_committed(pair, pair.b, 10_000_000, 2, CLTV)
    pair.apply(pair.a, InitiateShutdown(fee_sat=1_000))
    pair.deliver_all()
    pair.apply(pair.a, FulfillHtlc(htlc_id, preimage(2)))
    pair.settle()
    closes = _broadcasts(pair)
    assert len(closes) == 2 and closes[0].tx == closes[1].tx
    outputs = {o.script_pubkey: o.value for o in closes[0].tx.outputs}
    assert outputs == {CLOSE_SCRIPTS[0]: 610_000 - 1_000, CLOSE_SCRIPTS[1]: 390_000}


def test_dust_output_is_left_out_of_the_closing_transaction() -> None:
    pair = make_pair(balances=(999_700_000, 300_000))
    pair.apply(pair.a, InitiateShutdown(fee_sat=500))
    pair.deliver_all()
    (tx,) = {c.tx for c in _broadcasts(pair)}
    assert [(o.script_pubkey, o.value) for o in tx.outputs] == [(CLOSE_SCRIPTS[0], 999_200)]


def test_forged_closing_signature_is_refused_and_state_kept() -> None:
    pair = make_pair()
    good = _intercept_closing_complete(pair)
    before = pair.b.state
    snapshot = repr(before)
    with pytest.raises(InvalidCommitmentSignatureError):
        step(
            pair.b.secrets, before, replace(good, partial_sig=PartialSignature(bytes(31) + b"\x05"))
        )
    assert pair.b.state is before and repr(before) == snapshot
    pair.deliver_all()
    assert len(_broadcasts(pair)) == 2


def test_closer_fee_above_its_balance_is_refused() -> None:
    pair = make_pair()
    good = _intercept_closing_complete(pair)
    with pytest.raises(InsufficientBalanceError):
        step(pair.b.secrets, pair.b.state, replace(good, fee_sat=600_001))


def test_no_updates_after_the_channel_closed() -> None:
    pair = make_pair()
    pair.apply(pair.a, InitiateShutdown(fee_sat=1_000))
    pair.deliver_all()
    with pytest.raises(UnexpectedMessageError):
        step(pair.a.secrets, pair.a.state, AddHtlc(1_000_000, payment_hash(1), CLTV))


def test_balances_for_a_factory_close_are_exact_and_quiescent() -> None:
    pair = make_pair(balances=(600_000_999, 399_999_001))
    balances = channel_balances(pair.b.state)
    assert balances.quiescent
    assert (balances.local_msat, balances.remote_msat) == (399_999_001, 600_000_999)
    assert (balances.local_sat, balances.remote_sat) == (399_999, 600_000)
