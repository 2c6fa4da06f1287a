"""Peer connections over real loopback TCP: handshake, big messages, bad peers, timeouts, close."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from superscalar.crypto.keys import PublicKey, SecretKey
from superscalar.wire.codec import Error, ErrorCode, Init, Ping, Pong, decode, encode
from superscalar.wire.connection import (
    ConnectionLimits,
    PeerConnection,
    PeerServer,
    exchange_init,
    open_connection,
    start_server,
)
from superscalar.wire.errors import (
    ConnectFailedError,
    ConnectionClosedError,
    FramingError,
    HandshakeReadError,
    NoiseError,
    PeerRejectedError,
    ProtocolViolationError,
    WireDecodeError,
    WireError,
    WireTimeoutError,
)
from superscalar.wire.framing import MessageStream
from superscalar.wire.noise import ACT_TWO_SIZE, Initiator, Transport
from tests.wire.helpers import ALICE, BOB, MALLORY

FAST = ConnectionLimits(handshake_timeout=2.0, write_timeout=2.0)


def run(coro: Awaitable[Any]) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(15):  # a hung test fails instead of hanging CI
            return await coro

    return asyncio.run(bounded())


async def echo(conn: PeerConnection) -> None:
    while True:
        try:
            data = await conn.receive()
        except ConnectionClosedError:
            return
        await conn.send(data)


async def serve(
    handler: Callable[[PeerConnection], Awaitable[None]] = echo, **kwargs: Any
) -> PeerServer:
    kwargs.setdefault("limits", FAST)
    return await start_server(BOB, handler, **kwargs)


async def dial(server: PeerServer, key: SecretKey = ALICE, **kwargs: Any) -> PeerConnection:
    kwargs.setdefault("limits", FAST)
    return await open_connection("127.0.0.1", server.port, key, server.local_pubkey, **kwargs)


async def eventually(predicate: Callable[[], bool]) -> None:
    for _ in range(200):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never became true")


async def raw_handshake(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Transport]:
    """Dial with the sans-IO initiator over a bare socket, to misbehave afterwards."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    hs = Initiator(ALICE, BOB.public_key)
    writer.write(hs.act_one())
    act3, keys = hs.receive_act_two(await reader.readexactly(ACT_TWO_SIZE))
    writer.write(act3)
    await writer.drain()
    return reader, writer, Transport(keys)


def test_two_peers_exchange_a_message_larger_than_a_frame() -> None:
    async def main() -> None:
        seen: list[PublicKey] = []

        async def handler(conn: PeerConnection) -> None:
            seen.append(conn.remote_pubkey)
            await echo(conn)

        async with await serve(handler) as server:
            conn = await dial(server)
            assert conn.remote_pubkey == BOB.public_key
            big = os.urandom(300_000)  # five BOLT-8 frames
            await conn.send(big)
            await conn.send(b"small")
            assert await conn.receive() == big
            assert await conn.receive() == b"small"
            assert seen == [ALICE.public_key]
            await conn.close()

    run(main())


def test_concurrent_senders_keep_nonces_in_order() -> None:
    async def main() -> None:
        async with await serve() as server:
            conn = await dial(server)
            messages = [os.urandom(n) for n in (10, 70_000, 5, 140_000, 0, 3)] * 5
            await asyncio.gather(*(conn.send(m) for m in messages))
            got = [await conn.receive() for _ in messages]
            assert sorted(got) == sorted(messages)
            await conn.close()

    run(main())


def test_typed_messages_and_init_exchange() -> None:
    async def main() -> None:
        async def handler(conn: PeerConnection) -> None:
            negotiated = await exchange_init(conn, Init(features=("ptlc", "splice")))
            assert negotiated.features == {"ptlc"}
            ping = await conn.receive_message()
            assert isinstance(ping, Ping)
            await conn.send_message(Pong(nonce=ping.nonce))
            await conn.receive()  # until the client closes

        async with await serve(handler) as server:
            conn = await dial(server)
            negotiated = await exchange_init(conn, Init(features=("ptlc",)))
            assert negotiated.version == 1 and negotiated.features == {"ptlc"}
            await conn.send_message(Ping(nonce=42))
            assert await conn.receive_message(timeout=2) == Pong(nonce=42)
            await conn.close()

    run(main())


def test_dialling_the_wrong_node_key_fails_the_handshake() -> None:
    async def main() -> None:
        async with await serve() as server:
            with pytest.raises(HandshakeReadError, match="remote node key") as info:
                await open_connection("127.0.0.1", server.port, ALICE, MALLORY.public_key)
            assert info.value.code == "ACT2_READ_FAILED"
            await eventually(lambda: server.failed_handshakes == 1)
            # The server is unharmed.
            conn = await dial(server)
            await conn.send(b"hi")
            assert await conn.receive() == b"hi"
            await conn.close()

    run(main())


def test_garbage_instead_of_a_handshake_is_dropped() -> None:
    async def main() -> None:
        async with await serve() as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(os.urandom(50))
            assert await reader.read() == b""  # server hung up without a word
            writer.close()
            await eventually(lambda: server.failed_handshakes == 1)

    run(main())


def test_garbage_after_the_handshake_is_a_clean_disconnect() -> None:
    async def main() -> None:
        errors: list[BaseException] = []

        async def handler(conn: PeerConnection) -> None:
            try:
                await conn.receive()
            except WireError as exc:
                errors.append(exc)
                assert conn.closed

        async with await serve(handler) as server:
            reader, writer, _ = await raw_handshake(server.port)
            writer.write(os.urandom(100))
            await writer.drain()
            assert await reader.read() == b""
            writer.close()
            await eventually(lambda: len(errors) == 1)
            assert isinstance(errors[0], NoiseError)

    run(main())


