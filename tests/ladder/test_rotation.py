"""Which clients move to the next factory, and with exactly what."""

from __future__ import annotations

import pytest

from superscalar.ladder import LadderError, Member, plan_rotation


def _m(pos: int, **kw: object) -> Member:
    base: dict[str, object] = {
        "node_key": bytes([2]) + bytes([pos]) * 32,
        "position": pos,
        "balance_msat": 1_000_000 * (pos + 1) + 7,
        "pending_htlcs": 0,
        "online": True,
    }
    base.update(kw)
    return Member(**base)  # type: ignore[arg-type]


def test_every_online_idle_client_moves_with_its_exact_balance() -> None:
    plan = plan_rotation([_m(1), _m(0)])
    assert [m.position for m in plan.moving] == [0, 1]
    assert plan.moved_msat == 1_000_007 + 2_000_007
    assert plan.complete


def test_an_offline_client_stays_on_the_old_factory() -> None:
    plan = plan_rotation([_m(0), _m(1, online=False)])
    assert [s.member.position for s in plan.staying] == [1]
    assert plan.staying[0].reason == "offline"
    assert not plan.complete


def test_a_pending_htlc_keeps_a_client_on_the_old_factory() -> None:
    plan = plan_rotation([_m(0, pending_htlcs=2)])
    assert plan.moving == ()
    assert "2 HTLC" in plan.staying[0].reason


def test_a_client_declining_to_move_stays() -> None:
    assert plan_rotation([_m(0, willing=False)]).staying[0].reason == "declined to move"


def test_a_negative_balance_is_refused() -> None:
    with pytest.raises(LadderError):
        _m(0, balance_msat=-1)
