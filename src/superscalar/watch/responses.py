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
from ..channel.onchain import build_sweep
from ..channel.penalty import build_penalty, penalty_inputs, second_stage_penalty_input
from ..channel.revocation import RevokedCommitment
from ..channel.state import ChannelState
from .core import EntryKind, WatchEntry, WatchError

__all__ = [
    "PENALTY_LADDER",
    "lstock_burn_entry",
    "newer_state_entry",
    "penalty_after_spends",
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


def penalty_after_spends(
    secrets: ChannelSecrets,
    state: ChannelState,
    revoked: RevokedCommitment,
    destination: bytes,
    previous: WatchEntry,
    spenders: Sequence[Transaction],
    ladder: Sequence[Feerate] = PENALTY_LADDER,
) -> WatchEntry | None:
    """The penalty rebuilt after the cheater spent some revoked outputs (`spenders`, in order).

    An HTLC output taken into an HTLC-success/-timeout tx is still ours: its
    output pays the same revocation key, so it joins the sweep; an output spent
    any other way is left out. None when nothing is left to take.
    """
    gone = {i.prevout for tx in spenders for i in tx.inputs}
    inputs = penalty_inputs(
        secrets,
        state,
        revoked,
        include_anchor=False,
        exclude=frozenset(op for op in gone if op.txid == revoked.txid),
    )
    for tx in spenders:
        if not any(i.prevout.txid == revoked.txid for i in tx.inputs):
            continue
        try:
            extra = second_stage_penalty_input(secrets, state, revoked, tx)
        except ChannelError:
            continue  # not a second-stage tx (the cheater's CSV sweep of to_local, say)
        if extra.outpoint not in gone:
            inputs.append(extra)
    rungs: list[Transaction] = []
    for feerate in ladder:
        try:
            rungs.append(build_sweep(inputs, destination, feerate))
        except ChannelError:
            break
    if not rungs:
        return None
    return WatchEntry(
        EntryKind.PENALTY,
        revoked.txid,
        tuple(rungs),
        previous.not_before,
        previous.deadline,
        label=previous.label + " (rebuilt)",
    )
