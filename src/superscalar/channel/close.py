"""Closing the channel cooperatively, and its balances for a factory-level close.

A cooperative close spends the funding output by the MuSig2 key path to the
two sides' scripts. The closer (who sent the first shutdown) pays the whole
fee from its own output, as in BOLT #2's simple close, so nothing needs
negotiating; an output that would fall below dust is dropped and its value
goes to the fee. A factory-level close instead pays every channel's balance
straight from the factory (no channel transaction on chain): it takes
`channel_balances` of each quiescent channel.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..bitcoin.fees import dust_limit
from ..bitcoin.tx import Transaction, TxIn, TxOut
from .config import Funding
from .errors import ChannelError, InsufficientBalanceError
from .htlc import CommitmentSpec, SpecHtlc
from .record import ChannelState, is_quiescent

__all__ = ["CLOSING_SEQUENCE", "ChannelBalances", "channel_balances", "closing_transaction"]

CLOSING_SEQUENCE = 0xFFFFFFFD
"""Replaceable, no relative lock."""


def closing_transaction(
    funding: Funding,
    spec: CommitmentSpec,
    *,
    closer_is_local: bool,
    fee_sat: int,
    local_script: bytes,
    remote_script: bytes,
    dust_limit_sat: int,
) -> Transaction:
    """The unsigned cooperative closing tx for a spec with no HTLCs (holder's view)."""
    if spec.htlcs:
        raise ChannelError("cannot close cooperatively with HTLCs in flight")
    if spec.total_msat != funding.amount_msat:
        raise ChannelError("spec does not match the funding amount")
    local = spec.to_local_msat // 1000
    remote = spec.to_remote_msat // 1000
    if closer_is_local:
        local -= fee_sat
    else:
        remote -= fee_sat
    if local < 0 or remote < 0 or fee_sat < 0:
        raise InsufficientBalanceError(f"the closer cannot pay a fee of {fee_sat} sat")
    outputs = sorted(
        (
            TxOut(value, script)
            for value, script in ((local, local_script), (remote, remote_script))
            if value >= max(dust_limit_sat, dust_limit(script))
        ),
        key=lambda o: (o.value, o.script_pubkey),
    )
    if not outputs:
        raise ChannelError("both closing outputs would be dust")
    return Transaction(2, (TxIn(funding.outpoint, b"", CLOSING_SEQUENCE),), tuple(outputs), 0)


@dataclass(frozen=True, slots=True)
class ChannelBalances:
    """Our and the peer's money in the latest commitment we hold, in msat.

    `quiescent` means no update or HTLC is in flight in either direction, so
    these are final: a factory-level close may pay `local_sat`/`remote_sat`
    (the msat remainders, at most 1 sat per side, go to the fee).
    """

    local_msat: int
    remote_msat: int
    htlcs: tuple[SpecHtlc, ...]
    quiescent: bool

    @property
    def local_sat(self) -> int:
        return self.local_msat // 1000

    @property
    def remote_sat(self) -> int:
        return self.remote_msat // 1000


def channel_balances(state: ChannelState) -> ChannelBalances:
    lc = state.local_commit
    if lc is None:
        raise ChannelError("the channel is not open yet")
    spec = lc.spec
    return ChannelBalances(spec.to_local_msat, spec.to_remote_msat, spec.htlcs, is_quiescent(state))
