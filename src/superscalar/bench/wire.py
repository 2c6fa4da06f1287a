"""Transport benchmarks: BOLT-8 handshakes, packet and framed-message throughput, codec, TCP.

In-process numbers for the `superscalar bench` suite (JSON out). They bound
what the daemons can do over the wire: handshakes/s is the reconnect storm
an LSP survives, MB/s is how fast a factory proposal for N clients moves.
Each figure counts both ends' work (encrypt *and* decrypt), as a daemon pays
one side and its peer the other.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from superscalar.crypto.keys import SecretKey
from superscalar.wire.codec import Init, Ping, decode, encode
from superscalar.wire.connection import PeerConnection, open_connection, start_server
from superscalar.wire.framing import MessageStream
from superscalar.wire.noise import MAX_MESSAGE_SIZE, Initiator, Responder, Transport

from .timing import per_second as _rate

__all__ = ["bench_transport", "run"]


def _pair() -> tuple[Transport, Transport]:
    a, b = SecretKey.generate(), SecretKey.generate()
    ini, res = Initiator(a, b.public_key), Responder(b)
    act3, ka = ini.receive_act_two(res.receive_act_one(ini.act_one()))
    return Transport(ka), Transport(res.receive_act_three(act3))


def _handshake(a: SecretKey, b: SecretKey) -> None:
    ini, res = Initiator(a, b.public_key), Responder(b)
    act3, _ = ini.receive_act_two(res.receive_act_one(ini.act_one()))
    res.receive_act_three(act3)


def _packets(size: int, t: float) -> dict[str, float]:
    sender, receiver = _pair()
    payload = bytes(size)

    def roundtrip() -> None:
        receiver.decrypt_message(sender.encrypt_message(payload))

    rate = _rate(roundtrip, t)
    return {"bytes": size, "messages_per_s": round(rate), "mb_per_s": round(rate * size / 1e6, 1)}


def _framed(size: int, t: float) -> dict[str, float]:
    a, b = _pair()
    tx, rx = MessageStream(a), MessageStream(b)
    payload = bytes(size)

    def roundtrip() -> None:
        (out,) = rx.feed(tx.encode(payload))
        assert len(out) == size

    rate = _rate(roundtrip, t)
    return {"bytes": size, "messages_per_s": round(rate, 1), "mb_per_s": round(rate * size / 1e6)}


def _codec(t: float) -> dict[str, float]:
    init = Init(features=("factory", "ptlc"), user_agent="bench")
    ping = Ping(nonce=12345)
    return {
        "init_roundtrip_per_s": round(_rate(lambda: decode(encode(init)), t)),
        "ping_roundtrip_per_s": round(_rate(lambda: decode(encode(ping)), t)),
    }


async def _tcp(count: int, size: int) -> dict[str, float]:
    server_key, client_key = SecretKey.generate(), SecretKey.generate()
    done = asyncio.Event()

    async def sink(conn: PeerConnection) -> None:
        for _ in range(count):
            await conn.receive()
        await conn.send(b"done")
        done.set()

    async with await start_server(server_key, sink) as server:
        start = time.perf_counter()
        conn = await open_connection("127.0.0.1", server.port, client_key, server_key.public_key)
        handshake = time.perf_counter() - start
        payload = bytes(size)
        start = time.perf_counter()
        for _ in range(count):
            await conn.send(payload)
        assert await conn.receive() == b"done"
        elapsed = time.perf_counter() - start
        await conn.close()
    return {
        "bytes": size,
        "messages": count,
        "connect_and_handshake_ms": round(handshake * 1e3, 2),
        "messages_per_s": round(count / elapsed),
        "mb_per_s": round(count * size / elapsed / 1e6, 1),
    }


def bench_transport(quick: bool) -> dict[str, Any]:
    """Handshakes/s, encrypted messages/s and MB/s (packets, framed messages, TCP loopback)."""
    t = 0.1 if quick else 0.6
    a, b = SecretKey.generate(), SecretKey.generate()
    handshakes = _rate(lambda: _handshake(a, b), t)
    big = 1 << 20 if quick else 8 << 20
    return {
        "handshakes_per_s": round(handshakes),
        "handshake_us": round(1e6 / handshakes, 1),
        "packets": [_packets(n, t) for n in (32, 1024, MAX_MESSAGE_SIZE)],
        "framed": [_framed(n, t) for n in (100_000, big)],
        "codec": _codec(t),
        "tcp_loopback": asyncio.run(_tcp(2_000 if quick else 20_000, 1024)),
    }


def run(quick: bool, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The `wire` suite of `superscalar bench`."""
    if progress is not None:
        progress("BOLT-8 handshakes, packets, framing, codec, TCP")
    return bench_transport(quick)
