"""Channel parameters: the funding output and the limits both sides enforce.

In a factory the LSP sets one policy for all its leaf channels and each client
accepts it when it joins, so the two sides share one `ChannelConfig` (checked
equal at open) instead of BOLT #2's pair of per-side limit sets. Every limit
applies in both directions: to what we offer and to what we accept.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..bitcoin.fees import DUST_P2TR
from ..bitcoin.tx import OutPoint, check_amount

__all__ = ["BOLT_MAX_CLTV_DELTA", "MAX_HTLCS_PER_SIDE", "ChannelConfig", "Funding"]

BOLT_MAX_CLTV_DELTA = 2016
"""BOLT #2's ceiling on how far in the future an HTLC may expire, in blocks."""
MAX_HTLCS_PER_SIDE = 114
"""Keeps a commitment with every HTLC slot used under TRUC's 10,000-vbyte limit."""


@dataclass(frozen=True, slots=True)
class Funding:
    """The 2-of-2 output the channel spends: a factory leaf output (or any funding tx)."""

    outpoint: OutPoint
    amount_sat: int

    def __post_init__(self) -> None:
        check_amount(self.amount_sat, "funding amount")

    @property
    def amount_msat(self) -> int:
        return self.amount_sat * 1000


def _positive(value: int, name: str, low: int = 1, high: int = (1 << 64) - 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an int in {low}..{high}, got {value!r}")


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """Limits and delays of one channel (both directions).

    `min_cltv_delta` is the exit budget: an HTLC must expire at least this many
    blocks after the current tip, enough for the receiver to leave the factory
    (worst-case exit delay), confirm its commitment and claim on chain.
    `cltv_deadline`, if set, is the factory's timeout height: after it the LSP
    can sweep the tree, so no HTLC may expire later than it.
    """

    to_self_delay: int = 144
    dust_limit_sat: int = DUST_P2TR
    channel_reserve_sat: int = 0
    htlc_minimum_msat: int = 1
    max_accepted_htlcs: int = 30
    max_htlc_value_in_flight_msat: int = (1 << 64) - 1
    min_cltv_delta: int = 18
    max_cltv_delta: int = BOLT_MAX_CLTV_DELTA
    cltv_deadline: int | None = None

    def __post_init__(self) -> None:
        _positive(self.to_self_delay, "to_self_delay", 1, 0xFFFF)
        _positive(self.dust_limit_sat, "dust_limit_sat", DUST_P2TR)
        _positive(self.channel_reserve_sat, "channel_reserve_sat", 0)
        _positive(self.htlc_minimum_msat, "htlc_minimum_msat", 1)
        _positive(self.max_accepted_htlcs, "max_accepted_htlcs", 1, MAX_HTLCS_PER_SIDE)
        _positive(self.max_htlc_value_in_flight_msat, "max_htlc_value_in_flight_msat")
        _positive(self.min_cltv_delta, "min_cltv_delta", 1, BOLT_MAX_CLTV_DELTA)
        _positive(self.max_cltv_delta, "max_cltv_delta", self.min_cltv_delta, BOLT_MAX_CLTV_DELTA)
        if self.cltv_deadline is not None:
            _positive(self.cltv_deadline, "cltv_deadline", 1, 499_999_999)
