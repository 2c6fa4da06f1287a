"""A join is the client's word: nothing in it becomes money (issue 14, attack 11)."""

from __future__ import annotations

import pytest

from superscalar.node.admission import (
    MIN_CLIENT_SAT,
    JoinRefusal,
    join_refusal,
    opening_credit_msat,
)
from superscalar.wire.codec import Hex, Hex32
from superscalar.wire.messages import JoinRequest

P2WPKH = bytes([0, 20]) + bytes(20)
MAX = 1_000_000


def join(**fields: object) -> JoinRequest:
    base: dict[str, object] = {"amount_sat": 100_000, "payout_script": Hex(P2WPKH)}
    return JoinRequest(**{**base, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"balance_msat": 100_000_000}, JoinRefusal.UNASKED_BALANCE),
        ({"balance_msat": 0}, JoinRefusal.UNASKED_BALANCE),
        ({"rotating_from": Hex32(bytes(32))}, JoinRefusal.UNINVITED_MOVE),
        ({"amount_sat": MIN_CLIENT_SAT - 1}, JoinRefusal.AMOUNT_TOO_SMALL),
        ({"amount_sat": MAX + 1}, JoinRefusal.AMOUNT_TOO_LARGE),
        ({"amount_sat": 2**63 - 1}, JoinRefusal.AMOUNT_TOO_LARGE),
    ],
)
def test_join_refused_at_the_door(fields: dict[str, object], code: JoinRefusal) -> None:
    refusal = join_refusal(join(**fields), MAX)
    assert refusal is not None and refusal.code is code


@pytest.mark.parametrize("amount", [MIN_CLIENT_SAT, 100_000, MAX])
def test_join_within_bounds_accepted(amount: int) -> None:
    assert join_refusal(join(amount_sat=amount), MAX) is None


def test_reconnect_is_not_held_to_todays_amount_bounds() -> None:
    assert join_refusal(join(amount_sat=MAX * 10, factory_id=Hex32(bytes(32))), MAX) is None


def test_reconnect_still_carries_no_balance() -> None:
    refusal = join_refusal(join(factory_id=Hex32(bytes(32)), balance_msat=1), MAX)
    assert refusal is not None and refusal.code is JoinRefusal.UNASKED_BALANCE


def test_no_credit_by_default() -> None:
    assert opening_credit_msat(0, join()) == 0


def test_credit_is_capped_by_the_join_amount() -> None:
    assert opening_credit_msat(10**9, join(amount_sat=50_000)) == 50_000_000
    assert opening_credit_msat(20_000, join(amount_sat=50_000)) == 20_000_000


def test_dust_credit_is_not_given() -> None:
    assert opening_credit_msat(293, join()) == 0  # below P2WPKH dust (294)
    assert opening_credit_msat(294, join()) == 294_000
