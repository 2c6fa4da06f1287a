"""Typed channel errors: every refused command or message raises one of these.

The channel core is a pure function of (state, event); when it raises, the
caller still holds the previous state object, untouched, so "refuse and keep
going" (or "send an error and fail the channel") is the shell's choice. The
class names what was wrong, so a daemon can map it to a BOLT-style warning or
error without parsing strings.
"""

from __future__ import annotations

__all__ = [
    "BadPreimageError",
    "ChannelError",
    "CltvExpiryError",
    "DataLossError",
    "HtlcLimitError",
    "InsufficientBalanceError",
    "InvalidCommitmentSignatureError",
    "InvalidHtlcSignatureError",
    "InvalidRevocationError",
    "PeerBehindError",
    "StaleCommitmentError",
    "UnexpectedMessageError",
    "UnknownHtlcError",
]


class ChannelError(ValueError):
    """Base class: a command or peer message the channel refuses; state unchanged."""


class UnexpectedMessageError(ChannelError):
    """A message or command that is not allowed in the channel's current state."""


class StaleCommitmentError(ChannelError):
    """A commitment_signed / revoke_and_ack for the wrong commitment number."""


class InvalidCommitmentSignatureError(ChannelError):
    """The peer's MuSig2 partial signature on our commitment does not verify."""


class InvalidHtlcSignatureError(ChannelError):
    """A second-stage HTLC signature is missing, extra or does not verify."""


class InvalidRevocationError(ChannelError):
    """A per-commitment secret that does not match the point, or breaks the shachain."""


class HtlcLimitError(ChannelError):
    """An HTLC below the minimum, or over the count or value-in-flight limits."""


class InsufficientBalanceError(ChannelError):
    """The offerer cannot afford the HTLC while keeping its channel reserve."""


class CltvExpiryError(ChannelError):
    """An HTLC expiry too close (inside the exit budget), too far, or past the deadline."""


class BadPreimageError(ChannelError):
    """A preimage whose SHA256 is not the HTLC's payment hash."""


class UnknownHtlcError(ChannelError):
    """An HTLC id that is not (or not yet irrevocably) in the channel, or already settled."""


class DataLossError(ChannelError):
    """The peer proved (with a revocation secret of ours) that our state is outdated.

    Our latest commitment is revoked: broadcasting it would lose the channel's
    funds to a penalty. The channel is marked `data_loss` and refuses to operate.
    """


class PeerBehindError(ChannelError):
    """The peer's reestablish shows it lost state we already committed to."""
