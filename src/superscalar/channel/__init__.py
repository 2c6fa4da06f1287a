"""The Poon–Dryja leaf channel: BOLT-2 updates on taproot outputs, pure (no I/O).

Each client's money in a factory lives in a channel with the LSP, funded by
the 2-of-2 MuSig2 output of the client's leaf. This package is that channel
as a sans-IO core: `step(secrets, state, event)` takes a peer message or a
local command and returns the new state plus effects (messages to send, rows
to persist, transactions to broadcast). Typical flow::

    ours = open_message(secrets, funding, config, is_initiator=..., balance_msat=...,
                        close_script=...)                      # -> send to the peer
    t = accept_open(secrets, funding, ours, theirs)            # -> FundingSigned to send
    t = step(secrets, t.state, FundingSigned(...))             # -> ChannelReady
    t = step(secrets, t.state, AddHtlc(...))                   # -> UpdateAddHtlc to send
    t = step(secrets, t.state, SignCommitment())               # -> CommitmentSigned
    ...

Modules: `keys` (BOLT-3 derivation), `scripts` (taproot trees), `htlc`
(updates and specs), `commitment` (commitment and second-stage txs),
`record` (`ChannelState`, what a side remembers), `state` (the update state machine
and reconnection), `revocation` (shachain store),
`ptlc` (adaptor signatures for point-locked HTLCs), `onchain` (force-close
resolution), `penalty`, `close`, `loopback` (both sides in memory).
"""

from .close import ChannelBalances, channel_balances, closing_transaction
from .commitment import Commitment, CommitmentOutput, OutputKind, build_commitment
from .config import ChannelConfig, Funding
from .errors import (
    BadPreimageError,
    ChannelError,
    CltvExpiryError,
    DataLossError,
    HtlcLimitError,
    InsufficientBalanceError,
    InvalidCommitmentSignatureError,
    InvalidHtlcSignatureError,
    InvalidRevocationError,
    PeerBehindError,
    StaleCommitmentError,
    UnexpectedMessageError,
    UnknownHtlcError,
)
from .htlc import (
    CommitmentSpec,
    Direction,
    Htlc,
    UpdateAddHtlc,
    UpdateFailHtlc,
    UpdateFulfillHtlc,
    ptlc_payment_hash,
)
from .keys import Basepoints, ChannelSecrets, CommitmentKeys
from .loopback import LoopbackChannel, Side
from .messages import (
    AddHtlc,
    BroadcastTransaction,
    ChainTip,
    ChannelClosed,
    ChannelOpen,
    ChannelReady,
    ChannelReestablish,
    ClosingComplete,
    ClosingSig,
    Command,
    CommitmentSigned,
    DataLossDetected,
    Effect,
    Event,
    FailHtlc,
    ForceClose,
    FulfillHtlc,
    FundingSigned,
    IncomingHtlcCommitted,
    InitiateShutdown,
    Message,
    OutgoingHtlcFailed,
    OutgoingHtlcFulfilled,
    PersistRevokedCommitment,
    PersistState,
    Reestablish,
    RevokeAndAck,
    SendMessage,
    Shutdown,
    SignCommitment,
)
from .record import ChannelState, Status, has_changes_to_sign, is_quiescent
from .revocation import RevocationStore, RevokedCommitment
from .state import (
    Transition,
    accept_open,
    local_commitment,
    open_message,
    reestablish_message,
    remote_commitment,
    resend_funding_signed,
    signed_local_commitment,
    start_reestablish,
    step,
)

__all__ = [
    "AddHtlc",
    "BadPreimageError",
    "Basepoints",
    "BroadcastTransaction",
    "ChainTip",
    "ChannelBalances",
    "ChannelClosed",
    "ChannelConfig",
    "ChannelError",
    "ChannelOpen",
    "ChannelReady",
    "ChannelReestablish",
    "ChannelSecrets",
    "ChannelState",
    "ClosingComplete",
    "ClosingSig",
    "CltvExpiryError",
    "Command",
    "Commitment",
    "CommitmentKeys",
    "CommitmentOutput",
    "CommitmentSigned",
    "CommitmentSpec",
    "DataLossDetected",
    "DataLossError",
    "Direction",
    "Effect",
    "Event",
    "FailHtlc",
    "ForceClose",
    "FulfillHtlc",
    "Funding",
    "FundingSigned",
    "Htlc",
    "HtlcLimitError",
    "IncomingHtlcCommitted",
    "InitiateShutdown",
    "InsufficientBalanceError",
    "InvalidCommitmentSignatureError",
    "InvalidHtlcSignatureError",
    "InvalidRevocationError",
    "LoopbackChannel",
    "Message",
    "OutgoingHtlcFailed",
    "OutgoingHtlcFulfilled",
    "OutputKind",
    "PeerBehindError",
    "PersistRevokedCommitment",
    "PersistState",
    "Reestablish",
    "RevocationStore",
    "RevokeAndAck",
    "RevokedCommitment",
    "SendMessage",
    "Shutdown",
    "Side",
    "SignCommitment",
    "StaleCommitmentError",
    "Status",
    "Transition",
    "UnexpectedMessageError",
    "UnknownHtlcError",
    "UpdateAddHtlc",
    "UpdateFailHtlc",
    "UpdateFulfillHtlc",
    "accept_open",
    "build_commitment",
    "channel_balances",
    "closing_transaction",
    "has_changes_to_sign",
    "is_quiescent",
    "local_commitment",
    "open_message",
    "ptlc_payment_hash",
    "reestablish_message",
    "remote_commitment",
    "resend_funding_signed",
    "signed_local_commitment",
    "start_reestablish",
    "step",
]
