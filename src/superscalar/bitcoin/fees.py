"""Fees and dust in integer satoshis: feerates, dust limits, value conservation.

Every factory transaction must leave each output above its dust limit and pay
a fee no lower than intended; rounding is always up so we never underpay.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .script import is_p2a, parse_witness_program
from .tx import MAX_MONEY, Transaction, TxOut, check_amount

__all__ = [
    "DEFAULT_DUST_RELAY_FEERATE",
    "DUST_P2A",
    "DUST_P2TR",
    "DUST_P2WPKH",
    "DUST_P2WSH",
    "FeeError",
    "Feerate",
    "dust_limit",
    "dust_threshold",
    "fee_for_vsize",
    "fee_from_values",
    "is_dust",
    "transaction_fee",
]

DEFAULT_DUST_RELAY_FEERATE = 3000
"""Bitcoin Core's default `-dustrelayfee`, in sat per 1000 vbytes."""
DUST_P2WPKH = 294
DUST_P2WSH = 330
DUST_P2TR = 330
DUST_P2A = 0
"""A P2A anchor may carry 0 sat under the ephemeral-dust policy (Bitcoin Core 29+)."""

_MAX_STANDARD_SCRIPT = 10_000


class FeeError(ValueError):
    """Outputs exceed inputs, or a feerate or size is out of range."""


@dataclass(frozen=True, slots=True, order=True)
class Feerate:
    """A feerate in satoshis per 1000 vbytes (Bitcoin Core's unit; exact in integers)."""

    sat_per_kvb: int

    def __post_init__(self) -> None:
        if isinstance(self.sat_per_kvb, bool) or not isinstance(self.sat_per_kvb, int):
            raise FeeError("feerate must be an int of sat/kvB")
        if not 0 <= self.sat_per_kvb <= MAX_MONEY:
            raise FeeError(f"feerate {self.sat_per_kvb} sat/kvB is out of range")

    @classmethod
    def from_sat_per_vb(cls, sat_per_vb: int) -> Feerate:
        return cls(sat_per_vb * 1000)

    @classmethod
    def from_sat_per_kw(cls, sat_per_kw: int) -> Feerate:
        """From Lightning's unit, sat per 1000 weight units (1 vbyte = 4 weight units)."""
        return cls(sat_per_kw * 4)

    def fee_for_vsize(self, vsize: int) -> int:
        """The fee for `vsize` vbytes, rounded up to a whole satoshi."""
        if isinstance(vsize, bool) or not isinstance(vsize, int) or vsize < 0:
            raise FeeError(f"vsize must be a non-negative int, got {vsize!r}")
        return -(-self.sat_per_kvb * vsize // 1000)

    def fee_for_weight(self, weight: int) -> int:
        """The fee for `weight` weight units, charged on vsize = ceil(weight / 4) like Core."""
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
            raise FeeError(f"weight must be a non-negative int, got {weight!r}")
        return self.fee_for_vsize((weight + 3) // 4)

    def fee_for_tx(self, tx: Transaction) -> int:
        return self.fee_for_vsize(tx.vsize)


def fee_for_vsize(feerate: Feerate, vsize: int) -> int:
    """The fee for `vsize` vbytes at `feerate`, in whole satoshis rounded up."""
    return feerate.fee_for_vsize(vsize)


def dust_threshold(
    script_pubkey: bytes, dust_relay_feerate: int = DEFAULT_DUST_RELAY_FEERATE
) -> int:
    """Bitcoin Core's `GetDustThreshold`: the cost to create and later spend the output.

    Output size plus a typical spending input (67 vbytes for witness programs,
    148 otherwise) at the dust relay feerate. OP_RETURN outputs have no dust limit.
    This is the classic rule, which gives 240 sat for P2A; see `dust_limit`.
    """
    if script_pubkey[:1] == b"\x6a" or len(script_pubkey) > _MAX_STANDARD_SCRIPT:
        return 0
    size = len(TxOut(0, script_pubkey).serialize())
    size += 32 + 4 + 1 + (107 // 4 if parse_witness_program(script_pubkey) else 107) + 4
    return Feerate(dust_relay_feerate).fee_for_vsize(size)


def dust_limit(script_pubkey: bytes) -> int:
    """The smallest value we let an output of this type carry.

    Core's default threshold (294 P2WPKH, 330 P2WSH/P2TR), except P2A anchors,
    which may be 0 sat: Bitcoin Core 29's ephemeral-dust policy relays one dust
    output in a zero-fee TRUC transaction if a child in the same package spends it.
    """
    if is_p2a(script_pubkey):
        return DUST_P2A
    return dust_threshold(script_pubkey)


def is_dust(txout: TxOut) -> bool:
    return txout.value < dust_limit(txout.script_pubkey)


def fee_from_values(input_values: Iterable[int], output_values: Iterable[int]) -> int:
    """`sum(inputs) - sum(outputs)`; raises `FeeError` if outputs exceed inputs."""
    sum_in = sum(check_amount(v, "input value") for v in input_values)
    sum_out = sum(check_amount(v, "output value") for v in output_values)
    fee = sum_in - sum_out
    if fee < 0:
        raise FeeError(f"outputs ({sum_out} sat) exceed inputs ({sum_in} sat)")
    return fee


def transaction_fee(tx: Transaction, spent_values: Sequence[int]) -> int:
    """The fee `tx` pays, given the value of each output its inputs spend (in order)."""
    if len(spent_values) != len(tx.inputs):
        raise FeeError(f"{len(tx.inputs)} inputs but {len(spent_values)} spent values given")
    return fee_from_values(spent_values, (o.value for o in tx.outputs))
