"""The channel's peer messages, local commands and effects — the sans-IO surface.

`step(secrets, state, event)` takes one *event* — a message from the peer or
a command from our own node — and returns the new state and a tuple of
*effects* for the shell to carry out, in order. Effects that commit us to
something (a signature, a revocation, a preimage) always come after the
`PersistState` that records it: "persist before send" is the effect order.

Messages mirror BOLT #2 (with the simple-taproot-channel nonce fields) but
carry a few explicit fields BOLT leaves implicit — the commitment number in
commitment_signed and revoke_and_ack — so a stale or replayed message is
refused by number rather than by a signature that happens not to verify. The
wire layer encodes them; here they are typed values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from ..bitcoin.tx import Transaction
from ..crypto.keys import PublicKey
from ..crypto.musig import PartialSignature, PublicNonce
from .config import ChannelConfig
from .htlc import Htlc, UpdateAddHtlc, UpdateFailHtlc, UpdateFulfillHtlc
from .keys import Basepoints
from .record import ChannelState
from .revocation import RevokedCommitment

__all__ = [
    "AddHtlc",
    "BroadcastTransaction",
    "ChainTip",
    "ChannelClosed",
    "ChannelOpen",
    "ChannelReady",
    "ChannelReestablish",
    "ClosingComplete",
    "ClosingSig",
    "Command",
    "CommitmentSigned",
    "DataLossDetected",
    "Effect",
    "Event",
    "FailHtlc",
    "ForceClose",
    "FulfillHtlc",
    "FundingSigned",
    "IncomingHtlcCommitted",
    "InitiateShutdown",
    "Message",
    "OutgoingHtlcFailed",
    "OutgoingHtlcFulfilled",
    "PersistRevokedCommitment",
    "PersistState",
    "Reestablish",
    "RevokeAndAck",
    "SendMessage",
    "Shutdown",
    "SignCommitment",
]


# -- peer messages -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelOpen:
    """open_channel/accept_channel in one: each side sends its half once.

    Carries the per-commitment points and verification nonces of the sender's
    first two commitments (0 is signed at open, 1 by the first update).
    """

    basepoints: Basepoints
    config: ChannelConfig
    is_initiator: bool
    balance_msat: int
    first_points: tuple[PublicKey, PublicKey]
    first_nonces: tuple[PublicNonce, PublicNonce]
    close_script: bytes


@dataclass(frozen=True, slots=True)
class FundingSigned:
    """The partial signature on the receiver's commitment 0, with our JIT nonce."""

    partial_sig: PartialSignature
    nonce: PublicNonce


@dataclass(frozen=True, slots=True)
class CommitmentSigned:
    """Signatures on the receiver's commitment `commitment_number`.

    `partial_sig` + `nonce`: our MuSig2 half for the funding key path (the
    receiver completes it only to force-close). `htlc_signatures`: one BIP340
    signature per untrimmed HTLC output, in vout order, on the receiver's
    second-stage transaction — for a PTLC the receiver was offered, a 65-byte
    adaptor signature locked to the PTLC's point instead.
    """

    commitment_number: int
    partial_sig: PartialSignature
    nonce: PublicNonce
    htlc_signatures: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class RevokeAndAck:
    """Revoke commitment `commitment_number`; announce the point and nonce of number + 2.

    `ptlc_claim_signatures`: for the sender's new commitment (number + 1), one
    65-byte adaptor signature per untrimmed PTLC it offered, in vout order, on
    the receiver's claim tx (`Commitment.ptlc_claim_tx`): what the receiver
    needs before it may reveal a PTLC's scalar.
    """

    commitment_number: int
    per_commitment_secret: bytes
    next_per_commitment_point: PublicKey
    next_nonce: PublicNonce
    ptlc_claim_signatures: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class ChannelReestablish:
    """Where our side stands, sent first on every reconnect (BOLT-2 `channel_reestablish`).

    `next_commitment_number` is one past our latest commitment (the next
    commitment_signed we expect); `next_revocation_number` is the peer
    commitment whose revocation we expect next (so we hold all secrets below
    it); `last_remote_secret` is the newest of those secrets (zeros if none) —
    it proves to the peer how far it got; `current_point` is our latest
    commitment's point. `next_nonce` is our verification nonce for
    `next_commitment_number`: a re-sent commitment_signed is signed against it.
    """

    next_commitment_number: int
    next_revocation_number: int
    last_remote_secret: bytes
    current_point: PublicKey
    next_nonce: PublicNonce


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Start (or answer) a cooperative close: where our money goes.

    The closee's shutdown carries its MuSig2 nonce for the closing transaction;
    the closer sends its nonce just in time, with its partial signature.
    """

    script_pubkey: bytes
    nonce: PublicNonce | None = None


@dataclass(frozen=True, slots=True)
class ClosingComplete:
    """The closer's partial signature on the closing tx; it pays `fee_sat` from its output."""

    fee_sat: int
    partial_sig: PartialSignature
    nonce: PublicNonce


