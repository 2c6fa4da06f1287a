"""What the LSP accepts from a join, and what it gives a newcomer: pure rules.

A join (`JoinRequest`) is the client's word, so nothing in it becomes money: the
client's opening balance is the operator's credit (`LspConfig.client_credit_sat`,
default 0), and a balance to carry over only exists in the answer to a rotation
invite, where the LSP checks it against its own channel. The amount a join asks
for only sizes the channel (inbound capacity, the LSP's money on the LSP's side).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from superscalar.wire.messages import JoinRequest

from .distribution import client_payout_sat

__all__ = ["MIN_CLIENT_SAT", "JoinRefusal", "Refusal", "join_refusal", "opening_credit_msat"]

MIN_CLIENT_SAT = 1000
"""The smallest `amount_sat` a join may ask for (its channel is twice that)."""


class JoinRefusal(StrEnum):
    AMOUNT_TOO_SMALL = "amount-too-small"
    AMOUNT_TOO_LARGE = "amount-too-large"
    UNASKED_BALANCE = "unasked-balance"
    """A first join carrying an opening balance: only a rotation answer carries one."""
    UNINVITED_MOVE = "uninvited-move"
    """A move out of a factory, on a fresh connection rather than in answer to an invite."""


@dataclass(frozen=True)
class Refusal:
    code: JoinRefusal
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def join_refusal(join: JoinRequest, max_client_sat: int) -> Refusal | None:
    """Why the LSP turns this join away at the door (None: it may queue or reattach)."""
    if join.balance_msat is not None:
        return Refusal(JoinRefusal.UNASKED_BALANCE, "a join carries no opening balance")
    if join.rotating_from is not None:
        return Refusal(JoinRefusal.UNINVITED_MOVE, "a move only answers a rotation invite")
    if join.factory_id is not None:
        return None  # a reconnect: its amount was accepted when it joined
    if join.amount_sat < MIN_CLIENT_SAT:
        return Refusal(
            JoinRefusal.AMOUNT_TOO_SMALL, f"amount {join.amount_sat} sat < {MIN_CLIENT_SAT}"
        )
    if join.amount_sat > max_client_sat:
        return Refusal(
            JoinRefusal.AMOUNT_TOO_LARGE, f"amount {join.amount_sat} sat > {max_client_sat}"
        )
    return None


def opening_credit_msat(credit_sat: int, join: JoinRequest) -> int:
    """A newcomer's opening balance: the operator's credit, at most its amount, and 0 rather
    than dust (the distribution tx pays it in whole sat, and never a dust output)."""
    sat = min(credit_sat, join.amount_sat)
    return client_payout_sat(sat * 1000, bytes(join.payout_script)) * 1000
