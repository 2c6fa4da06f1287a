"""What a channel side remembers: the `ChannelState` record and its read-only queries.

It sits below `messages` (whose `PersistState` carries a state), `close` (which reads
balances off it) and `state` (the update machine that moves it), so those three import
it and never each other in a circle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from ..bitcoin.tx import Transaction
from ..crypto.keys import PublicKey
from ..crypto.musig import PartialSignature, PublicNonce, SecretNonce
from .config import ChannelConfig, Funding
from .htlc import CommitmentSpec, Update
from .keys import Basepoints
from .revocation import RevocationStore
from .scripts import FundingOutput

__all__ = [
    "ChannelState",
    "CloseNegotiation",
    "LocalChanges",
    "LocalCommit",
    "RemoteChanges",
    "RemoteCommit",
    "Status",
    "has_changes_to_sign",
    "is_quiescent",
]


class Status(Enum):
    AWAITING_FUNDING_SIGNATURE = "awaiting_funding_signature"
    OPEN = "open"
    SHUTTING_DOWN = "shutting_down"
    CLOSED = "closed"
    FORCE_CLOSED = "force_closed"
    DATA_LOSS = "data_loss"


@dataclass(frozen=True, slots=True)
class LocalCommit:
    """Our latest commitment and the peer's signatures on it (what a force close needs)."""

    number: int
    spec: CommitmentSpec
    point: PublicKey
    txid: bytes
    partial_sig: PartialSignature
    nonce: PublicNonce
    htlc_signatures: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class RemoteCommit:
    """A commitment of the peer's that we signed; `spec` is from the peer's side."""

    number: int
    spec: CommitmentSpec
    txid: bytes
    point: PublicKey
    signed_at_local: int = 0
    """Our local commitment number when we signed this one: tells a reestablish whether
    our revoke_and_ack for the previous local commitment went out before or after it."""
    ptlc_claim_signatures: tuple[bytes, ...] = ()
    """The peer's verified adaptor signatures on our claim of each PTLC it offered in this
    commitment (vout order), from its revoke_and_ack: we reveal a PTLC's scalar only
    once we hold them for every unrevoked commitment of the peer's holding the PTLC."""


@dataclass(frozen=True, slots=True)
class LocalChanges:
    """Updates we sent: not yet signed / in a commitment_signed we sent / acked by the peer."""

    proposed: tuple[Update, ...] = ()
    signed: tuple[Update, ...] = ()
    acked: tuple[Update, ...] = ()

    def all(self) -> tuple[Update, ...]:
        return self.proposed + self.signed + self.acked


@dataclass(frozen=True, slots=True)
class RemoteChanges:
    """Updates the peer sent: received / in our commitment (acked) / in its next (signed)."""

    proposed: tuple[Update, ...] = ()
    acked: tuple[Update, ...] = ()
    signed: tuple[Update, ...] = ()

    def all(self) -> tuple[Update, ...]:
        return self.proposed + self.acked + self.signed


@dataclass(frozen=True)
class CloseNegotiation:
    """A cooperative close in progress.

    The closer (who sent the first shutdown) pays the fee and signs first; the
    closee's MuSig2 nonce comes with its shutdown. `closee_secnonce` is
    volatile: a secret nonce is never written to disk, so after a restart a
    close restarts with a fresh shutdown.
    """

    we_are_closer: bool
    fee_sat: int = 0
    remote_script: bytes | None = None
    remote_nonce: PublicNonce | None = None
    closee_secnonce: SecretNonce | None = field(default=None, compare=False, repr=False)
    closee_nonce: PublicNonce | None = None
    closing_tx: Transaction | None = None
    closer_nonce: PublicNonce | None = None
    closer_psig: PartialSignature | None = None


@dataclass(frozen=True)
class ChannelState:
    """Everything a channel side must remember (no secrets: those stay in `ChannelSecrets`)."""

    funding: Funding
    config: ChannelConfig
    is_initiator: bool
    local: Basepoints
    remote: Basepoints
    local_close_script: bytes
    funding_output: FundingOutput = field(compare=False, repr=False)
    obscuring: int = field(repr=False)
    status: Status
    local_commit: LocalCommit | None
    remote_commit: RemoteCommit
    remote_next_commit: RemoteCommit | None
    remote_next_point: PublicKey
    remote_next_nonce: PublicNonce
    local_next_nonce: PublicNonce
    local_changes: LocalChanges = LocalChanges()
    remote_changes: RemoteChanges = RemoteChanges()
    local_next_htlc_id: int = 0
    remote_next_htlc_id: int = 0
    revocations: RevocationStore = field(default_factory=RevocationStore)
    chain_height: int = 0
    close: CloseNegotiation | None = None
    reestablishing: bool = False
    """Set by `Reestablish` (a new connection) until the peer's `ChannelReestablish`."""


def has_changes_to_sign(state: ChannelState) -> bool:
    """True if a SignCommitment now would carry updates (and is allowed)."""
    return (
        state.local_commit is not None
        and not state.reestablishing
        and state.status in (Status.OPEN, Status.SHUTTING_DOWN)
        and state.remote_next_commit is None
        and bool(state.local_changes.proposed or state.remote_changes.acked)
    )


def is_quiescent(state: ChannelState) -> bool:
    """No update in flight, no HTLC in either commitment: balances are final."""
    lc = state.local_commit
    return (
        lc is not None
        and state.remote_next_commit is None
        and not state.local_changes.all()
        and not state.remote_changes.all()
        and not lc.spec.htlcs
        and not state.remote_commit.spec.htlcs
    )
