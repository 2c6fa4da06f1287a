"""Watch entries built from the protocol cores: penalty ladders, newer DW states, L-stock burns.

Windows are counted in blocks after the trigger confirmed, as "the response is
final for the next block once the tip is `not_before` blocks past the trigger"
(a CSV of d gives d − 1), and the same for the cheater's competing spend
(`deadline`).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..bitcoin.fees import Feerate
from ..bitcoin.tx import Transaction
from ..channel.errors import ChannelError
from ..channel.keys import ChannelSecrets
from ..channel.penalty import build_penalty
from ..channel.revocation import RevokedCommitment
from ..channel.state import ChannelState
from .core import EntryKind, WatchEntry, WatchError

__all__ = [
    "PENALTY_LADDER",
    "lstock_burn_entry",
    "newer_state_entry",
    "penalty_entry",
]

PENALTY_LADDER: tuple[Feerate, ...] = tuple(
    Feerate.from_sat_per_vb(r) for r in (2, 5, 12, 30, 75, 200)
)
"""Feerates of the pre-signed penalty rungs (each is a valid RBF of the one before)."""


def _window(csv: int) -> int:
    return max(csv - 1, 0)


def penalty_entry(
    secrets: ChannelSecrets,
    state: ChannelState,
    revoked: RevokedCommitment,
    destination: bytes,
    ladder: Sequence[Feerate] = PENALTY_LADDER,
) -> WatchEntry:
    """The penalty for `revoked`, signed at every rung of `ladder` that leaves a non-dust output.

    The anchor is left out: the cheater's CPFP child may have spent it, and a
    penalty that spends it would then be invalid.
    """
    rungs: list[Transaction] = []
    for feerate in ladder:
        try:
            rungs.append(
                build_penalty(secrets, state, revoked, destination, feerate, include_anchor=False)
            )
        except ChannelError:
            break
    if not rungs:
        raise WatchError(f"revoked commitment {revoked.number} has nothing worth sweeping")
    delay = state.config.to_self_delay
    return WatchEntry(
        EntryKind.PENALTY,
        revoked.txid,
        tuple(rungs),
        not_before=0,
        deadline=_window(delay),
        label=f"revoked commitment #{revoked.number}",
    )


def newer_state_entry(
    kickoff_txid: bytes, newer_state: Transaction, newer_delay: int, older_delay: int
) -> WatchEntry:
    """Answer a kickoff under a superseded state with the newer (zero-fee, anchored) state tx."""
    if newer_state.inputs[0].prevout.txid != kickoff_txid:
        raise WatchError("the newer state does not spend this kickoff")
    if newer_delay >= older_delay:
        raise WatchError("the newer DW state must have the shorter relative lock")
    return WatchEntry(
        EntryKind.NEWER_STATE,
        kickoff_txid,
        (newer_state,),
        not_before=_window(newer_delay),
        deadline=_window(older_delay),
        anchored=True,
        label=f"newer DW state (nSequence {newer_delay} < {older_delay})",
    )


def lstock_burn_entry(old_state_txid: bytes, burn: Transaction, lstock_csv: int) -> WatchEntry:
    """Burn a superseded L-stock before the LSP's own CSV sweep of it becomes valid."""
    if burn.inputs[0].prevout.txid != old_state_txid:
        raise WatchError("the burn does not spend this state tx")
    return WatchEntry(
        EntryKind.LSTOCK_BURN,
        old_state_txid,
        (burn,),
        not_before=0,
        deadline=max(_window(lstock_csv), 1),
        label="superseded L-stock burn",
    )
