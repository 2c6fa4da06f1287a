"""Factory lifecycle by height and the ladder schedule."""

from __future__ import annotations

import pytest

from superscalar.ladder import (
    MAINNET_LADDER,
    REGTEST_LADDER,
    Ladder,
    LadderError,
    LadderParams,
    Phase,
    ladder_params_for,
)
from superscalar.ladder.lifecycle import LifeTooShort

PARAMS = LadderParams(active_blocks=20, dying_blocks=5)


def test_a_factory_is_active_up_to_the_block_before_it_starts_dying() -> None:
    lc = PARAMS.lifecycle(100)
    assert lc.phase(100) is Phase.ACTIVE
    assert lc.phase(119) is Phase.ACTIVE
    assert lc.phase(120) is Phase.DYING


def test_a_factory_expires_exactly_at_its_cltv_timeout() -> None:
    lc = PARAMS.lifecycle(100)
    assert lc.cltv_timeout == 125
    assert lc.phase(124) is Phase.DYING
    assert lc.phase(125) is Phase.EXPIRED


def test_new_htlcs_are_refused_once_the_factory_is_dying() -> None:
    lc = PARAMS.lifecycle(100)
    assert lc.accepts_htlc(110, cltv_expiry=124)
    assert not lc.accepts_htlc(120, cltv_expiry=124)


def test_an_htlc_outliving_the_factory_is_refused_even_while_active() -> None:
    assert not PARAMS.lifecycle(100).accepts_htlc(110, cltv_expiry=125)


def test_mainnet_defaults_are_about_thirty_days_then_three() -> None:
    assert MAINNET_LADDER.active_blocks == 30 * 144
    assert MAINNET_LADDER.dying_blocks == 5 * 144
    assert ladder_params_for("mainnet") == MAINNET_LADDER


def test_regtest_defaults_are_short_and_flags_override_them() -> None:
    assert ladder_params_for("regtest") == REGTEST_LADDER
    assert REGTEST_LADDER.lifetime <= 200
    assert ladder_params_for("regtest", active_blocks=7) == LadderParams(
        7, REGTEST_LADDER.dying_blocks
    )


@pytest.mark.parametrize(("active", "dying"), [(0, 5), (5, 0), (-1, 5)])
def test_empty_periods_are_refused(active: int, dying: int) -> None:
    with pytest.raises(LadderError):
        LadderParams(active, dying)


def test_the_next_factory_is_due_when_the_newest_starts_dying() -> None:
    ladder = Ladder.of(PARAMS, [(b"f0", 100)])
    assert ladder.next_open_height() == 120
    assert not ladder.should_open(119)
    assert ladder.should_open(120)


def test_an_empty_ladder_opens_its_first_factory_at_once() -> None:
    ladder = Ladder.of(PARAMS, [])
    assert ladder.next_open_height() == 0
    assert ladder.should_open(0)


def test_two_factories_are_alive_during_the_overlap_and_the_newest_serves() -> None:
    ladder = Ladder.of(PARAMS, [(b"f0", 100), (b"f1", 120)])
    assert ladder.alive(122) == (b"f0", b"f1")
    assert ladder.dying(122) == (b"f0",)
    assert ladder.active(122) == b"f1"
    assert ladder.phases(125) == {b"f0": Phase.EXPIRED, b"f1": Phase.ACTIVE}
    assert ladder.alive(125) == (b"f1",)


def test_the_margin_is_a_third_of_the_dying_period_at_least_two_blocks() -> None:
    assert REGTEST_LADDER.distribution_margin == 20
    assert MAINNET_LADDER.distribution_margin == 240
    assert PARAMS.distribution_margin == 2


def test_the_distribution_tx_is_due_the_exit_window_before_the_timeout() -> None:
    lc = LadderParams(active_blocks=60, dying_blocks=30).lifecycle(100)
    assert lc.distribution_at(22) == lc.cltv_timeout - 22
    assert lc.phase(lc.distribution_at(22)) is Phase.DYING


@pytest.mark.parametrize(("window", "fits"), [(29, True), (30, False), (200, False)])
def test_the_exit_window_must_fit_in_the_dying_period(window: int, fits: bool) -> None:
    params = LadderParams(active_blocks=60, dying_blocks=30)
    if fits:
        params.check_fits(window)
        assert params.lifecycle(0).distribution_at(window) > params.lifecycle(0).dying_at
    else:
        with pytest.raises(LifeTooShort) as info:
            params.check_fits(window)
        assert info.value.code == "life-too-short"
