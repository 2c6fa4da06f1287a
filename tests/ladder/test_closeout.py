"""The LSP's close-out rules against misbehaving rotation clients (`ladder.closeout`)."""

from __future__ import annotations

from superscalar.ladder.closeout import distribution_underpays, move_expired, stayers_to_close


def test_movers_with_keys_are_not_paid_and_stayers_are() -> None:
    assert stayers_to_close([0, 1, 2], held={0}, moves={0: "fulfilled"}) == (1, 2)


def test_an_open_move_holds_the_close() -> None:
    for stage in ("planned", "offered", "fulfilled"):  # fulfilled without its key: not yet
        assert stayers_to_close([0, 1], held={0}, moves={1: stage}) is None


def test_a_failed_or_cancelled_move_makes_its_client_a_stayer() -> None:
    assert stayers_to_close([0, 1, 2], held={0}, moves={1: "cancelled", 2: "failed"}) == (1, 2)


def test_every_key_held_leaves_no_stayer() -> None:
    assert stayers_to_close([0, 1], held={0, 1}, moves={0: "fulfilled", 1: "fulfilled"}) == ()


def test_an_offered_move_expires_at_its_ptlc_expiry() -> None:
    assert not move_expired("offered", 150, 149, old_timeout=160, margin=6)
    assert move_expired("offered", 150, 150, old_timeout=160, margin=6)


def test_a_move_never_offered_expires_at_the_latest_possible_expiry() -> None:
    assert not move_expired("planned", None, 153, old_timeout=160, margin=6)
    assert move_expired("planned", None, 154, old_timeout=160, margin=6)


def test_closed_moves_never_expire_again() -> None:
    for stage in ("fulfilled", "failed", "cancelled"):
        assert not move_expired(stage, 100, 10_000, old_timeout=160, margin=6)


def test_distribution_underpays_a_client_that_received_payments() -> None:
    assert distribution_underpays([100_000, 120_000], {0: 109_000_000, 1: 111_000_000})
    assert not distribution_underpays([100_000, 120_000], {0: 100_000_999, 1: 111_000_000})
    assert not distribution_underpays([100_000], {})
