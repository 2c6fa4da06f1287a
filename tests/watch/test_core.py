"""The watcher core: triggers, windows, fee ladders, resolution, rescans."""

from __future__ import annotations

import hashlib

import pytest

from superscalar.bitcoin.fees import Feerate
from superscalar.bitcoin.script import P2A_SCRIPT
from superscalar.bitcoin.tx import OutPoint, Transaction, TxIn, TxOut
from superscalar.watch import (
    BreachDetected,
    Broadcast,
    BroadcastPackage,
    EntryKind,
    PersistScanHeight,
    Resolved,
    WatchEntry,
    WatchError,
    WatcherState,
    deadline_feerate,
    ladder_step,
    on_block,
)

DEST = bytes.fromhex("5120") + bytes(32)


def _tx(tag: str, spends: tuple[OutPoint, ...] = (), value: int = 10_000) -> Transaction:
    prevouts = spends or (OutPoint(hashlib.sha256(tag.encode()).digest(), 0),)
    return Transaction(2, tuple(TxIn(p) for p in prevouts), (TxOut(value, DEST),))


BREACH = _tx("breach")
RUNGS = tuple(_tx("x", (BREACH.outpoint(0),), 10_000 - fee) for fee in (100, 200, 400))


def _entry(deadline: int = 9) -> WatchEntry:
    return WatchEntry(EntryKind.PENALTY, BREACH.txid, RUNGS, not_before=0, deadline=deadline)


def _watching(deadline: int = 9) -> WatcherState:
    return WatcherState(scan_height=100).with_entries([_entry(deadline)])


def test_an_unrelated_block_only_advances_the_scan_height() -> None:
    state, effects = on_block(_watching(), 101, [_tx("noise")])
    assert effects == [PersistScanHeight(101)]
    assert state.scan_height == 101 and not state.active


def test_the_breach_in_a_block_is_reported_and_answered_with_the_cheapest_rung() -> None:
    state, effects = on_block(_watching(), 101, [BREACH])
    assert effects == [
        BreachDetected(_entry(), 101),
        Broadcast(_entry(), RUNGS[0]),
        PersistScanHeight(101),
    ]
    assert BREACH.txid in state.active


def test_the_rung_climbs_as_the_deadline_nears_and_never_goes_back() -> None:
    state, _ = on_block(_watching(), 101, [BREACH])
    sent = []
    for h in range(102, 110):
        state, effects = on_block(state, h, [])
        sent += [e.tx for e in effects if isinstance(e, Broadcast)]
    assert sent[0] == RUNGS[0] and sent[-1] == RUNGS[-1]
    order = [RUNGS.index(t) for t in sent]
    assert order == sorted(order)


def test_our_response_confirming_resolves_the_breach_as_won() -> None:
    state, _ = on_block(_watching(), 101, [BREACH])
    state, effects = on_block(state, 102, [RUNGS[1]])
    assert Resolved(_entry(), RUNGS[1].txid, 102, True, 101) in effects
    assert not state.active
    assert not any(isinstance(e, Broadcast) for e in effects)


def test_someone_else_spending_the_contested_output_resolves_as_lost() -> None:
    state, _ = on_block(_watching(), 101, [BREACH])
    thief = _tx("thief", (BREACH.outpoint(0),))
    state, effects = on_block(state, 110, [thief])
    assert Resolved(_entry(), thief.txid, 110, False, 101) in effects


def test_blocks_already_scanned_are_ignored() -> None:
    state, _ = on_block(_watching(), 101, [BREACH])
    again, effects = on_block(state, 101, [BREACH])
    assert effects == [] and again == state


def test_a_response_is_held_back_until_its_relative_lock_allows() -> None:
    parent = Transaction(
        3, (TxIn(BREACH.outpoint(0), sequence=20),), (TxOut(9_000, DEST), TxOut(240, P2A_SCRIPT))
    )
    entry = WatchEntry(
        EntryKind.NEWER_STATE, BREACH.txid, (parent,), not_before=19, deadline=29, anchored=True
    )
    state, effects = on_block(WatcherState(100).with_entries([entry]), 101, [BREACH])
    assert not any(isinstance(e, BroadcastPackage) for e in effects)
    for h in range(102, 120):
        state, effects = on_block(state, h, [])
        assert not any(isinstance(e, BroadcastPackage) for e in effects)
    state, effects = on_block(state, 120, [])
    (pkg,) = [e for e in effects if isinstance(e, BroadcastPackage)]
    assert pkg.parent == parent and pkg.feerate == deadline_feerate(0, 10)


def test_deadline_feerate_rises_from_floor_to_ceiling() -> None:
    floor, ceiling = Feerate(2_000), Feerate(200_000)
    rates = [deadline_feerate(u, 10, floor, ceiling).sat_per_kvb for u in range(10)]
    assert rates[0] == 2_000 and rates[-1] == 200_000
    assert rates == sorted(rates) and len(set(rates)) == 10


def test_ladder_step_reaches_the_top_rung_before_the_last_quarter() -> None:
    assert ladder_step(0, 100, 6) == 0
    assert ladder_step(75, 100, 6) == 5
    assert ladder_step(100, 100, 6) == 5
    assert ladder_step(5, 100, 1) == 0


def test_an_entry_with_an_empty_window_is_refused() -> None:
    with pytest.raises(WatchError, match="empty"):
        WatchEntry(EntryKind.PENALTY, BREACH.txid, RUNGS, not_before=5, deadline=5)


def test_ladder_rungs_spending_different_outputs_are_refused() -> None:
    odd = _tx("odd", (OutPoint(BREACH.txid, 1),))
    with pytest.raises(WatchError, match="same outpoint"):
        WatchEntry(EntryKind.PENALTY, BREACH.txid, (RUNGS[0], odd), 0, 9)
