"""Absolute and relative locks: BIP68/112 encodings and the CLTV/CSV/nLockTime rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from superscalar.bitcoin.locktime import (
    LOCKTIME_THRESHOLD,
    SEQUENCE_FINAL,
    SEQUENCE_LOCKTIME_DISABLE_FLAG,
    SEQUENCE_LOCKTIME_TYPE_FLAG,
    LocktimeError,
    RelativeLock,
    absolute_lock_satisfied,
    cltv_satisfied,
    csv_satisfied,
    decode_sequence,
    locktime_for_height,
    locktime_for_time,
    locktime_is_height,
)

TYPE = SEQUENCE_LOCKTIME_TYPE_FLAG
DISABLE = SEQUENCE_LOCKTIME_DISABLE_FLAG
lock_values = st.integers(min_value=0, max_value=0xFFFF)

# -- BIP68 encodings ------------------------------------------------------------------


def test_block_lock_encodes_as_its_count() -> None:
    assert RelativeLock.blocks(144).to_sequence() == 144


def test_time_lock_sets_the_type_flag() -> None:
    assert RelativeLock(3, is_time=True).to_sequence() == (1 << 22) | 3


@given(lock_values, st.booleans())
def test_relative_lock_round_trips_through_a_sequence(value: int, is_time: bool) -> None:
    lock = RelativeLock(value, is_time)
    assert decode_sequence(lock.to_sequence()) == lock
    assert RelativeLock.from_sequence(lock.to_sequence()) == lock


@pytest.mark.parametrize("sequence", [DISABLE, SEQUENCE_FINAL, 0xFFFFFFFE, DISABLE | TYPE | 5])
def test_sequence_with_the_disable_flag_has_no_lock(sequence: int) -> None:
    assert decode_sequence(sequence) is None


def test_decoding_ignores_bits_consensus_ignores() -> None:
    noisy = (1 << 16) | (1 << 21) | (1 << 23) | (1 << 30) | TYPE | 7
    assert decode_sequence(noisy) == RelativeLock(7, is_time=True)


@pytest.mark.parametrize("sequence", [-1, 1 << 32])
def test_sequence_outside_uint32_is_refused(sequence: int) -> None:
    with pytest.raises(LocktimeError):
        decode_sequence(sequence)


@pytest.mark.parametrize("value", [-1, 0x10000])
def test_relative_lock_value_is_16_bits(value: int) -> None:
    with pytest.raises(LocktimeError):
        RelativeLock(value)


@pytest.mark.parametrize(
    ("seconds", "round_up", "units"),
    [(0, True, 0), (1, True, 1), (512, True, 1), (513, True, 2), (513, False, 1), (1023, False, 1)],
)
def test_time_lock_counts_512_second_units(seconds: int, round_up: bool, units: int) -> None:
    lock = RelativeLock.from_seconds(seconds, round_up)
    assert lock == RelativeLock(units, is_time=True)
    assert lock.seconds == units * 512


def test_time_lock_longer_than_the_field_is_refused() -> None:
    with pytest.raises(LocktimeError):
        RelativeLock.from_seconds(0xFFFF * 512 + 1)


def test_block_lock_has_no_length_in_seconds() -> None:
    with pytest.raises(LocktimeError):
        _ = RelativeLock.blocks(1).seconds


@pytest.mark.parametrize(("elapsed", "ok"), [(9, False), (10, True), (11, True)])
def test_block_lock_is_satisfied_after_its_count(elapsed: int, ok: bool) -> None:
    assert RelativeLock.blocks(10).is_satisfied(elapsed) is ok


@pytest.mark.parametrize(("elapsed", "ok"), [(1023, False), (1024, True)])
def test_time_lock_is_satisfied_after_its_seconds(elapsed: int, ok: bool) -> None:
    assert RelativeLock(2, is_time=True).is_satisfied(elapsed) is ok


# -- BIP112 CHECKSEQUENCEVERIFY ---------------------------------------------------------


@pytest.mark.parametrize(
    ("csv_arg", "version", "sequence", "ok"),
    [
        (10, 2, 10, True),
        (10, 2, 11, True),
        (10, 2, 9, False),
        (0, 2, 0, True),
        (10, 1, 10, False),  # BIP68 needs version 2
        (10, 0xFFFFFFFF, 10, True),  # version compared as unsigned
        (10, 2, DISABLE | 10, False),  # the input opted out of BIP68
        (TYPE | 10, 2, TYPE | 10, True),
        (TYPE | 10, 2, 10, False),  # time lock, block sequence
        (10, 2, TYPE | 10, False),  # block lock, time sequence
        (10, 2, (1 << 16) | 10, True),  # ignored sequence bits
        ((1 << 16) | 10, 2, 10, True),  # ignored argument bits
        (DISABLE | 10, 1, SEQUENCE_FINAL, True),  # disabled argument: CSV is a NOP
        (-1, 2, 10, False),  # negative argument fails
        (1 << 32 | 10, 2, 10, True),  # 5-byte argument: high bits masked off
    ],
)
def test_csv_follows_bip112(csv_arg: int, version: int, sequence: int, ok: bool) -> None:
    assert csv_satisfied(csv_arg, version, sequence) is ok


@given(lock_values, lock_values, st.booleans())
def test_csv_passes_iff_the_input_lock_is_at_least_the_argument(
    required: int, actual: int, is_time: bool
) -> None:
    arg = RelativeLock(required, is_time).to_sequence()
    seq = RelativeLock(actual, is_time).to_sequence()
    assert csv_satisfied(arg, 2, seq) is (actual >= required)


# -- BIP65 CHECKLOCKTIMEVERIFY ------------------------------------------------------------


@pytest.mark.parametrize(
    ("cltv_arg", "tx_locktime", "sequence", "ok"),
    [
        (100, 100, 0xFFFFFFFE, True),
        (100, 101, 0xFFFFFFFE, True),
        (100, 99, 0xFFFFFFFE, False),
        (100, 100, SEQUENCE_FINAL, False),  # a final input disables nLockTime
        (100, LOCKTIME_THRESHOLD, 0, False),  # height argument, time locktime
        (LOCKTIME_THRESHOLD, LOCKTIME_THRESHOLD, 0, True),
        (LOCKTIME_THRESHOLD, LOCKTIME_THRESHOLD - 1, 0, False),  # time argument, height locktime
        (0, 0, 0, True),
        (-1, 0, 0, False),  # negative argument fails
        (1 << 32, 0xFFFFFFFF, 0, False),  # above any nLockTime
    ],
)
def test_cltv_follows_bip65(cltv_arg: int, tx_locktime: int, sequence: int, ok: bool) -> None:
    assert cltv_satisfied(cltv_arg, tx_locktime, sequence) is ok


# -- nLockTime finality -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("locktime", "height", "mtp", "final"),
    [
        (0, 0, 0, True),
        (100, 100, 0, False),  # final only in blocks of height > L
        (100, 101, 0, True),
        (LOCKTIME_THRESHOLD - 1, LOCKTIME_THRESHOLD, 0, True),
        (1_700_000_000, 10**6, 1_700_000_000, False),  # time lock: MTP must exceed it
        (1_700_000_000, 10**6, 1_700_000_001, True),
        (1_700_000_000, 2_000_000_000, 0, False),  # a time lock ignores the height
        (100, 0, 10**9, False),  # a height lock ignores the time
    ],
)
def test_absolute_lock_is_final_strictly_after_it(
    locktime: int, height: int, mtp: int, final: bool
) -> None:
    assert absolute_lock_satisfied(locktime, height, mtp) is final


@given(st.integers(min_value=1, max_value=LOCKTIME_THRESHOLD))
def test_locktime_for_height_is_final_at_that_height_and_not_before(height: int) -> None:
    locktime = locktime_for_height(height)
    assert locktime == height - 1
    assert absolute_lock_satisfied(locktime, height, 0)
    if locktime:
        assert not absolute_lock_satisfied(locktime, height - 1, 0)


@pytest.mark.parametrize("height", [0, LOCKTIME_THRESHOLD + 1])
def test_locktime_for_height_refuses_heights_out_of_range(height: int) -> None:
    with pytest.raises(LocktimeError):
        locktime_for_height(height)


def test_locktime_for_time_is_final_once_mtp_passes_it() -> None:
    locktime = locktime_for_time(1_700_000_000)
    assert not absolute_lock_satisfied(locktime, 10**6, 1_700_000_000)
    assert absolute_lock_satisfied(locktime, 10**6, 1_700_000_001)


def test_locktime_for_time_refuses_a_height() -> None:
    with pytest.raises(LocktimeError):
        locktime_for_time(LOCKTIME_THRESHOLD - 1)


@pytest.mark.parametrize(
    ("locktime", "is_height"),
    [(0, True), (LOCKTIME_THRESHOLD - 1, True), (LOCKTIME_THRESHOLD, False), (2**32 - 1, False)],
)
def test_locktime_kind_switches_at_500_million(locktime: int, is_height: bool) -> None:
    assert locktime_is_height(locktime) is is_height


@pytest.mark.parametrize("locktime", [-1, 2**32])
def test_locktime_outside_uint32_is_refused(locktime: int) -> None:
    with pytest.raises(LocktimeError):
        absolute_lock_satisfied(locktime, 0, 0)
