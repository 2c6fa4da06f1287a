"""The watcher core: sans-IO breach detection and response.

A `WatchEntry` says "if `trigger_txid` confirms, broadcast this". Three kinds
fill it: a peer's revoked channel commitment (respond with the penalty sweep),
the kickoff under a superseded DW state (respond with the newest state tx,
which confirms first because its relative lock is shorter), and a leaf state
carrying a superseded L-stock (respond with the burn). The shell feeds blocks
(`on_block`) and carries out the effects: broadcasts, a CPFP child for
zero-fee responses, the scan height to persist, breach and resolution reports.

Fees rise as the deadline nears: a self-paying response comes as a ladder of
the same spend signed at increasing feerates (each RBF-replaces the one
before); a zero-fee response with a P2A anchor is broadcast as a package whose
child's feerate follows `deadline_feerate`. Every block the current step is
re-announced, so a lost mempool (or a restart) never loses the response.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum

from ..bitcoin.fees import Feerate
from ..bitcoin.tx import OutPoint, Transaction

__all__ = [
    "Active",
    "BreachDetected",
    "Broadcast",
    "BroadcastPackage",
    "Effect",
    "EntryKind",
    "PersistScanHeight",
    "Resolved",
    "WatchEntry",
    "WatchError",
    "WatcherState",
    "deadline_feerate",
    "ladder_step",
    "on_block",
    "reactivate",
]


class WatchError(ValueError):
    """A watch entry that cannot be acted on (empty, inconsistent)."""


class EntryKind(Enum):
    PENALTY = "penalty"
    NEWER_STATE = "newer_state"
    LSTOCK_BURN = "lstock_burn"


@dataclass(frozen=True)
class WatchEntry:
    """What to do if `trigger_txid` confirms.

    `responses` is either a feerate ladder of one self-paying spend (ascending,
    `anchored` False) or a single zero-fee tx whose last output is a P2A anchor
    (`anchored` True). The response is valid `not_before` blocks after the
    trigger confirmed (its CSV) and must confirm within `deadline` blocks (after
    that the cheater can spend the same outputs).
    """

    kind: EntryKind
    trigger_txid: bytes
    responses: tuple[Transaction, ...]
    not_before: int
    deadline: int
    anchored: bool = False
    label: str = ""

    def __post_init__(self) -> None:
        if not self.responses:
            raise WatchError("a watch entry needs a response")
        if self.anchored and len(self.responses) != 1:
            raise WatchError("an anchored response is one zero-fee tx")
        if not 0 <= self.not_before < self.deadline:
            raise WatchError(f"window [{self.not_before}, {self.deadline}) is empty")
        first = self.responses[0].inputs[0].prevout
        if any(r.inputs[0].prevout != first for r in self.responses):
            raise WatchError("ladder steps must spend the same outpoint (RBF)")

    @property
    def contested(self) -> frozenset[OutPoint]:
        """The outpoints the response spends: whoever spends one first decides the race."""
        return frozenset(txin.prevout for txin in self.responses[0].inputs)

    @property
    def response_txids(self) -> frozenset[bytes]:
        return frozenset(r.txid for r in self.responses)


@dataclass(frozen=True)
class Active:
    """A detected breach being answered."""

    entry: WatchEntry
    height: int
    step: int = -1


@dataclass(frozen=True)
class WatcherState:
    """Entries by trigger txid, breaches being answered, and the last block scanned."""

    scan_height: int
    entries: Mapping[bytes, WatchEntry] = field(default_factory=dict)
    active: Mapping[bytes, Active] = field(default_factory=dict)

    def with_entries(self, entries: Iterable[WatchEntry]) -> WatcherState:
        merged = dict(self.entries)
        merged.update((e.trigger_txid, e) for e in entries)
        return replace(self, entries=merged)


@dataclass(frozen=True)
class Broadcast:
    entry: WatchEntry
    tx: Transaction


@dataclass(frozen=True)
class BroadcastPackage:
    """Broadcast `parent` with a CPFP child on its anchor paying `feerate` for the package."""

    entry: WatchEntry
    parent: Transaction
    feerate: Feerate


@dataclass(frozen=True)
class BreachDetected:
    entry: WatchEntry
    height: int


@dataclass(frozen=True)
class Resolved:
    """The contested outpoint was spent: by our response (`won`) or by someone else."""

    entry: WatchEntry
    spender: bytes
    height: int
    won: bool
    since: int = 0
    """The height the breach was detected at."""


@dataclass(frozen=True)
class PersistScanHeight:
    height: int


Effect = Broadcast | BroadcastPackage | BreachDetected | Resolved | PersistScanHeight

FLOOR = Feerate.from_sat_per_vb(2)
CEILING = Feerate.from_sat_per_vb(200)


def _urgency(entry: WatchEntry, blocks_since: int) -> tuple[int, int]:
    """(blocks used, blocks available) of the response window."""
    window = max(entry.deadline - entry.not_before, 1)
    used = min(max(blocks_since - entry.not_before, 0), window)
    return used, window


def deadline_feerate(
    blocks_used: int, window: int, floor: Feerate = FLOOR, ceiling: Feerate = CEILING
) -> Feerate:
    """Geometric from `floor` (window just opened) to `ceiling` (last block before the deadline)."""
    if window <= 1 or blocks_used >= window - 1:
        return ceiling
    fraction = max(blocks_used, 0) / (window - 1)
    ratio = ceiling.sat_per_kvb / max(floor.sat_per_kvb, 1)
    return Feerate(max(floor.sat_per_kvb, round(floor.sat_per_kvb * ratio**fraction)))


def ladder_step(blocks_used: int, window: int, steps: int) -> int:
    """Which rung of an ascending feerate ladder: the top rung in the last quarter."""
    if steps <= 1:
        return 0
    urgent = max(window * 3 // 4, 1)
    return min(steps - 1, blocks_used * (steps - 1) // urgent)


def _respond(active: Active, height: int) -> tuple[Active, list[Effect]]:
    entry = active.entry
    since = height - active.height
    if since < entry.not_before:
        return active, []
    used, window = _urgency(entry, since)
    if entry.anchored:
        step = used
        effect: Effect = BroadcastPackage(entry, entry.responses[0], deadline_feerate(used, window))
    else:
        step = max(active.step, ladder_step(used, window, len(entry.responses)))
        effect = Broadcast(entry, entry.responses[step])
    return replace(active, step=step), [effect]


def on_block(
    state: WatcherState, height: int, txs: Iterable[Transaction]
) -> tuple[WatcherState, list[Effect]]:
    """Scan the block at `height`: detect triggers, notice resolutions, (re)broadcast responses.

    Blocks must come in order; a block at or below the scan height is ignored
    (rescans after a restart are harmless).
    """
    if height <= state.scan_height:
        return state, []
    effects: list[Effect] = []
    active = dict(state.active)
    contested = {op: key for key, a in active.items() for op in a.entry.contested}
    for tx in txs:
        entry = state.entries.get(tx.txid)
        if entry is not None and entry.trigger_txid not in active:
            active[entry.trigger_txid] = Active(entry, height)
            contested.update((op, entry.trigger_txid) for op in entry.contested)
            effects.append(BreachDetected(entry, height))
            continue
        for txin in tx.inputs:
            key = contested.get(txin.prevout)
            if key is None or key not in active:
                continue
            done = active.pop(key)
            won = tx.txid in done.entry.response_txids
            effects.append(Resolved(done.entry, tx.txid, height, won, done.height))
    for key, a in list(active.items()):
        active[key], more = _respond(a, height)
        effects += more
    effects.append(PersistScanHeight(height))
    return replace(state, scan_height=height, active=active), effects


def reactivate(
    state: WatcherState, entry: WatchEntry, since: int, height: int
) -> tuple[WatcherState, list[Effect]]:
    """Answer the breach detected at `since` again, with `entry` (a response rebuilt after the
    cheater took part of what the old one spent), from block `height` on: its fee ladder
    continues on the same clock."""
    entries = dict(state.entries)
    entries[entry.trigger_txid] = entry
    active, effects = _respond(Active(entry, since), height)
    actives = dict(state.active)
    actives[entry.trigger_txid] = active
    return replace(state, entries=entries, active=actives), effects
