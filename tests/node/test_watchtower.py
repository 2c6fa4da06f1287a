"""The standalone tower in-process: real BOLT-8 sockets, real SQLite, the kernel chain over RPC.

A client pushes a sealed hint, the tower stores it before acking, survives a
restart, refuses bad input with an error (keeping what it stored), and
sweeps when the revoked commitment confirms — without ever having been able
to read the hint before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from superscalar.chain.bitcoind import BitcoindClient
from superscalar.chain.node import RegtestNode
from superscalar.crypto.keys import SecretKey
from superscalar.node.watchtower import TowerConfig, WatchtowerDaemon
from superscalar.watch import encrypt_hint
from superscalar.wire.codec import Error, Hex, Init
from superscalar.wire.connection import PeerConnection, exchange_init, open_connection
from superscalar.wire.messages import Hex16, JoinRequest, TowerAck, TowerHint

from ..chain.chain_support import MINER
from ..watch.test_chain_watch import _penalty_watch, _revoked_channel

TOWER_KEY = SecretKey.from_int(0x70E2)
CLIENT_KEY = SecretKey.from_int(0xC11E)


async def _with_tower(
    datadir: Path,
    rpc: BitcoindClient,
    body: Callable[[WatchtowerDaemon], Awaitable[None]],
    quota: int = 1_000_000,
) -> WatchtowerDaemon:
    config = TowerConfig(datadir, "127.0.0.1", 0, max_hints_per_client=quota)
    tower = WatchtowerDaemon(config, TOWER_KEY, rpc)
    task = asyncio.create_task(tower.run())
    while tower.server is None:
        await asyncio.sleep(0.01)
    try:
        await body(tower)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    return tower


async def _connect(tower: WatchtowerDaemon) -> PeerConnection:
    assert tower.server is not None
    conn = await open_connection("127.0.0.1", tower.server.port, CLIENT_KEY, TOWER_KEY.public_key)
    await exchange_init(conn, Init(user_agent="test"))
    return conn


def test_a_hint_is_stored_before_the_ack_and_survives_a_restart(
    tmp_path: Path, node: RegtestNode, rpc: BitcoindClient
) -> None:
    pair, cheat = _revoked_channel(node)
    hint = encrypt_hint(_penalty_watch(node, pair, cheat))

    async def push(tower: WatchtowerDaemon) -> None:
        conn = await _connect(tower)
        await conn.send_message(TowerHint(hint_id=Hex16(hint.hint_id), blob=Hex(hint.blob)))
        ack = await conn.receive_message(timeout=10)
        assert isinstance(ack, TowerAck) and bytes(ack.hint_id) == hint.hint_id
        rows = tower.db.execute("SELECT hint_id, client FROM watch_hints").fetchall()
        assert [(r["hint_id"], r["client"]) for r in rows] == [
            (hint.hint_id.hex(), CLIENT_KEY.public_key.hex())
        ]
        await conn.close()

    asyncio.run(_with_tower(tmp_path / "tower", rpc, push))

    async def breach(tower: WatchtowerDaemon) -> None:
        assert tower.hints == {hint.hint_id: [hint.blob]}  # reloaded from disk
        node.mine_transactions([cheat], MINER)
        await tower.watcher.catch_up()

    asyncio.run(_with_tower(tmp_path / "tower", rpc, breach))
    penalties = [e.tx for e in node.mempool if e.tx.inputs[0].prevout.txid == cheat.txid]
    assert len(penalties) == 1
    node.mine(1, MINER)
    status = node.transaction(penalties[0].txid)
    assert status is not None and status.height == node.height


def test_an_unexpected_message_is_answered_with_an_error_and_stored_hints_stay(
    tmp_path: Path, node: RegtestNode, rpc: BitcoindClient
) -> None:
    async def misbehave(tower: WatchtowerDaemon) -> None:
        conn = await _connect(tower)
        await conn.send_message(TowerHint(hint_id=Hex16(bytes(16)), blob=Hex(b"junk")))
        assert isinstance(await conn.receive_message(timeout=10), TowerAck)
        await conn.send_message(JoinRequest(amount_sat=1, payout_script=Hex(b"\x51")))
        answer = await conn.receive_message(timeout=10)
        assert isinstance(answer, Error) and "unexpected join_request" in answer.message
        assert tower.db.execute("SELECT COUNT(*) FROM watch_hints").fetchone()[0] == 1

    asyncio.run(_with_tower(tmp_path / "tower", rpc, misbehave))


def test_an_oversized_blob_is_refused_and_not_stored(
    tmp_path: Path, node: RegtestNode, rpc: BitcoindClient
) -> None:
    async def oversize(tower: WatchtowerDaemon) -> None:
        conn = await _connect(tower)
        await conn.send_message(TowerHint(hint_id=Hex16(bytes(16)), blob=Hex(bytes(64_001))))
        answer = await conn.receive_message(timeout=10)
        assert isinstance(answer, Error) and "64000" in answer.message
        assert tower.db.execute("SELECT COUNT(*) FROM watch_hints").fetchone()[0] == 0

    asyncio.run(_with_tower(tmp_path / "tower", rpc, oversize))


def test_a_junk_hint_matching_a_confirmed_txid_is_ignored(
    tmp_path: Path, node: RegtestNode, rpc: BitcoindClient
) -> None:
    _, cheat = _revoked_channel(node)

    async def junk(tower: WatchtowerDaemon) -> None:
        conn = await _connect(tower)
        await conn.send_message(TowerHint(hint_id=Hex16(cheat.txid[:16]), blob=Hex(b"x" * 80)))
        assert isinstance(await conn.receive_message(timeout=10), TowerAck)
        node.mine_transactions([cheat], MINER)
        await tower.watcher.catch_up()
        assert tower.watcher.summary()["breaches"] == []
        assert tower.watcher.stats.last_error is None

    asyncio.run(_with_tower(tmp_path / "tower", rpc, junk))


def test_a_client_over_its_hint_quota_is_refused_and_keeps_what_was_stored(
    tmp_path: Path, node: RegtestNode, rpc: BitcoindClient
) -> None:
    async def flood(tower: WatchtowerDaemon) -> None:
        conn = await _connect(tower)
        for i in range(2):
            await conn.send_message(TowerHint(hint_id=Hex16(bytes([i]) * 16), blob=Hex(b"b")))
            assert isinstance(await conn.receive_message(timeout=10), TowerAck)
        await conn.send_message(TowerHint(hint_id=Hex16(b"\x09" * 16), blob=Hex(b"b")))
        answer = await conn.receive_message(timeout=10)
        assert isinstance(answer, Error) and "quota of 2" in answer.message
        assert tower.db.execute("SELECT COUNT(*) FROM watch_hints").fetchone()[0] == 2

    asyncio.run(_with_tower(tmp_path / "tower", rpc, flood, quota=2))
