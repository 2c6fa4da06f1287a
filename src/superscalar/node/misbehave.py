"""Dev-only misbehaviour switches: an LSP (or a client) patched to attack its peers.

Non-custodial means the counterparty is the attacker. These switches make a real
daemon misbehave in exactly one named way, so process tests can run the attack
against unmodified peers and check, on chain, that the honest side stays whole.

They are served only with `--dev-tools` on a regtest chain (`superscalar lsp
--dev-tools --dev-misbehave NAME`); `Misbehaviour.check_allowed` refuses
anything else, so a production daemon can never be started misbehaving.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

__all__ = ["ClientMisbehaviour", "LspMisbehaviour", "Misbehaviour", "MisbehaviourRefused"]


class LspMisbehaviour(StrEnum):
    """One attack of a malicious LSP each (numbers: issue 14's list)."""

    FAKE_CLOSE_DONE = "fake-close-done"
    """1: tell clients the factory closed (a made-up txid) without any close on chain."""
    SHORT_CLTV = "short-cltv"
    """2: propose a factory whose CLTV timeout is too close to exit before it."""
    LONG_DW_STEP = "long-dw-step"
    """2: propose DW steps so long that an exit cannot finish before the CLTV."""
    SKIP_MOVE_PTLC = "skip-move-ptlc"
    """3: rotate clients into a new factory but never offer the move PTLC."""
    SHORT_PTLC_EXPIRY = "short-ptlc-expiry"
    """4: offer the move PTLC with an expiry too near to enforce it on chain."""
    READVANCE_SAME_STATE = "readvance-same-state"
    """5: after a leaf advance is signed, propose a different tx at the same DW state."""
    WITHHOLD_ADVANCE_DONE = "withhold-advance-done"
    """6: take the clients' advance signatures, never send DONE, keep using the channel."""
    WITHHOLD_CLOSE_DONE = "withhold-close-done"
    """6: take the clients' close signatures, never send DONE, keep using the channel."""
    WITHHOLD_SETTLE = "withhold-settle"
    """Take a client's update_fulfill_htlc (a move PTLC's key, a payee's preimage), record
    the secret as usual, never send the commitment_signed / revoke_and_ack that would
    remove the HTLC from the client's commitment: then time it out on chain."""


class ClientMisbehaviour(StrEnum):
    """One attack of a malicious client each (numbers: issue 14's list)."""

    EXIT_THEN_FULFIL = "exit-then-fulfil"
    """7: start a unilateral exit of the old factory, then fulfil the move PTLC."""
    WITHHOLD_KEY = "withhold-key"
    """8: join the next factory but never fulfil the move PTLC (keep the old key)."""
    STALL_ROTATION = "stall-rotation"
    """9: accept rotation invites, then fail the ceremony every time."""
    FREE_BALANCE = "free-balance"
    """11: join claiming an opening balance it never paid for."""
    DRAIN_LIQUIDITY = "drain-liquidity"
    """12: request inbound liquidity over and over to use up its leaf."""
    HOLD_HTLC = "hold-htlc"
    """10: once the LSP fulfils our HTLC (it paid the payee), never take the fulfil: drop
    it and every channel message after it, so the HTLC stays on our commitment until its
    expiry, when we would take it back on chain by timeout."""


class MisbehaviourRefused(ValueError):
    """A misbehaviour switch where it must not be: without --dev-tools or off regtest."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        """`needs-dev-tools` or `not-regtest`."""


E = TypeVar("E", bound=StrEnum)


@dataclass(frozen=True)
class Misbehaviour(Generic[E]):
    """The switches a daemon runs with (empty in production)."""

    active: frozenset[E] = frozenset()

    def __call__(self, switch: E) -> bool:
        """Is this attack switched on?"""
        return switch in self.active

    @staticmethod
    def check_allowed(names: Iterable[str], dev_tools: bool, network: str) -> None:
        """Switches need `--dev-tools` and a regtest chain: never on real money."""
        names = tuple(names)
        if not names:
            return
        if not dev_tools:
            raise MisbehaviourRefused("needs-dev-tools", "--dev-misbehave needs --dev-tools")
        if network != "regtest":
            raise MisbehaviourRefused(
                "not-regtest", f"--dev-misbehave is regtest-only (chain is {network})"
            )
