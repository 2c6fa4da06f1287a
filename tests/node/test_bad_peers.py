"""Peers that break the protocol get a wire Error and are dropped; the LSP's state is untouched."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from superscalar.crypto.keys import PublicKey, SecretKey
from superscalar.wire.codec import Error, Hex, Hex32, Init
from superscalar.wire.connection import exchange_init, open_connection
from superscalar.wire.errors import WireError
from superscalar.wire.messages import FactoryPropose, FactoryPsigs, JoinRequest

from .support import Cluster, wait_for


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, 2)
    try:
        c.start_lsp()
        yield c
    finally:
        c.stop()


async def _send_then_read(cluster: Cluster, payload: bytes | None, message: object) -> object:
    conn = await open_connection(
        "127.0.0.1", cluster.lsp_port, SecretKey.generate(), PublicKey.from_hex(cluster.lsp_pubkey)
    )
    await exchange_init(conn, Init())
    if payload is not None:
        await conn.send(payload)
    else:
        assert isinstance(message, FactoryPsigs)
        await conn.send_message(message)
    reply = await conn.receive_message(10)
    with pytest.raises(WireError):
        await conn.receive_message(10)  # then the LSP hangs up
    return reply


@pytest.mark.slow
def test_garbage_and_out_of_order_get_an_error_and_a_disconnect(cluster: Cluster) -> None:
    for payload, message in (
        (b"\x00garbage{", None),
        (b'{"type":"join_request","amount_sat":-5,"payout_script":"00"}', None),
        (None, FactoryPsigs(factory_id=Hex32(bytes(32)), attempt=1, bundle=Hex(b"\x01"))),
    ):
        reply = asyncio.run(_send_then_read(cluster, payload, message))
        assert isinstance(reply, Error)
    snap = cluster.status(cluster.lsp_dir)
    assert snap is not None and snap["factories"] == [] and snap["queued_clients"] == 0
    assert cluster.lsp is not None and cluster.lsp.proc.poll() is None


async def _join_and_vanish(cluster: Cluster) -> None:
    """A client that joins, gets PROPOSE, and dies (as kill -9 would) before sending nonces."""
    conn = await open_connection(
        "127.0.0.1", cluster.lsp_port, SecretKey.generate(), PublicKey.from_hex(cluster.lsp_pubkey)
    )
    await exchange_init(conn, Init())
    await conn.send_message(JoinRequest(amount_sat=100_000, payout_script=Hex(bytes(22))))
    msg = await conn.receive_message(30)
    assert isinstance(msg, FactoryPropose)
    await conn.close()


@pytest.mark.slow
def test_peer_lost_mid_ceremony_aborts_and_a_fresh_attempt_funds(cluster: Cluster) -> None:
    cluster.start_client(0)
    wait_for(
        "client 0 queued",
        lambda: (cluster.status(cluster.lsp_dir) or {}).get("queued_clients") == 1,
    )
    asyncio.run(_join_and_vanish(cluster))
    wait_for(
        "aborted attempt",
        lambda: any(
            f["state"] == "aborted"
            for f in (cluster.status(cluster.lsp_dir) or {"factories": []})["factories"]
        ),
    )
    balance_before = cluster.chain.get_balance()
    cluster.start_client(1)
    wait_for("funded", lambda: cluster.state_of(cluster.lsp_dir) == "funded", timeout=60)
    wait_for("client 0 funded", lambda: cluster.state_of(cluster.client_dir(0)) == "funded")
    snap = cluster.status(cluster.lsp_dir)
    assert snap is not None
    states = sorted(f["state"] for f in snap["factories"])
    assert states == ["aborted", "funded"]
    # the aborted attempt's funding tx was never signed: only the live one spent wallet coins
    cluster.chain.generate_to_address(1, cluster.mine_to)
    assert cluster.chain.get_balance() > balance_before - 400_000


@pytest.mark.slow
def test_client_killed_after_nonces_is_aborted_on_restart(cluster: Cluster) -> None:
    """kill -9 of a client while the LSP waits for the second join: the first client's
    restart finds no live factory and rejoins; then the factory funds normally."""
    cluster.start_client(0)
    wait_for(
        "client 0 queued",
        lambda: (cluster.status(cluster.lsp_dir) or {}).get("queued_clients") == 1,
    )
    cluster.clients[0].kill(signal.SIGKILL)
    cluster.start_client(0)
    cluster.start_client(1)
    wait_for("funded", lambda: cluster.state_of(cluster.client_dir(0)) == "funded", timeout=60)


def test_client_restart_aborts_an_attempt_whose_nonces_died(tmp_path: Path) -> None:
    """kill -9 after sending nonces: the secret nonces are gone, so the attempt must be
    aborted (never re-signed); an attempt past psigs_sent is kept for READY."""
    from superscalar.node.client import ClientConfig, ClientDaemon
    from superscalar.node.common import now

    class FakeChain:
        def get_new_address(self) -> str:
            return "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"

    key = SecretKey.generate()
    config = ClientConfig(tmp_path, "127.0.0.1", 1, SecretKey.generate().public_key, 100_000)
    daemon = ClientDaemon(config, key, FakeChain())  # type: ignore[arg-type]
    with daemon.db.transaction() as c:
        for fid, state in (("aa" * 32, "nonces_sent"), ("bb" * 32, "psigs_sent")):
            c.execute(
                "INSERT INTO factories (factory_id, role, attempt, state, position, propose,"
                " created, updated) VALUES (?, 'client', 1, ?, 0, '{}', ?, ?)",
                (fid, state, now(), now()),
            )
    daemon._recover()
    states = dict(daemon.db.execute("SELECT factory_id, state FROM factories").fetchall())
    assert states == {"aa" * 32: "aborted", "bb" * 32: "psigs_sent"}
    assert daemon._current()["factory_id"] == "bb" * 32
    daemon.db.close()


@pytest.mark.slow
def test_client_with_the_wrong_lsp_key_says_so(cluster: Cluster) -> None:
    cluster.lsp_pubkey, real = SecretKey.generate().public_key.hex(), cluster.lsp_pubkey
    cluster.start_client(0)
    cluster.lsp_pubkey = real
    snap = wait_for(
        "handshake error in status",
        lambda: (s := cluster.status(cluster.client_dir(0))) and s["last_error"] and s,
    )
    assert "wrong --lsp-pubkey" in snap["last_error"]
    lsp = cluster.status(cluster.lsp_dir)
    assert lsp is not None and lsp["queued_clients"] == 0


async def _fuzz_once(cluster: Cluster, payloads: list[bytes]) -> list[object]:
    """Send `payloads` after Init; collect what the LSP answers until it hangs up."""
    conn = await open_connection(
        "127.0.0.1", cluster.lsp_port, SecretKey.generate(), PublicKey.from_hex(cluster.lsp_pubkey)
    )
    await exchange_init(conn, Init())
    replies: list[object] = []
    try:
        for p in payloads:
            await conn.send(p)
        while True:
            replies.append(await conn.receive_message(10))
    except WireError:
        pass
    finally:
        await conn.close()
    return replies


@pytest.mark.slow
def test_fuzzed_wire_input_gets_errors_and_never_state(cluster: Cluster) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    json_ish = st.one_of(
        st.binary(min_size=1, max_size=200),
        st.builds(
            lambda t, extra: (
                (
                    '{"type":"%s"%s}' % (t, extra)  # noqa: UP031 - readable template
                ).encode()
            ),
            st.sampled_from(["join_request", "factory_nonces", "factory_psigs", "ping", "x"]),
            st.sampled_from(["", ',"amount_sat":1', ',"amount_sat":"a"', ',"bundle":"zz"']),
        ),
    )

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(st.lists(json_ish, min_size=1, max_size=3))
    def fuzz(payloads: list[bytes]) -> None:
        replies = asyncio.run(_fuzz_once(cluster, payloads))
        assert all(isinstance(r, Error) for r in replies)

    fuzz()
    snap = cluster.status(cluster.lsp_dir)
    assert snap is not None and snap["factories"] == [] and snap["queued_clients"] == 0
    assert cluster.lsp is not None and cluster.lsp.proc.poll() is None


async def _join_and_stay_silent(cluster: Cluster, seconds: float) -> float:
    """Join, take PROPOSE, never answer: how long until the LSP gives up on us."""
    conn = await open_connection(
        "127.0.0.1", cluster.lsp_port, SecretKey.generate(), PublicKey.from_hex(cluster.lsp_pubkey)
    )
    await exchange_init(conn, Init())
    await conn.send_message(JoinRequest(amount_sat=100_000, payout_script=Hex(bytes(22))))
    msg = await conn.receive_message(30)
    assert isinstance(msg, FactoryPropose)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(WireError):
        while True:  # the LSP's Error, then the hang-up
            reply = await conn.receive_message(seconds)
            assert isinstance(reply, Error)
    return loop.time() - start


@pytest.mark.slow
def test_silent_client_is_dropped_after_the_configured_step_timeout(tmp_path: Path) -> None:
    c = Cluster(tmp_path, 2)
    try:
        c.start_lsp("--step-timeout", "3")
        c.start_client(0)
        wait_for(
            "client 0 queued",
            lambda: (c.status(c.lsp_dir) or {}).get("queued_clients") == 1,
        )
        waited = asyncio.run(_join_and_stay_silent(c, 30))
        assert 2.5 < waited < 15  # the default for 2 clients would be 61 s
        wait_for(
            "aborted attempt",
            lambda: any(
                f["state"] == "aborted"
                for f in (c.status(c.lsp_dir) or {"factories": []})["factories"]
            ),
        )
    finally:
        c.stop()