@dataclass(frozen=True, slots=True)
class ClosingSig:
    """The closee's partial signature; with it either side holds the final closing tx."""

    partial_sig: PartialSignature


Message: TypeAlias = (
    ChannelOpen
    | FundingSigned
    | UpdateAddHtlc
    | UpdateFulfillHtlc
    | UpdateFailHtlc
    | CommitmentSigned
    | RevokeAndAck
    | Shutdown
    | ClosingComplete
    | ClosingSig
    | ChannelReestablish
)


# -- local commands --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AddHtlc:
    """Offer an HTLC to the peer (pay, or forward); with `point`, a PTLC locked to it
    (then `payment_hash` must be `ptlc_payment_hash(point)`)."""

    amount_msat: int
    payment_hash: bytes
    cltv_expiry: int
    onion: bytes = b""
    point: PublicKey | None = None


@dataclass(frozen=True, slots=True)
class FulfillHtlc:
    """Settle an HTLC the peer offered us (`preimage`: a PTLC's 32-byte scalar)."""

    id: int
    preimage: bytes


@dataclass(frozen=True, slots=True)
class FailHtlc:
    """Return an HTLC the peer offered us."""

    id: int
    reason: bytes = b""


@dataclass(frozen=True, slots=True)
class SignCommitment:
    """Sign the peer's next commitment with every update so far."""


@dataclass(frozen=True, slots=True)
class ChainTip:
    """A new best block: CLTV expiry checks are made against `height`."""

    height: int


@dataclass(frozen=True, slots=True)
class InitiateShutdown:
    """Close cooperatively: we are the closer and pay `fee_sat` from our output."""

    fee_sat: int


@dataclass(frozen=True, slots=True)
class Reestablish:
    """The connection to the peer is new: forget uncommitted updates, send our reestablish.

    Until the peer's `ChannelReestablish` arrives the channel takes no other event.
    """


@dataclass(frozen=True, slots=True)
class ForceClose:
    """Complete and broadcast our latest commitment (the shell CPFPs its anchor)."""


Command: TypeAlias = (
    AddHtlc
    | FulfillHtlc
    | FailHtlc
    | SignCommitment
    | ChainTip
    | InitiateShutdown
    | ForceClose
    | Reestablish
)
Event: TypeAlias = Message | Command


# -- effects -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PersistState:
    """Durably store `state` before carrying out any later effect of the same step."""

    state: ChannelState


@dataclass(frozen=True, slots=True)
class PersistRevokedCommitment:
    """Store a revoked remote commitment (a revocation-log row) for penalties and towers."""

    revoked: RevokedCommitment


@dataclass(frozen=True, slots=True)
class SendMessage:
    message: Message


@dataclass(frozen=True, slots=True)
class ChannelReady:
    """Both commitments 0 are signed: the channel can carry HTLCs."""


@dataclass(frozen=True, slots=True)
class IncomingHtlcCommitted:
    """An HTLC the peer offered is irrevocably committed: safe to forward or settle."""

    htlc: Htlc


@dataclass(frozen=True, slots=True)
class OutgoingHtlcFulfilled:
    """The peer revealed the preimage of an HTLC we offered: fulfill upstream now."""

    htlc: Htlc
    preimage: bytes


@dataclass(frozen=True, slots=True)
class OutgoingHtlcFailed:
    """An HTLC we offered is irrevocably failed: fail it upstream."""

    htlc: Htlc
    reason: bytes


@dataclass(frozen=True, slots=True)
class BroadcastTransaction:
    """Publish `tx`; `anchor_vout` (if any) is the P2A output to CPFP it through."""

    tx: Transaction
    anchor_vout: int | None = None


@dataclass(frozen=True, slots=True)
class ChannelClosed:
    """The channel is closed (cooperatively or by our force close); `tx` closes it."""

    tx: Transaction
    cooperative: bool


@dataclass(frozen=True, slots=True)
class DataLossDetected:
    """The peer proved our state is outdated: never broadcast our commitment; operator action."""

    reason: str


Effect: TypeAlias = (
    PersistState
    | PersistRevokedCommitment
    | SendMessage
    | ChannelReady
    | IncomingHtlcCommitted
    | OutgoingHtlcFulfilled
    | OutgoingHtlcFailed
    | BroadcastTransaction
    | ChannelClosed
    | DataLossDetected
)
