"""Authenticated, encrypted peer connections over TCP: the thin asyncio shell.

All protocol logic lives in the sans-IO cores (`noise` for the handshake and
packets, `framing.MessageStream` for frames and limits, `codec` for messages);
this module only moves bytes between them and a socket, and adds what only an
I/O shell can: timeouts and closing.

- `open_connection(host, port, local_key, remote_pubkey)` dials a peer whose
  node key we know and returns a `PeerConnection` once BOLT-8 acts 1-3 are done.
  A wrong `remote_pubkey` fails the handshake (the responder hangs up after act 1).
- `start_server(local_key, handler, ...)` accepts peers, runs the handshake,
  learns each peer's node key, asks `authorize(node_key)`, then runs
  `handler(conn)` in its own task and closes the connection when it returns.
- `exchange_init(conn, Init(...))` is the protocol-version handshake both sides
  run first.

Errors: everything a peer can cause is a `WireError`. A peer that sends bytes
that do not decrypt is dropped at once; one whose frames or messages are bad
gets an `Error` message first, then is dropped. A clean close by the peer at a
message boundary is `ConnectionClosedError`.

Concurrency: any number of tasks may `send` at once (each message is encrypted
and queued on the socket without an await in between, so nonces stay in
order); only one task may `receive` at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from superscalar.crypto.keys import PublicKey, SecretKey

from .codec import Error, ErrorCode, Init, Message, Negotiated, NegotiationError, decode, encode
from .codec import negotiate as negotiate_init
from .errors import (
    ConnectFailedError,
    ConnectionClosedError,
    FramingError,
    HandshakeReadError,
    PeerRejectedError,
    ProtocolViolationError,
    WireDecodeError,
    WireError,
    WireTimeoutError,
)
from .framing import DEFAULT_MAX_MESSAGE_SIZE, MessageStream
from .noise import ACT_ONE_SIZE, ACT_THREE_SIZE, ACT_TWO_SIZE, Initiator, Responder, Transport

__all__ = [
    "ConnectionLimits",
    "Handler",
    "PeerConnection",
    "PeerServer",
    "exchange_init",
    "open_connection",
    "start_server",
]

log = logging.getLogger(__name__)

_READ_SIZE = 1 << 16
_CLOSE_TIMEOUT = 2.0


@dataclass(frozen=True)
class ConnectionLimits:
    """Per-connection limits. Defaults suit a daemon; tests shrink them.

    `handshake_timeout` covers TCP connect plus BOLT-8 acts 1-3 (and, in
    `exchange_init`, the Init exchange): a peer that stalls there is dropped.
    `write_timeout` bounds how long a send may wait for a peer that does not
    read. There is no default read timeout: idle peers are the daemon's call
    (pass `timeout=` to `receive`, or Ping them).
    """

    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    handshake_timeout: float = 10.0
    write_timeout: float = 30.0


Handler = Callable[["PeerConnection"], Awaitable[None]]

LISTEN_BACKLOG = 1024
"""Connections the kernel queues before we accept them: a factory's clients may all
connect at once, and asyncio's default of 100 leaves the rest retrying SYNs for seconds
(past the handshake timeout)."""


class PeerConnection:
    """One authenticated peer. Create with `open_connection` or receive from `start_server`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        transport: Transport,
        *,
        local_pubkey: PublicKey,
        limits: ConnectionLimits,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._stream = MessageStream(transport, max_message_size=limits.max_message_size)
        self._limits = limits
        self._inbox: deque[bytes] = deque()
        self._closed = False
        self.local_pubkey = local_pubkey
        self.limits = limits
        """The limits this connection runs under (message size, timeouts)."""
        self.remote_pubkey: PublicKey = transport.remote_static
        peer = writer.get_extra_info("peername")
        self.peername: str = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"PeerConnection({self.remote_pubkey.hex()}@{self.peername}, {state})"

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> PeerConnection:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # --- bytes ------------------------------------------------------------------------

    async def send(self, message: bytes) -> None:
        """Encrypt and send one message (split into frames if large); waits for the socket.

        A message over our own `max_message_size` is a bug here, not the peer's
        fault: it raises ValueError and nothing is sent.
        """
        if self._closed:
            raise ConnectionClosedError("connection is closed")
        self._writer.write(self._stream.encode(message))
        try:
            async with asyncio.timeout(self._limits.write_timeout):
                await self._writer.drain()
        except TimeoutError:
            await self.close()
            raise WireTimeoutError("peer did not read our data in time") from None
        except OSError as exc:
            await self.close()
            raise ConnectionClosedError(f"connection lost while sending: {exc}") from exc

    async def receive(self, timeout: float | None = None) -> bytes:
        """The next whole message. Raises `WireTimeoutError` (connection kept) on timeout.

        Bad bytes from the peer close the connection and raise the `WireError`;
        a peer that closes mid-message raises `FramingError`, at a message
        boundary `ConnectionClosedError`.
        """
        try:
            async with asyncio.timeout(timeout):
                while not self._inbox:
                    await self._fill()
        except TimeoutError:
            raise WireTimeoutError(f"no message within {timeout} s") from None
        return self._inbox.popleft()

    async def _fill(self) -> None:
        if self._closed:
            raise ConnectionClosedError("connection is closed")
        try:
            data = await self._reader.read(_READ_SIZE)
        except OSError as exc:
            await self.close()
            raise ConnectionClosedError(f"connection lost: {exc}") from exc
        if not data:
            if self._closed:  # we closed it while this read was waiting
                raise ConnectionClosedError("connection is closed")
            truncated = self._stream.mid_message
            await self.close()
            if truncated:
                raise FramingError("peer closed the connection in the middle of a message")
            raise ConnectionClosedError("peer closed the connection")
        try:
            self._inbox.extend(self._stream.feed(data))
        except FramingError as exc:
            await self.fail(exc)
            raise
        except WireError:
            await self.close()  # undecryptable: nothing we send could help
            raise

    # --- typed messages ---------------------------------------------------------------

    async def send_message(self, message: Message) -> None:
        """Encode and send a typed message."""
        await self.send(encode(message))

    async def receive_message(self, timeout: float | None = None) -> Message:
        """The next typed message. A message that does not decode gets the peer an
        `Error` and a disconnect, and raises `WireDecodeError` here.
        """
        data = await self.receive(timeout)
        try:
            return decode(data, max_size=self._limits.max_message_size)
        except WireDecodeError as exc:
            await self.fail(exc)
            raise

    async def fail(self, exc: WireError, code: ErrorCode | None = None) -> None:
        """Tell the peer why (best effort, an `Error` message), then close."""
        if not self._closed:
            error = Error.from_exception(exc) if code is None else Error.from_exception(exc, code)
            with contextlib.suppress(WireError, TimeoutError):
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    await self.send_message(error)
        await self.close()

    async def close(self) -> None:
        """Close the socket (idempotent). Pending receives then raise `ConnectionClosedError`."""
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await self._writer.wait_closed()


