"""When the LSP must enforce a forwarded HTLC on chain, and how far apart its two expiries are.

The LSP forwards a payer's HTLC (expiry `E_in`) to the payee (expiry `E_out`). Both
channels live at leaves of a factory tree, so putting either HTLC on chain first
means publishing that client's whole root→leaf path (worst-case exit delay: the
sum of its DW layers' relative locks), then the commitment, then the HTLC's own
second-stage tx — each of those a transaction that needs a block of its own.

- **Enforcing the incoming HTLC** (`must_enforce`): once the LSP holds the
  preimage (the payee fulfilled downstream) and the payer has not taken the
  fulfil off-chain, the LSP must *start* going on chain `enforce_lead` blocks
  before `E_in`: the payer's exit path, plus `confirmation_margin` (one block for
  each path tx, the commitment and the HTLC-success tx, plus slack). From `E_in`
  on, the payer's timeout path on that output opens and it would take its money
  back although the LSP paid the payee.
- **The forwarding delta** (`forward_cltv_delta`): a payee that goes silent with
  the preimage may claim on chain as late as the LSP's timeout of the downstream
  HTLC confirms, i.e. up to `E_out` + the payee's lead; the LSP then learns the
  preimage and needs the payer's lead to claim upstream. So
  `E_in − E_out ≥ payer lead + payee lead + min_cltv_delta` (the channel's own
  claim budget on top).
- **The limit before the distribution locktime** (`htlc_expiry_limit`): the LSP's
  enforcement must start before the distribution tx becomes valid (the root
  kickoff it publishes then spends the distribution tx's input for good), so
  `E_in − payer lead < locktime`.

- **The client's claim** (`revealed_claims`, `claims_due`): the same rule from the
  other side. A client that revealed the secret of an HTLC/PTLC it received (a
  payee's preimage, a mover's old factory key) is paid only once the LSP's update
  removes it from the client's commitment. If the LSP takes the secret and withholds
  that update, the client must go on chain by itself `enforce_lead` blocks before the
  expiry (its own path's worst-case exit delay plus the confirmation margin), or the
  LSP's timeout path on that output opens and it keeps both the secret and the money.

Pure functions of heights and delays; the daemons read the delays from their tree
(`FactoryShape.exit_delay`, a client's verified view).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..channel.errors import ChannelError
from ..channel.htlc import CommitmentSpec, check_preimage

__all__ = [
    "ENFORCE_SLACK_BLOCKS",
    "Claim",
    "claims_due",
    "confirmation_margin",
    "enforce_height",
    "enforce_lead",
    "forward_cltv_delta",
    "htlc_expiry_limit",
    "must_enforce",
    "revealed_claims",
]

ENFORCE_SLACK_BLOCKS = 2
"""Blocks of slack on top of one block per transaction (a tx may miss its first block)."""


def _blocks(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    return value


def confirmation_margin(path_txs: int, slack: int = ENFORCE_SLACK_BLOCKS) -> int:
    """Blocks the txs of an on-chain HTLC claim need beyond the path's relative locks: one
    per path tx, one for the commitment, one for the HTLC-success tx, and `slack`."""
    return _blocks(path_txs, "path_txs") + 2 + _blocks(slack, "slack")


def enforce_lead(exit_delay: int, margin: int) -> int:
    """Blocks before an HTLC's expiry by which its holder must start going on chain."""
    return _blocks(exit_delay, "exit_delay") + _blocks(margin, "margin")


def enforce_height(expiry: int, exit_delay: int, margin: int) -> int:
    """The height from which the LSP must publish the payer's path to claim an HTLC
    expiring at `expiry` before the payer's timeout path opens."""
    return _blocks(expiry, "expiry") - enforce_lead(exit_delay, margin)


def must_enforce(height: int, expiry: int, exit_delay: int, margin: int) -> bool:
    """True when, at chain height `height`, an HTLC whose preimage we hold and which the
    payer has not removed off-chain must go on chain now (waiting one more block could
    leave the HTLC-success tx unconfirmed at `expiry`)."""
    return _blocks(height, "height") >= enforce_height(expiry, exit_delay, margin)


def forward_cltv_delta(
    payer_exit_delay: int,
    payer_margin: int,
    payee_exit_delay: int,
    payee_margin: int,
    min_cltv_delta: int,
) -> int:
    """The least `E_in − E_out` the LSP forwards with (see the module docstring)."""
    return (
        enforce_lead(payer_exit_delay, payer_margin)
        + enforce_lead(payee_exit_delay, payee_margin)
        + _blocks(min_cltv_delta, "min_cltv_delta")
    )


def htlc_expiry_limit(distribution_locktime: int, payer_exit_delay: int, payer_margin: int) -> int:
    """The first incoming expiry the LSP refuses: at `E_in ≥ locktime + payer lead` its
    enforcement would start at or after the distribution locktime, when the distribution
    tx (paying opening balances) may replace the tree."""
    return _blocks(distribution_locktime, "distribution_locktime") + enforce_lead(
        payer_exit_delay, payer_margin
    )


@dataclass(frozen=True, slots=True)
class Claim:
    """A received HTLC/PTLC whose secret we hold (and so may have revealed), still in our
    latest local commitment: ours on chain with the secret until its expiry."""

    htlc_id: int
    amount_msat: int
    cltv_expiry: int
    secret: bytes
    """The preimage (HTLC) or the scalar (PTLC)."""


def revealed_claims(spec: CommitmentSpec, secrets: Mapping[bytes, bytes]) -> list[Claim]:
    """The HTLCs/PTLCs we received in commitment `spec` (our latest local one: an update
    that removed one is complete only once it is gone from here) whose secret is in
    `secrets` (payment hash → preimage or scalar; a wrong secret is ignored)."""
    out = []
    for h in spec.received():
        secret = secrets.get(h.payment_hash)
        if secret is None:
            continue
        try:
            check_preimage(h, secret)
        except (ChannelError, ValueError):
            continue
        out.append(Claim(h.id, h.amount_msat, h.cltv_expiry, secret))
    return out


def claims_due(height: int, claims: Iterable[Claim], exit_delay: int, margin: int) -> list[Claim]:
    """The claims that must go on chain at `height` (`must_enforce` of each): the client's
    exit path (`exit_delay`, its worst case) and `margin` blocks must still fit before the
    expiry, after which the LSP's timeout path opens on the output."""
    return [c for c in claims if must_enforce(height, c.cltv_expiry, exit_delay, margin)]
