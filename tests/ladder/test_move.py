"""The move PTLC's plan (LSP) and check (client): exact amount, the client's own old
factory key, an expiry that leaves time on chain and ends before the old factory."""

from __future__ import annotations

import pytest

from superscalar.channel.config import ChannelConfig
from superscalar.channel.htlc import Htlc, ptlc_payment_hash
from superscalar.crypto.keys import SecretKey
from superscalar.ladder import (
    CLAIM_MARGIN_BLOCKS,
    MOVE_MARGIN_BLOCKS,
    LadderError,
    TurnoverError,
    check_move_ptlc,
    claim_deadline,
    claim_lead,
    factory_key,
    plan_move,
)

CONFIG = ChannelConfig(min_cltv_delta=18, channel_reserve_sat=1_000)
NODE = SecretKey.from_int(0xC11E)
OLD_KEY = factory_key(NODE, 0)
HEIGHT, OLD_TIMEOUT = 500, 560
NEW_EXIT_DELAY = 20
"""The new factory's worst-case exit delay (the client takes it from its verified view)."""


def _plan(balance_msat: int = 150_000_000, **kw: int) -> Htlc:
    plan = plan_move(
        balance_msat,
        kw.get("capacity", 400_000),
        CONFIG,
        OLD_KEY.public_key,
        height=kw.get("height", HEIGHT),
        old_timeout=kw.get("old_timeout", OLD_TIMEOUT),
    )
    point = plan.point
    return Htlc(0, plan.amount_msat, ptlc_payment_hash(point), plan.cltv_expiry, point=point)


def _check(htlc: Htlc, expected: int = 150_000_000, key: SecretKey = OLD_KEY) -> bytes:
    return check_move_ptlc(
        htlc,
        expected_msat=expected,
        key=key,
        height=HEIGHT,
        min_cltv_delta=CONFIG.min_cltv_delta,
        old_timeout=OLD_TIMEOUT,
        new_exit_delay=NEW_EXIT_DELAY,
    )


def test_the_plan_expires_a_margin_before_the_old_factorys_timeout() -> None:
    htlc = _plan()
    assert htlc.amount_msat == 150_000_000 and htlc.point == OLD_KEY.public_key
    assert HEIGHT + CONFIG.min_cltv_delta <= htlc.cltv_expiry < OLD_TIMEOUT


def test_the_client_accepts_its_exact_move_and_reveals_its_old_key() -> None:
    scalar = _check(_plan())
    assert SecretKey(scalar).public_key == OLD_KEY.public_key


@pytest.mark.parametrize(
    ("balance", "kw", "match"),
    [
        (400_000_000, {}, "exceeds"),
        (150_000_000, {"old_timeout": HEIGHT + 20}, "no expiry fits"),
    ],
)
def test_the_lsp_refuses_a_move_the_channel_cannot_carry(
    balance: int, kw: dict[str, int], match: str
) -> None:
    with pytest.raises(LadderError, match=match):
        _plan(balance, **kw)


def test_the_client_refuses_a_ptlc_locked_to_another_key() -> None:
    with pytest.raises(TurnoverError, match="not locked to our old factory key"):
        _check(_plan(), key=factory_key(NODE, 1))


def test_the_client_refuses_a_wrong_amount() -> None:
    with pytest.raises(TurnoverError, match="expected"):
        _check(_plan(), expected=150_000_001)


def test_the_client_refuses_an_expiry_too_soon_or_too_late() -> None:
    point = OLD_KEY.public_key
    for expiry, match in ((HEIGHT + 5, "too soon"), (OLD_TIMEOUT, "not before")):
        htlc = Htlc(0, 150_000_000, ptlc_payment_hash(point), expiry, point=point)
        with pytest.raises(TurnoverError, match=match):
            _check(htlc)


def test_the_expiry_must_leave_room_for_the_new_factorys_whole_exit() -> None:
    """Attack 4: ≥ height + min_cltv_delta is not enough; the client needs the new
    factory's worst-case exit, its own margin and the claim budget (`claim_lead`)."""
    point = OLD_KEY.public_key
    lead = claim_lead(NEW_EXIT_DELAY, CONFIG.min_cltv_delta)
    assert lead == NEW_EXIT_DELAY + CLAIM_MARGIN_BLOCKS + CONFIG.min_cltv_delta
    short = Htlc(0, 150_000_000, ptlc_payment_hash(point), HEIGHT + lead - 1, point=point)
    with pytest.raises(TurnoverError, match="too soon") as err:
        _check(short)
    assert err.value.code == "ptlc-expiry-too-soon"
    # what the stock check took (≥ height + 18) is refused
    assert HEIGHT + CONFIG.min_cltv_delta < short.cltv_expiry
    ok = Htlc(0, 150_000_000, ptlc_payment_hash(point), HEIGHT + lead, point=point)
    assert SecretKey(_check(ok)).public_key == point
    assert claim_deadline(ok.cltv_expiry, NEW_EXIT_DELAY, CONFIG.min_cltv_delta) == HEIGHT


def test_the_lsp_plan_refuses_an_expiry_the_client_would_refuse() -> None:
    lead = claim_lead(NEW_EXIT_DELAY, CONFIG.min_cltv_delta)
    timeout = HEIGHT + lead + MOVE_MARGIN_BLOCKS
    assert _plan_with(timeout - 1).startswith("no expiry fits")
    plan = plan_move(
        150_000_000, 400_000, CONFIG, OLD_KEY.public_key, height=HEIGHT, old_timeout=timeout,
        new_exit_delay=NEW_EXIT_DELAY,
    )  # fmt: skip
    assert plan.cltv_expiry == HEIGHT + lead


def _plan_with(old_timeout: int) -> str:
    try:
        plan_move(
            150_000_000, 400_000, CONFIG, OLD_KEY.public_key, height=HEIGHT,
            old_timeout=old_timeout, new_exit_delay=NEW_EXIT_DELAY,
        )  # fmt: skip
    except LadderError as exc:
        return str(exc)
    return "planned"


def test_the_client_refuses_a_plain_htlc() -> None:
    htlc = Htlc(0, 150_000_000, bytes(32), HEIGHT + 30)
    with pytest.raises(TurnoverError, match="not a PTLC"):
        _check(htlc)


def test_a_dust_balance_still_moves_as_a_ptlc() -> None:
    htlc = _plan(330_000)
    assert htlc.amount_msat == 330_000
    assert SecretKey(_check(htlc, expected=330_000)).public_key == OLD_KEY.public_key


def test_a_zero_balance_moves_as_a_one_msat_ptlc() -> None:
    htlc = _plan(0)
    assert htlc.amount_msat == 1
    assert SecretKey(_check(htlc, expected=0)).public_key == OLD_KEY.public_key