# --- handshakes over streams ------------------------------------------------------------


async def _read_act(reader: asyncio.StreamReader, size: int, act: int, hint: str = "") -> bytes:
    try:
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError as exc:
        got = len(exc.partial)
        detail = f"peer sent {got} of {size} bytes, then closed{hint}"
        raise HandshakeReadError(act, detail) from None
    except OSError as exc:
        raise HandshakeReadError(act, f"connection lost: {exc}{hint}") from exc


async def _write(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


async def _initiate(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    local_key: SecretKey,
    remote_pubkey: PublicKey,
) -> Transport:
    hs = Initiator(local_key, remote_pubkey)
    await _write(writer, hs.act_one())
    # A responder whose key is not `remote_pubkey` cannot check act 1 and hangs up.
    act2 = await _read_act(reader, ACT_TWO_SIZE, 2, " (is the remote node key right?)")
    act3, keys = hs.receive_act_two(act2)
    await _write(writer, act3)
    return Transport(keys)


async def _respond(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, local_key: SecretKey
) -> Transport:
    hs = Responder(local_key)
    act2 = hs.receive_act_one(await _read_act(reader, ACT_ONE_SIZE, 1))
    await _write(writer, act2)
    return Transport(hs.receive_act_three(await _read_act(reader, ACT_THREE_SIZE, 3)))


async def _abort(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(_CLOSE_TIMEOUT):
            await writer.wait_closed()


async def open_connection(
    host: str,
    port: int,
    local_key: SecretKey,
    remote_pubkey: PublicKey,
    *,
    limits: ConnectionLimits | None = None,
) -> PeerConnection:
    """Dial `host:port`, run BOLT-8 as initiator, and return the authenticated connection.

    Raises `ConnectFailedError` if TCP fails, `HandshakeError` if the peer is
    not `remote_pubkey` or speaks something else, `WireTimeoutError` if it stalls.
    """
    limits = limits or ConnectionLimits()
    try:
        async with asyncio.timeout(limits.handshake_timeout):
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError as exc:
                raise ConnectFailedError(f"cannot connect to {host}:{port}: {exc}") from exc
            try:
                transport = await _initiate(reader, writer, local_key, remote_pubkey)
            except BaseException:
                await _abort(writer)
                raise
    except TimeoutError:
        raise WireTimeoutError(f"connect/handshake with {host}:{port} timed out") from None
    return PeerConnection(
        reader, writer, transport, local_pubkey=local_key.public_key, limits=limits
    )


async def exchange_init(
    conn: PeerConnection, ours: Init, *, timeout: float | None = None
) -> Negotiated:
    """Send our Init, read theirs, agree on version and features; on failure tell the peer.

    Raises `PeerRejectedError` if the peer answers with an Error,
    `ProtocolViolationError` if its first message is not Init, `NegotiationError`
    if there is no common version or a required feature is missing.
    """
    timeout = conn.limits.handshake_timeout if timeout is None else timeout
    await conn.send_message(ours)
    theirs = await conn.receive_message(timeout)
    if isinstance(theirs, Error):
        await conn.close()
        raise PeerRejectedError(f"peer refused us: {theirs.code}: {theirs.message}")
    if not isinstance(theirs, Init):
        exc = ProtocolViolationError(f"expected init first, got {theirs.type_tag}")
        await conn.fail(exc, ErrorCode.UNEXPECTED_MESSAGE)
        raise exc
    try:
        return negotiate_init(ours, theirs)
    except NegotiationError as exc:
        await conn.fail(exc, exc.code)
        raise


class PeerServer:
    """A listening socket that hands authenticated peers to a handler. Use `start_server`."""

    def __init__(
        self,
        local_key: SecretKey,
        handler: Handler,
        *,
        authorize: Callable[[PublicKey], bool] | None,
        limits: ConnectionLimits,
    ) -> None:
        self._key = local_key
        self._handler = handler
        self._authorize = authorize
        self._limits = limits
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections: set[PeerConnection] = set()
        self.local_pubkey = local_key.public_key
        self.failed_handshakes = 0
        self.rejected_peers = 0

    @property
    def port(self) -> int:
        """The bound TCP port (useful with `port=0`)."""
        assert self._server is not None and self._server.sockets
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def listen(self, host: str, port: int) -> None:
        """Bind and start accepting (what `start_server` calls)."""
        self._server = await asyncio.start_server(self._accept, host, port, backlog=LISTEN_BACKLOG)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            async with asyncio.timeout(self._limits.handshake_timeout):
                transport = await _respond(reader, writer, self._key)
        except (WireError, TimeoutError) as exc:
            self.failed_handshakes += 1
            log.info("handshake with %s failed: %s", peer, exc or "timeout")
            await _abort(writer)
            return
        conn = PeerConnection(
            reader, writer, transport, local_pubkey=self.local_pubkey, limits=self._limits
        )
        if self._authorize is not None and not self._authorize(conn.remote_pubkey):
            self.rejected_peers += 1
            log.info("refusing node %s from %s", conn.remote_pubkey.hex(), peer)
            await conn.fail(PeerRejectedError("node key not accepted"), ErrorCode.UNAUTHORIZED)
            return
        self.connections.add(conn)
        try:
            await self._handler(conn)
        except WireError as exc:
            log.info("peer %s dropped: %s", conn.remote_pubkey.hex(), exc)
        except Exception:
            log.exception("handler for %s failed", conn.remote_pubkey.hex())
        finally:
            self.connections.discard(conn)
            await conn.close()

    async def close(self) -> None:
        """Stop listening, close every connection and wait for the handlers to finish."""
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            await conn.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> PeerServer:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()


async def start_server(
    local_key: SecretKey,
    handler: Handler,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    authorize: Callable[[PublicKey], bool] | None = None,
    limits: ConnectionLimits | None = None,
) -> PeerServer:
    """Listen on `host:port` as node `local_key`; each authenticated peer runs `handler(conn)`.

    `authorize(node_key)` (if given) decides which peers may stay; refused
    peers get an `Error` and are disconnected. Handshake failures, timeouts and
    refusals are counted (`failed_handshakes`, `rejected_peers`) and logged.
    """
    limits = limits or ConnectionLimits()
    server = PeerServer(local_key, handler, authorize=authorize, limits=limits)
    await server.listen(host, port)
    return server
