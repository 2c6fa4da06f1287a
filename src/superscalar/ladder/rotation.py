"""Which clients move to the next factory now, and with how much.

At DYING the LSP builds the next factory for the clients that can move: the
ones online with no HTLC pending on their old channel. Each moving client's
new channel opens with exactly its old balance (msat), the LSP funding the
new factory from its wallet; the others stay on the old factory (and are
invited again later, or exit by the CLTV timeout / distribution tx).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .errors import LadderError

__all__ = ["Member", "RotationPlan", "Staying", "plan_rotation"]


@dataclass(frozen=True, slots=True)
class Member:
    """One client of the dying factory as the LSP sees it."""

    node_key: bytes
    """The client's node (identity) key, compressed."""
    position: int
    balance_msat: int
    """The client's own balance in its old channel."""
    pending_htlcs: int
    online: bool
    willing: bool = True

    def __post_init__(self) -> None:
        if self.balance_msat < 0 or self.pending_htlcs < 0:
            raise LadderError("balances and HTLC counts must not be negative")


@dataclass(frozen=True, slots=True)
class Staying:
    member: Member
    reason: str


@dataclass(frozen=True)
class RotationPlan:
    moving: tuple[Member, ...]
    staying: tuple[Staying, ...]

    @property
    def moved_msat(self) -> int:
        return sum(m.balance_msat for m in self.moving)

    @property
    def complete(self) -> bool:
        """True when every client moves: the old factory can then be closed by the LSP alone."""
        return not self.staying


def plan_rotation(members: Iterable[Member]) -> RotationPlan:
    """Split the dying factory's clients into those that move now and those that stay."""
    moving: list[Member] = []
    staying: list[Staying] = []
    for m in sorted(members, key=lambda m: m.position):
        if not m.online:
            staying.append(Staying(m, "offline"))
        elif m.pending_htlcs:
            staying.append(Staying(m, f"{m.pending_htlcs} HTLC(s) pending"))
        elif not m.willing:
            staying.append(Staying(m, "declined to move"))
        else:
            moving.append(m)
    return RotationPlan(tuple(moving), tuple(staying))