def test_undecodable_message_gets_an_error_then_disconnect() -> None:
    async def main() -> None:
        async def handler(conn: PeerConnection) -> None:
            with pytest.raises(WireDecodeError):
                await conn.receive_message()

        async with await serve(handler) as server:
            conn = await dial(server)
            await conn.send(b'{"type":"no_such_message"}')
            reply = decode(await conn.receive(timeout=2))
            assert isinstance(reply, Error) and reply.code == ErrorCode.DECODE.value
            assert "no_such_message" in reply.message
            with pytest.raises(ConnectionClosedError):
                await conn.receive(timeout=2)

    run(main())


def test_oversized_message_gets_an_error_then_disconnect() -> None:
    async def main() -> None:
        small = ConnectionLimits(max_message_size=100_000, handshake_timeout=2.0)
        async with await serve(limits=small) as server:
            conn = await dial(server)
            await conn.send(bytes(150_000))
            reply = decode(await conn.receive(timeout=2))
            assert isinstance(reply, Error) and "limit" in reply.message
            with pytest.raises(ConnectionClosedError):
                await conn.receive(timeout=2)

    run(main())


def test_peer_closing_mid_message_is_a_framing_error() -> None:
    async def main() -> None:
        errors: list[BaseException] = []

        async def handler(conn: PeerConnection) -> None:
            try:
                await conn.receive()
            except WireError as exc:
                errors.append(exc)

        async with await serve(handler) as server:
            _, writer, transport = await raw_handshake(server.port)
            wire = MessageStream(transport).encode(bytes(100_000))
            writer.write(wire[: len(wire) // 2])
            await writer.drain()
            writer.close()
            await eventually(lambda: len(errors) == 1)
            assert isinstance(errors[0], FramingError)

    run(main())


def test_unauthorized_node_is_refused_with_an_error() -> None:
    async def main() -> None:
        async with await serve(authorize=lambda key: key != MALLORY.public_key) as server:
            conn = await dial(server, MALLORY)
            with pytest.raises(PeerRejectedError, match="unauthorized"):
                await exchange_init(conn, Init())
            assert server.rejected_peers == 1
            ok = await dial(server, ALICE)
            await ok.send(b"x")
            assert await ok.receive() == b"x"
            await ok.close()

    run(main())


def test_a_first_message_other_than_init_is_a_protocol_violation() -> None:
    async def main() -> None:
        async def handler(conn: PeerConnection) -> None:
            with pytest.raises(ProtocolViolationError):
                await exchange_init(conn, Init())

        async with await serve(handler) as server:
            conn = await dial(server)
            await conn.send(encode(Ping(nonce=1)))
            assert isinstance(decode(await conn.receive(timeout=2)), Init)  # theirs
            reply = decode(await conn.receive(timeout=2))
            assert isinstance(reply, Error) and reply.code == ErrorCode.UNEXPECTED_MESSAGE.value

    run(main())


def test_stalled_handshake_times_out() -> None:
    async def main() -> None:
        quick = ConnectionLimits(handshake_timeout=0.2)
        async with await serve(limits=quick) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            assert await reader.read() == b""  # we never sent act one
            writer.close()
            await eventually(lambda: server.failed_handshakes == 1)

        # And as the initiator: a listener that accepts but never answers.
        silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = silent.sockets[0].getsockname()[1]
        with pytest.raises(WireTimeoutError):
            await open_connection("127.0.0.1", port, ALICE, BOB.public_key, limits=quick)
        silent.close()

    run(main())


def test_receive_timeout_keeps_the_connection_usable() -> None:
    async def main() -> None:
        async with await serve() as server:
            conn = await dial(server)
            with pytest.raises(WireTimeoutError):
                await conn.receive(timeout=0.05)
            await conn.send(b"still here")
            assert await conn.receive(timeout=2) == b"still here"
            await conn.close()

    run(main())


def test_clean_close_on_both_sides() -> None:
    async def main() -> None:
        outcome: list[str] = []

        async def handler(conn: PeerConnection) -> None:
            try:
                await conn.receive()
            except ConnectionClosedError:
                outcome.append("closed")

        async with await serve(handler) as server:
            conn = await dial(server)
            await conn.close()
            await conn.close()  # idempotent
            with pytest.raises(ConnectionClosedError):
                await conn.send(b"late")
            with pytest.raises(ConnectionClosedError):
                await conn.receive()
            await eventually(lambda: outcome == ["closed"])

    run(main())


def test_server_close_drops_live_connections() -> None:
    async def main() -> None:
        server = await serve()
        conn = await dial(server)
        await conn.send(b"a")
        assert await conn.receive() == b"a"
        await server.close()
        with pytest.raises(ConnectionClosedError):
            await conn.receive(timeout=2)

    run(main())


def test_connection_refused_is_a_connect_failure() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connect is refused

        async def main() -> None:
            with pytest.raises(ConnectFailedError):
                await open_connection("127.0.0.1", port, ALICE, BOB.public_key)

        run(main())


def test_closing_wakes_a_pending_receive() -> None:
    async def main() -> None:
        async with await serve() as server:
            conn = await dial(server)
            pending = asyncio.create_task(conn.receive())
            await asyncio.sleep(0.05)
            await conn.close()
            with pytest.raises(ConnectionClosedError, match="connection is closed"):
                await pending

    run(main())
