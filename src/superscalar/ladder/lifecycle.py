"""Factory lifecycle by block height, and the ladder schedule built on it.

A factory is ACTIVE for `active_blocks` after it is created (payments flow,
DW states advance), then DYING for `dying_blocks` (no new HTLCs; its clients
are invited into the next factory and hand over their keys), then EXPIRED at
its CLTV timeout, when the LSP alone may sweep whatever is left through the
timeout leaf. The LSP opens the next factory when the newest one starts to
die, so with `dying_blocks < active_blocks` at most two factories are alive
at a time and clients always have an ACTIVE factory to move into.

Heights are pure numbers: the daemon feeds the chain tip in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from .errors import LadderError

__all__ = [
    "MAINNET_LADDER",
    "REGTEST_LADDER",
    "Ladder",
    "LadderParams",
    "LifeTooShort",
    "Lifecycle",
    "Phase",
    "ladder_params_for",
]


class LifeTooShort(LadderError):
    """The LSP's ladder cannot hold a factory this deep: refuse to build it."""

    CODE = "life-too-short"

    def __init__(self, message: str) -> None:
        super().__init__(message, code=self.CODE)


class Phase(StrEnum):
    ACTIVE = "active"
    DYING = "dying"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class LadderParams:
    """How long a factory lives: `active_blocks` of service, then `dying_blocks` of handover."""

    active_blocks: int
    dying_blocks: int

    def __post_init__(self) -> None:
        if self.active_blocks < 1 or self.dying_blocks < 1:
            raise LadderError("active and dying periods must each be at least one block")

    @property
    def lifetime(self) -> int:
        """Blocks from creation to the CLTV timeout."""
        return self.active_blocks + self.dying_blocks

    @property
    def distribution_margin(self) -> int:
        """Blocks, on top of the tree's worst-case exit delay, between the distribution
        locktime and the CLTV timeout: a third of the dying period (at least 2 blocks; 10 on
        regtest's 30, 240 on mainnet's 720), for the exit path's (or the
        distribution tx's) transactions and their CPFP children to confirm.
        """
        return max(2, self.dying_blocks // 3)

    def check_fits(self, exit_window: int) -> None:
        """`LifeTooShort` unless a factory whose exit takes `exit_window` blocks (worst-case
        DW delays + confirmation margin, `factory.safety.exit_window`) fits in the dying
        period with at least one block left for rotation.

        The distribution locktime is `exit_window` blocks before the CLTV timeout (a client
        facing the kickoff defense there must still finish its exit, see
        `factory.safety`); it must come after the factory starts dying, or the distribution
        tx (and the LSP's root kickoff before it) would fire on an ACTIVE factory before its
        clients could move."""
        if exit_window >= self.dying_blocks:
            raise LifeTooShort(
                f"{LifeTooShort.CODE}: the tree's exit window is {exit_window} blocks (worst-case"
                f" DW delays + confirmation margin), the dying period only {self.dying_blocks}:"
                f" use --dying-blocks > {exit_window} or fewer DW layers/a shorter DW step"
            )

    def lifecycle(self, created: int) -> Lifecycle:
        return Lifecycle(created, self)


MAINNET_LADDER = LadderParams(active_blocks=4320, dying_blocks=720)
"""About 30 days of service and 5 days of handover (144 blocks a day): the handover holds a
deep tree's exit window (10 DW layers of 30 blocks + a day to confirm) and a day of rotation."""
REGTEST_LADDER = LadderParams(active_blocks=120, dying_blocks=60)
"""Short enough for demos and tests to walk a whole lifetime in seconds; the dying period
holds a move PTLC's claim lead (the new factory's exit + margins, `ladder.move`) and the
exit window before the CLTV (`factory.safety`) with room for the rotation; the life holds
a payment's forwarding delta and the payee's claim lead (`ladder.enforce`) well into it."""


def ladder_params_for(
    network: str, active_blocks: int | None = None, dying_blocks: int | None = None
) -> LadderParams:
    """Network defaults (regtest short, everything else mainnet-like), with overrides."""
    base = REGTEST_LADDER if network == "regtest" else MAINNET_LADDER
    return LadderParams(
        base.active_blocks if active_blocks is None else active_blocks,
        base.dying_blocks if dying_blocks is None else dying_blocks,
    )


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """One factory's phase boundaries, from the height it was created at."""

    created: int
    params: LadderParams

    def __post_init__(self) -> None:
        if self.created < 0:
            raise LadderError("creation height must not be negative")

    @property
    def dying_at(self) -> int:
        """First height at which the factory is DYING."""
        return self.created + self.params.active_blocks

    @property
    def expires_at(self) -> int:
        """First EXPIRED height: the factory's CLTV timeout (timeout leaf spendable)."""
        return self.dying_at + self.params.dying_blocks

    @property
    def cltv_timeout(self) -> int:
        return self.expires_at

    def distribution_at(self, exit_window: int) -> int:
        """The distribution tx's nLockTime: it may confirm in the block after this height,
        `exit_window` blocks (the tree's worst-case exit delay + the confirmation margin)
        before the CLTV timeout path, so a client whose factory is kicked off there still
        exits in time (see `LadderParams.check_fits`)."""
        return self.expires_at - exit_window

    def phase(self, height: int) -> Phase:
        if height < self.dying_at:
            return Phase.ACTIVE
        if height < self.expires_at:
            return Phase.DYING
        return Phase.EXPIRED

    def accepts_htlc(self, height: int, cltv_expiry: int) -> bool:
        """New HTLCs only while ACTIVE, and only if they resolve before the factory expires."""
        return self.phase(height) is Phase.ACTIVE and cltv_expiry < self.expires_at


@dataclass(frozen=True)
class Ladder:
    """The factories an LSP runs, by id, each with its lifecycle."""

    params: LadderParams
    factories: Mapping[bytes, Lifecycle]

    @classmethod
    def of(cls, params: LadderParams, created: Iterable[tuple[bytes, int]]) -> Ladder:
        return cls(params, {fid: params.lifecycle(h) for fid, h in created})

    def phases(self, height: int) -> dict[bytes, Phase]:
        return {fid: lc.phase(height) for fid, lc in self.factories.items()}

    def alive(self, height: int) -> tuple[bytes, ...]:
        """Factories not yet expired, oldest first."""
        return tuple(
            fid
            for fid, lc in sorted(self.factories.items(), key=lambda kv: kv[1].created)
            if lc.phase(height) is not Phase.EXPIRED
        )

    def dying(self, height: int) -> tuple[bytes, ...]:
        return tuple(
            fid for fid in self.alive(height) if self.factories[fid].phase(height) is Phase.DYING
        )

    def active(self, height: int) -> bytes | None:
        """The newest ACTIVE factory, where new clients and moved balances go."""
        ids = [
            fid for fid in self.alive(height) if self.factories[fid].phase(height) is Phase.ACTIVE
        ]
        return ids[-1] if ids else None

    def next_open_height(self) -> int:
        """When the next factory is due: as soon as the newest one starts dying (0 if none yet)."""
        if not self.factories:
            return 0
        return max(lc.created for lc in self.factories.values()) + self.params.active_blocks

    def should_open(self, height: int) -> bool:
        """True when no factory is ACTIVE at `height`: time to open the next rung."""
        return self.active(height) is None
