"""Feerates, dust thresholds (as Bitcoin Core computes them) and fee arithmetic."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from superscalar.bitcoin.fees import (
    DUST_P2TR,
    DUST_P2WPKH,
    DUST_P2WSH,
    FeeError,
    Feerate,
    dust_limit,
    dust_threshold,
    fee_for_vsize,
    fee_from_values,
    is_dust,
    transaction_fee,
)
from superscalar.bitcoin.script import (
    P2A_SCRIPT,
    op_return_script,
    p2tr_script,
    p2wpkh_script,
    p2wsh_script,
)
from superscalar.bitcoin.tx import MAX_MONEY, AmountError, OutPoint, Transaction, TxIn, TxOut

P2WPKH = p2wpkh_script(bytes(20))
P2WSH = p2wsh_script(b"\x51")
P2TR = p2tr_script(bytes(32))
P2PKH = bytes.fromhex("76a914" + "00" * 20 + "88ac")
P2SH = bytes.fromhex("a914" + "00" * 20 + "87")


# -- dust: Bitcoin Core's GetDustThreshold at the default 3 sat/vB dust relay fee ---------------


@pytest.mark.parametrize(
    ("script", "threshold"),
    [
        (P2WPKH, 294),
        (P2WSH, 330),
        (P2TR, 330),
        (P2A_SCRIPT, 240),
        (P2PKH, 546),
        (P2SH, 540),
    ],
    ids=["p2wpkh", "p2wsh", "p2tr", "p2a", "p2pkh", "p2sh"],
)
def test_dust_threshold_equals_bitcoin_cores(script: bytes, threshold: int) -> None:
    assert dust_threshold(script) == threshold


def test_named_dust_constants_match_the_computed_thresholds() -> None:
    computed = (dust_threshold(P2WPKH), dust_threshold(P2WSH), dust_threshold(P2TR))
    assert computed == (DUST_P2WPKH, DUST_P2WSH, DUST_P2TR)


def test_unspendable_outputs_have_no_dust_threshold() -> None:
    assert dust_threshold(op_return_script(b"x")) == 0
    assert dust_threshold(b"\x51" * 10_001) == 0  # above MAX_SCRIPT_SIZE


def test_dust_threshold_scales_with_the_relay_feerate() -> None:
    assert dust_threshold(P2TR, 1000) == 110  # (43 + 67) vbytes at 1 sat/vB


def test_p2a_anchor_may_carry_zero_sat() -> None:
    assert dust_limit(P2A_SCRIPT) == 0
    assert not is_dust(TxOut(0, P2A_SCRIPT))


@pytest.mark.parametrize(("value", "dust"), [(329, True), (330, False)])
def test_output_below_its_threshold_is_dust(value: int, dust: bool) -> None:
    assert is_dust(TxOut(value, P2TR)) is dust


# -- feerates ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sat_per_kvb", "vsize", "fee"),
    [(1000, 141, 141), (1500, 3, 5), (1, 1, 1), (1, 1000, 1), (1, 1001, 2), (0, 500, 0)],
)
def test_fee_rounds_up_to_a_whole_satoshi(sat_per_kvb: int, vsize: int, fee: int) -> None:
    assert Feerate(sat_per_kvb).fee_for_vsize(vsize) == fee
    assert fee_for_vsize(Feerate(sat_per_kvb), vsize) == fee


@given(st.integers(min_value=0, max_value=10**7), st.integers(min_value=0, max_value=10**6))
def test_fee_never_pays_below_the_feerate(sat_per_kvb: int, vsize: int) -> None:
    fee = Feerate(sat_per_kvb).fee_for_vsize(vsize)
    assert fee * 1000 >= sat_per_kvb * vsize
    assert (fee - 1) * 1000 < sat_per_kvb * vsize or fee == 0


def test_fee_for_weight_charges_whole_vbytes() -> None:
    assert Feerate(1000).fee_for_weight(401) == 101
    assert Feerate(1000).fee_for_weight(400) == 100


def test_lightning_sat_per_kw_converts_to_sat_per_kvb() -> None:
    assert Feerate.from_sat_per_kw(253) == Feerate(1012)


def test_sat_per_vb_converts_to_sat_per_kvb() -> None:
    assert Feerate.from_sat_per_vb(2) == Feerate(2000)


def test_fee_for_tx_uses_its_vsize() -> None:
    tx = Transaction(
        2,
        (TxIn(OutPoint(bytes(32), 0), b"", 0, (b"\x01" * 65,)),),
        (TxOut(1000, P2TR),),
    )
    assert Feerate(2000).fee_for_tx(tx) == 2 * tx.vsize


@pytest.mark.parametrize("rate", [-1, MAX_MONEY + 1])
def test_feerate_out_of_range_is_refused(rate: int) -> None:
    with pytest.raises(FeeError):
        Feerate(rate)


@pytest.mark.parametrize("vsize", [-1, 1.5, True])
def test_fee_for_a_bad_size_is_refused(vsize: int) -> None:
    with pytest.raises(FeeError):
        Feerate(1000).fee_for_vsize(vsize)


def test_feerates_order_by_rate() -> None:
    assert Feerate(1000) < Feerate(1001)


# -- fee arithmetic -------------------------------------------------------------------------------


def _tx(*values: int) -> Transaction:
    return Transaction(
        2,
        (TxIn(OutPoint(bytes(32), 0)), TxIn(OutPoint(bytes(32), 1))),
        tuple(TxOut(v, P2TR) for v in values),
    )


def test_transaction_fee_is_inputs_minus_outputs() -> None:
    assert transaction_fee(_tx(600, 300), [500, 500]) == 100


def test_transaction_fee_can_be_zero() -> None:
    assert transaction_fee(_tx(1000), [400, 600]) == 0


def test_outputs_exceeding_inputs_are_refused() -> None:
    with pytest.raises(FeeError, match="exceed"):
        transaction_fee(_tx(1001), [400, 600])


def test_one_spent_value_per_input_is_required() -> None:
    with pytest.raises(FeeError, match="2 inputs but 1"):
        transaction_fee(_tx(1), [1000])


@pytest.mark.parametrize("bad", [-1, MAX_MONEY + 1, True])
def test_spent_values_must_be_amounts(bad: int) -> None:
    with pytest.raises(AmountError):
        fee_from_values([bad], [])
