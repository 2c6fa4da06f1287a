"""Commitment and second-stage transactions: exact value, dust trimming, encoding, order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from superscalar.bitcoin.fees import DUST_P2TR
from superscalar.bitcoin.script import P2A_SCRIPT
from superscalar.channel.commitment import (
    Commitment,
    OutputKind,
    build_commitment,
    commitment_number_from_tx,
    obscuring_factor,
)
from superscalar.channel.config import ChannelConfig
from superscalar.channel.htlc import CommitmentSpec, Direction, Htlc, SpecHtlc
from superscalar.channel.keys import ChannelSecrets, CommitmentKeys
from superscalar.channel.scripts import funding_output

from .support import CONFIG, FUNDING, SEEDS, payment_hash

A, B = (ChannelSecrets.from_seed(s) for s in SEEDS)
KEYS = CommitmentKeys.derive(A.basepoints(), B.basepoints(), A.per_commitment_point(3))
FUNDING_SCRIPT = funding_output(A.funding.public_key, B.funding.public_key).script_pubkey
FACTOR = obscuring_factor(A.payment.public_key, B.payment.public_key)


def _spec(local: int, remote: int, htlcs: list[tuple[Direction, int, int]]) -> CommitmentSpec:
    items = tuple(
        SpecHtlc(d, Htlc(i, amount, payment_hash(i), 600 + i))
        for i, (d, amount, _) in enumerate(htlcs)
    )
    return CommitmentSpec(local, remote, items)


def _build(spec: CommitmentSpec, number: int = 3, config: ChannelConfig = CONFIG) -> Commitment:
    return build_commitment(FUNDING, FUNDING_SCRIPT, number, spec, KEYS, config, FACTOR)


htlc_lists = st.lists(
    st.tuples(st.sampled_from(Direction), st.integers(1, 50_000_000), st.just(0)), max_size=8
)


@settings(max_examples=60, deadline=None)
@given(htlc_lists, st.integers(0, 10**9))
def test_outputs_plus_anchor_equal_the_funding_amount_and_none_is_dust(
    htlcs: list[tuple[Direction, int, int]], split: int
) -> None:
    in_htlcs = sum(a for _, a, _ in htlcs)
    rest = FUNDING.amount_msat - in_htlcs
    if rest < 0:
        return
    local = split % (rest + 1)
    commitment = _build(_spec(local, rest - local, htlcs))
    assert commitment.tx.total_out == FUNDING.amount_sat  # zero fee, exactly
    for out in commitment.outputs:
        if out.kind is OutputKind.ANCHOR:
            assert out.txout.script_pubkey == P2A_SCRIPT
        else:
            assert out.txout.value >= CONFIG.dust_limit_sat >= DUST_P2TR


def test_trimmed_htlcs_and_msat_remainders_go_to_the_anchor() -> None:
    spec = _spec(
        599_000_500,
        395_670_500,
        [(Direction.OFFERED, 329_000, 0), (Direction.RECEIVED, 5_000_000, 0)],
    )
    commitment = _build(spec)
    kinds = [o.kind for o in commitment.outputs]
    assert kinds.count(OutputKind.OFFERED_HTLC) == 0  # 329 sat < 330 dust: trimmed
    assert kinds.count(OutputKind.RECEIVED_HTLC) == 1
    anchor = commitment.outputs[commitment.vout(OutputKind.ANCHOR) or 0].txout
    assert anchor.value == 329 + 1  # the trimmed HTLC, plus 500 + 500 msat of remainders


def test_dust_balance_is_dropped_into_the_anchor() -> None:
    commitment = _build(_spec(FUNDING.amount_msat - 329_999, 329_999, []))
    assert commitment.vout(OutputKind.TO_REMOTE) is None
    # the dropped to_remote (329.999 sat) plus to_local's 0.001 sat remainder
    assert commitment.outputs[commitment.vout(OutputKind.ANCHOR) or 0].txout.value == 330


@given(st.integers(0, (1 << 48) - 1))
def test_commitment_number_round_trips_through_locktime_and_sequence(number: int) -> None:
    commitment = _build(_spec(FUNDING.amount_msat, 0, []), number)
    tx = commitment.tx
    assert tx.locktime >> 24 == 0x20 and tx.inputs[0].sequence >> 24 == 0x80
    assert commitment_number_from_tx(tx, FACTOR) == number


def test_outputs_are_in_bip69_order_with_htlcs_tie_broken_by_cltv() -> None:
    spec = CommitmentSpec(
        570_000_000,
        400_000_000,
        tuple(
            SpecHtlc(Direction.OFFERED, Htlc(i, 10_000_000, payment_hash(9), 700 - i))
            for i in range(3)
        ),
    )
    commitment = _build(spec)
    keys = [(o.txout.value, o.txout.script_pubkey) for o in commitment.outputs]
    assert keys == sorted(keys)
    htlcs = [o.htlc for o in commitment.outputs if o.htlc is not None]
    assert [h.cltv_expiry for h in htlcs] == [698, 699, 700]


def test_commitment_is_a_zero_fee_truc_transaction() -> None:
    commitment = _build(_spec(FUNDING.amount_msat, 0, []))
    assert commitment.tx.version == 3
    assert commitment.tx.inputs[0].prevout == FUNDING.outpoint


def test_second_stage_txs_keep_the_htlc_value_and_carry_an_anchor() -> None:
    spec = _spec(
        500_000_000,
        480_000_000,
        [(Direction.OFFERED, 12_000_000, 0), (Direction.RECEIVED, 8_000_000, 0)],
    )
    commitment = _build(spec)
    for vout in commitment.htlc_vouts:
        out = commitment.outputs[vout]
        assert out.htlc is not None
        tx = commitment.second_stage_tx(vout)
        assert tx.version == 3 and tx.inputs[0].sequence == 1
        assert [o.value for o in tx.outputs] == [out.txout.value, 0]
        assert tx.outputs[1].script_pubkey == P2A_SCRIPT
        expected_lock = out.htlc.cltv_expiry if out.kind is OutputKind.OFFERED_HTLC else 0
        assert tx.locktime == expected_lock
