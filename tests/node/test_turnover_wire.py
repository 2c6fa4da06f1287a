"""PTLC key turnover between an LSP and a client over real BOLT-8 sockets and SQLite.

Each side has its own database file; a "restart" reopens that file with fresh
objects, the way a restarted daemon would, so only what was persisted survives.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from superscalar.crypto.keys import SecretKey
from superscalar.ladder import ClientStage, LspStage, LspTurnover, TurnoverContext, factory_key
from superscalar.ladder.turnover import ReadinessChanged
from superscalar.node.common import open_db
from superscalar.node.ladder import ClientTurnovers, LspTurnovers, TurnoverFault
from superscalar.store.db import Database
from superscalar.wire.codec import Error, Hex
from superscalar.wire.connection import PeerConnection, open_connection, start_server
from superscalar.wire.messages import TurnoverPresig, TurnoverSig

OLD, NEW = hashlib.sha256(b"factory 0").digest(), hashlib.sha256(b"factory 1").digest()
LSP_NODE = SecretKey(hashlib.sha256(b"lsp node").digest())
CLIENT_NODE = SecretKey(hashlib.sha256(b"client node").digest())
CLIENT_F0 = factory_key(CLIENT_NODE, 0)
CTX = TurnoverContext(OLD, NEW, CLIENT_F0.public_key, LSP_NODE.public_key)


@pytest.fixture
def dbs(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    for d in ("lsp", "client"):
        (tmp_path / d).mkdir()
    yield tmp_path / "lsp", tmp_path / "client"


def _client(db: Database) -> ClientTurnovers:
    return ClientTurnovers(db, LSP_NODE.public_key, lambda fid: CLIENT_F0 if fid == OLD else None)


async def _round(
    lsp_dir: Path,
    client_dir: Path,
    *,
    moved: bool = True,
    pending: int = 0,
    willing: bool = True,
    tamper: bool = False,
) -> tuple[LspTurnover | None, str | None]:
    """One connection: the LSP asks, the client answers. Returns (LSP state, LSP fault)."""
    out: dict[str, object] = {}
    finished = asyncio.Event()

    async def serve(conn: PeerConnection) -> None:
        with open_db(lsp_dir) as db:
            try:
                out["state"] = await LspTurnovers(db, LSP_NODE).turn_over(
                    conn, CTX, moved=moved, pending_htlcs=0, timeout=5
                )
            except TurnoverFault as exc:
                out["fault"] = str(exc)
            finally:
                finished.set()

    server = await start_server(LSP_NODE, serve)
    try:
        conn = await open_connection("127.0.0.1", server.port, CLIENT_NODE, LSP_NODE.public_key)
        msg = await conn.receive_message(5)
        assert isinstance(msg, TurnoverPresig)
        with open_db(client_dir) as db:
            if tamper:
                forged = TurnoverSig(
                    old_factory=msg.old_factory,
                    new_factory=msg.new_factory,
                    signature=Hex(64 * b"\1"),
                )
                await conn.send_message(forged)
                assert isinstance(await conn.receive_message(5), Error)
            else:
                await _client(db).answer(
                    conn, msg, moved=moved, pending_htlcs=pending, willing=willing
                )
        await asyncio.wait_for(finished.wait(), 10)
        await conn.close()
    finally:
        await server.close()
    return out.get("state"), out.get("fault")  # type: ignore[return-value]


def test_client_hands_over_its_factory_key_and_the_lsp_stores_it(dbs: tuple[Path, Path]) -> None:
    state, _ = asyncio.run(_round(*dbs))
    assert state is not None and state.stage is LspStage.DONE
    with open_db(dbs[0]) as db:
        assert LspTurnovers(db, LSP_NODE).recovered_keys(OLD) == {
            CLIENT_F0.public_key.data: CLIENT_F0
        }
    with open_db(dbs[1]) as db:
        client = _client(db)
        assert client.get(OLD).stage is ClientStage.HANDED_OVER
        assert client.current_factory() == NEW


def test_a_client_declining_turnover_keeps_its_key_and_the_lsp_records_why(
    dbs: tuple[Path, Path],
) -> None:
    state, _ = asyncio.run(_round(*dbs, willing=False))
    assert state is not None and state.stage is LspStage.REFUSED
    assert state.reason == "client declines key turnover"
    with open_db(dbs[0]) as db:
        assert LspTurnovers(db, LSP_NODE).recovered_keys(OLD) == {}
    with open_db(dbs[1]) as db:
        assert _client(db).get(OLD).stage is ClientStage.HOLDING
        assert _client(db).current_factory() is None


def test_a_client_with_a_pending_old_htlc_refuses_until_it_resolves(
    dbs: tuple[Path, Path],
) -> None:
    state, _ = asyncio.run(_round(*dbs, pending=1))
    assert state is not None and state.stage is LspStage.REFUSED
    assert "HTLC" in state.reason
    later, _ = asyncio.run(_round(*dbs, pending=0))
    assert later is not None and later.stage is LspStage.DONE


def test_a_bad_completion_gets_the_client_an_error_and_the_lsp_keeps_waiting(
    dbs: tuple[Path, Path],
) -> None:
    state, fault = asyncio.run(_round(*dbs, tamper=True))
    assert state is None and fault is not None and "not valid" in fault
    with open_db(dbs[0]) as db:
        stored = LspTurnovers(db, LSP_NODE).get(OLD, CLIENT_F0.public_key)
    assert stored is not None and stored.stage is LspStage.PRESIGNED


def test_after_an_lsp_restart_mid_turnover_the_stored_presignature_is_resent(
    dbs: tuple[Path, Path],
) -> None:
    """The LSP persisted and sent its pre-signature, then died before any answer."""
    with open_db(dbs[0]) as db:
        first = (
            LspTurnovers(db, LSP_NODE)
            .step(LspTurnover(CTX), ReadinessChanged(moved=True, pending_htlcs=0))
            .state
        )
    assert first.stage is LspStage.PRESIGNED
    state, _ = asyncio.run(_round(*dbs))
    assert state is not None and state.stage is LspStage.DONE
    assert state.presig == first.presig
    assert state.secret == CLIENT_F0
