"""Typed errors for the wire layer.

Everything a remote peer can make go wrong raises a `WireError`, never a bare
`ValueError` or a library's own exception, so a daemon can answer any bad input
with one `except WireError` (send an ERROR, disconnect, touch no state) while
real bugs still surface as what they are.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ConnectFailedError",
    "ConnectionClosedError",
    "DecodeFailure",
    "FramingError",
    "HandshakeError",
    "HandshakeFailure",
    "HandshakeKeyError",
    "HandshakeMacError",
    "HandshakeReadError",
    "HandshakeVersionError",
    "NoiseError",
    "NoiseStateError",
    "PeerRejectedError",
    "ProtocolViolationError",
    "TransportError",
    "WireDecodeError",
    "WireError",
    "WireTimeoutError",
]


class WireError(Exception):
    """Base class: a peer sent something we refuse, or the link broke."""


# --- BOLT-8 Noise -------------------------------------------------------------------------


class NoiseError(WireError):
    """The encrypted transport failed (handshake or message decryption)."""


class NoiseStateError(NoiseError):
    """A handshake or transport method was called out of order or after a failure.

    This is a bug in the caller, not the peer's fault; it is still a `NoiseError`
    so a daemon that catches wire errors drops the connection instead of crashing.
    """


class HandshakeFailure(StrEnum):
    """Why a handshake act was refused, in BOLT-8 Appendix A's words."""

    READ_FAILED = "READ_FAILED"
    BAD_VERSION = "BAD_VERSION"
    BAD_PUBKEY = "BAD_PUBKEY"
    BAD_TAG = "BAD_TAG"
    BAD_CIPHERTEXT = "BAD_CIPHERTEXT"


class HandshakeError(NoiseError):
    """A handshake act (1, 2 or 3) was refused; `code` is the spec's name, e.g. ACT2_BAD_TAG."""

    def __init__(self, act: int, failure: HandshakeFailure, detail: str) -> None:
        self.act = act
        self.failure = failure
        super().__init__(f"{self.code}: {detail}")

    @property
    def code(self) -> str:
        return f"ACT{self.act}_{self.failure.value}"


class HandshakeReadError(HandshakeError):
    """The act had the wrong length (short read, or the peer hung up mid-handshake)."""

    def __init__(self, act: int, detail: str) -> None:
        super().__init__(act, HandshakeFailure.READ_FAILED, detail)


class HandshakeVersionError(HandshakeError):
    """The act's version byte is not 0; `version` is what the peer sent."""

    def __init__(self, act: int, version: int) -> None:
        self.version = version
        super().__init__(act, HandshakeFailure.BAD_VERSION, f"unknown handshake version {version}")


class HandshakeKeyError(HandshakeError):
    """The peer's ephemeral (acts 1, 2) or static (act 3) public key does not parse."""

    def __init__(self, act: int, detail: str) -> None:
        super().__init__(act, HandshakeFailure.BAD_PUBKEY, detail)


class HandshakeMacError(HandshakeError):
    """A Poly1305 tag did not verify.

    In act 1 this means the initiator does not know our static key (it dialled
    the wrong node key); in act 2 the responder is not who we dialled.
    `failure` is BAD_CIPHERTEXT for act 3's encrypted static key, BAD_TAG otherwise.
    """

    def __init__(self, act: int, detail: str, *, ciphertext: bool = False) -> None:
        failure = HandshakeFailure.BAD_CIPHERTEXT if ciphertext else HandshakeFailure.BAD_TAG
        super().__init__(act, failure, detail)


class TransportError(NoiseError):
    """A transport message failed to decrypt or had an impossible length."""


# --- framing and connections --------------------------------------------------------------


class FramingError(WireError):
    """Frames that do not reassemble into a message: bad header, wrong chunking, too large."""


class ConnectFailedError(WireError):
    """The TCP connection to the peer could not be made (refused, unreachable, timed out)."""


class ProtocolViolationError(WireError):
    """A well-formed message that breaks the protocol (e.g. anything but Init first)."""


class ConnectionClosedError(WireError):
    """The connection is closed: by us, or by the peer at a message boundary."""


class WireTimeoutError(WireError):
    """The peer took longer than the limit to finish a handshake, a read or a write."""


class PeerRejectedError(WireError):
    """The peer authenticated, but its node key is not one we accept (or it refused ours)."""


# --- typed messages -----------------------------------------------------------------------


class DecodeFailure(StrEnum):
    """Which way an input failed to decode: what an ERROR reply and logs report."""

    TOO_LARGE = "too_large"
    NOT_JSON = "not_json"
    UNKNOWN_TYPE = "unknown_type"
    INVALID = "invalid"


class WireDecodeError(WireError):
    """Input that is not exactly one valid message; `reason` says why, `failure` how."""

    def __init__(self, failure: DecodeFailure, reason: str) -> None:
        self.failure = failure
        self.reason = reason
        super().__init__(f"{failure.value}: {reason}")
