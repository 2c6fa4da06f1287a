"""Applying updates to a commitment spec: adds first, then settlements, exact msat."""

from __future__ import annotations

import pytest

from superscalar.channel.errors import (
    BadPreimageError,
    InsufficientBalanceError,
    UnknownHtlcError,
)
from superscalar.channel.htlc import (
    CommitmentSpec,
    Direction,
    Htlc,
    SpecHtlc,
    UpdateAddHtlc,
    UpdateFailHtlc,
    UpdateFulfillHtlc,
    check_preimage,
    reduce,
)

from .support import payment_hash, preimage

SPEC = CommitmentSpec(700_000, 300_000)


def _htlc(htlc_id: int, amount: int = 100_000) -> Htlc:
    return Htlc(htlc_id, amount, payment_hash(htlc_id), 500)


def test_holders_add_moves_its_balance_into_an_offered_htlc() -> None:
    out = reduce(SPEC, [UpdateAddHtlc(_htlc(0))], [])
    assert out == CommitmentSpec(600_000, 300_000, (SpecHtlc(Direction.OFFERED, _htlc(0)),))


def test_peers_add_moves_its_balance_into_a_received_htlc() -> None:
    out = reduce(SPEC, [], [UpdateAddHtlc(_htlc(0))])
    assert out == CommitmentSpec(700_000, 200_000, (SpecHtlc(Direction.RECEIVED, _htlc(0)),))


def test_fulfill_pays_the_receiver_and_fail_refunds_the_offerer() -> None:
    both = reduce(SPEC, [UpdateAddHtlc(_htlc(0))], [UpdateAddHtlc(_htlc(0))])
    fulfilled = reduce(both, [UpdateFulfillHtlc(0, preimage(0))], [UpdateFulfillHtlc(0, b"")])
    assert (fulfilled.to_local_msat, fulfilled.to_remote_msat) == (700_000, 300_000)
    failed = reduce(both, [UpdateFailHtlc(0)], [UpdateFailHtlc(0)])
    assert (failed.to_local_msat, failed.to_remote_msat) == (700_000, 300_000)
    offered = reduce(SPEC, [UpdateAddHtlc(_htlc(0))], [])
    paid_out = reduce(offered, [], [UpdateFulfillHtlc(0, b"")])
    assert paid_out == CommitmentSpec(600_000, 400_000)


def test_adds_apply_before_settlements_in_one_batch() -> None:
    out = reduce(SPEC, [UpdateFulfillHtlc(7, b"")], [UpdateAddHtlc(_htlc(7))])
    assert out == SPEC.__class__(800_000, 200_000)


def test_settling_an_unknown_htlc_raises() -> None:
    with pytest.raises(UnknownHtlcError):
        reduce(SPEC, [UpdateFailHtlc(3)], [])


def test_an_add_the_offerer_cannot_pay_raises() -> None:
    with pytest.raises(InsufficientBalanceError):
        reduce(SPEC, [], [UpdateAddHtlc(_htlc(0, 300_001))])


def test_reduce_leaves_its_input_untouched() -> None:
    before = repr(SPEC)
    reduce(SPEC, [UpdateAddHtlc(_htlc(0))], [UpdateAddHtlc(_htlc(0))])
    assert repr(SPEC) == before


def test_mirror_swaps_sides_and_directions() -> None:
    spec = reduce(SPEC, [UpdateAddHtlc(_htlc(0))], [])
    mirrored = spec.mirror()
    assert mirrored.to_local_msat == spec.to_remote_msat
    assert mirrored.htlcs == (SpecHtlc(Direction.RECEIVED, _htlc(0)),)
    assert mirrored.mirror() == spec
    assert mirrored.total_msat == spec.total_msat == 1_000_000


def test_preimage_check_accepts_only_the_hash_preimage() -> None:
    check_preimage(_htlc(1), preimage(1))
    with pytest.raises(BadPreimageError):
        check_preimage(_htlc(1), preimage(2))
