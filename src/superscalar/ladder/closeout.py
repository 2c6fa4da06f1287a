"""Closing out an old factory against misbehaving clients: the LSP's rules, pure.

A rotation's client can attack the LSP and the honest clients in three ways
(issue 14, 7–9), and each rule here answers one:

- *exit then fulfil*: a moved balance is spendable only once the old factory's
  close is in a block (daemon: `LspLadder._settle`), so a client that kicked off an
  exit before handing its key over cannot spend the move while the LSP closes the
  old factory from the root kickoff's output;
- *a mover keeping its key*: its move is called off at the PTLC's expiry
  (`move_expired`) and it is closed out of the old factory like any stayer, at its
  balance there (`stayers_to_close`), so it no longer holds every stayer hostage;
- *stalling every rotation*: besides barring the staller (daemon), a factory nobody
  moved out of is closed cooperatively at current balances before its distribution
  tx, which pays the *opening* balances, can undo payments (`distribution_underpays`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

__all__ = [
    "CLOSED_MOVE_STAGES",
    "OPEN_MOVE_STAGES",
    "distribution_underpays",
    "move_expired",
    "stayers_to_close",
]

OPEN_MOVE_STAGES = frozenset({"planned", "offered"})
"""An LSP move whose PTLC may still be fulfilled (or is not offered yet)."""
CLOSED_MOVE_STAGES = frozenset({"failed", "cancelled"})
"""A move that will never happen: the PTLC was failed, or it expired and was called off."""


def stayers_to_close(
    positions: Sequence[int], held: Collection[int], moves: Mapping[int, str]
) -> tuple[int, ...] | None:
    """Which of an old factory's client `positions` a close must pay (the stayers), given
    the positions whose keys the LSP `held` and each mover's move stage (`moves`, by old
    position: only clients that joined a signed newer factory); None while some move is
    still open — paying that client now and crediting its PTLC later would pay it twice.

    A client without a held key is a stayer if it never moved or its move is closed
    (failed or cancelled); a `fulfilled` move always comes with its key (same SQLite
    transaction), so one without is treated as open.
    """
    stayers = []
    for pos in positions:
        if pos in held:
            continue
        stage = moves.get(pos)
        if stage is not None and stage not in CLOSED_MOVE_STAGES:
            return None
        stayers.append(pos)
    return tuple(stayers)


def move_expired(
    stage: str, cltv_expiry: int | None, height: int, old_timeout: int, margin: int
) -> bool:
    """Is an open move past the point where the LSP calls it off? An offered PTLC at its
    expiry; a move never offered at the latest expiry `plan_move` could have given it
    (`old_timeout − margin`)."""
    if stage not in OPEN_MOVE_STAGES:
        return False
    if stage == "planned" or cltv_expiry is None:
        cltv_expiry = old_timeout - margin
    return height >= cltv_expiry


def distribution_underpays(payouts_sat: Sequence[int], balances_msat: Mapping[int, int]) -> bool:
    """Would a distribution tx paying `payouts_sat` (by position) pay some client less than
    its current channel balance (`balances_msat`, by position)? Then it would undo
    payments that client received, and a cooperative close at balances comes first."""
    return any(
        pos < len(payouts_sat) and msat // 1000 > payouts_sat[pos]
        for pos, msat in balances_msat.items()
    )
