"""Connected peers, and the one way a service talks to a group of them step by step.

A multi-step exchange (a ceremony, a close, a leaf advance, a rotation invite)
sends to several peers and waits for one typed answer from each. Whatever goes
wrong with one peer (silence, a disconnect, a wire `error`, the wrong message)
becomes a `PeerFault` naming that peer and a machine-readable code, so the
caller blames exactly it and no one else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from superscalar.crypto.keys import PublicKey
from superscalar.wire.codec import Error, Message
from superscalar.wire.connection import PeerConnection
from superscalar.wire.errors import WireError, WireTimeoutError
from superscalar.wire.messages import JoinRequest

__all__ = ["Peer", "PeerFault", "PeerLink", "receive"]

M = TypeVar("M", bound=Message)


@dataclass(eq=False)
class Peer:
    """One connected client; its handler waits on `done` while services talk to it."""

    conn: PeerConnection
    key: PublicKey
    join: JoinRequest
    done: asyncio.Event = field(default_factory=asyncio.Event)
    inbox: asyncio.Queue[Message | WireError] | None = None
    """Set once a reader task owns the connection (after funding): non-channel messages."""
    reader: asyncio.Task[None] | None = None


class PeerFault(Exception):
    """A peer broke the protocol (or vanished): it is dropped, the exchange abandoned."""

    def __init__(self, peer: Peer, reason: str, code: str = "ceremony-fault") -> None:
        super().__init__(reason)
        self.peer = peer
        self.code = code
        """Machine-readable: `<what>-timeout`, `<what>-bad-nonces`, `<what>-bad-psigs`,
        `<what>-peer-error`, `<what>-unexpected`, `<what>-disconnected`, ..."""


async def receive(peer: Peer, timeout: float) -> Message:
    """The peer's next non-channel message: from its reader's inbox once it has one."""
    if peer.inbox is None:
        return await peer.conn.receive_message(timeout)
    item = await asyncio.wait_for(peer.inbox.get(), timeout)
    if isinstance(item, WireError):
        raise item
    return item


class PeerLink:
    """Send to and receive from peers, every failure a `PeerFault` coded `<what>-...`."""

    def __init__(self, timeout: Callable[[], float], what: str = "ceremony") -> None:
        self._timeout = timeout
        self.what = what

    def named(self, what: str) -> PeerLink:
        """The same link whose faults are coded `<what>-...` (a close, an advance)."""
        return PeerLink(self._timeout, what)

    async def send(self, peer: Peer, msg: Message) -> None:
        try:
            await peer.conn.send_message(msg)
        except WireError as exc:
            raise PeerFault(peer, f"send failed: {exc}", f"{self.what}-disconnected") from exc

    async def recv(self, peer: Peer, kind: type[M], fid: bytes) -> M:
        """The peer's next message, which must be a `kind` about factory `fid`."""
        try:
            msg = await receive(peer, self._timeout())
        except (TimeoutError, WireTimeoutError) as exc:
            raise PeerFault(peer, "timed out", f"{self.what}-timeout") from exc
        except WireError as exc:
            raise PeerFault(
                peer, f"{type(exc).__name__}: {exc}", f"{self.what}-disconnected"
            ) from exc
        if isinstance(msg, Error):
            raise PeerFault(
                peer, f"peer error: {msg.code}: {msg.message}", f"{self.what}-peer-error"
            )
        if not isinstance(msg, kind) or bytes(getattr(msg, "factory_id", b"")) != fid:
            raise PeerFault(
                peer, f"expected {kind.__name__}, got {msg.type_tag}", f"{self.what}-unexpected"
            )
        return msg

    async def gather(self, peers: Sequence[Peer], kind: type[M], fid: bytes) -> list[M]:
        """One `kind` from each peer, concurrently; the first fault (in peer order) raises."""
        results = await asyncio.gather(
            *(self.recv(p, kind, fid) for p in peers), return_exceptions=True
        )
        out: list[M] = []
        for r in results:
            if isinstance(r, BaseException):
                raise r
            out.append(r)
        return out
