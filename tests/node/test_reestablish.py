"""Crashes and disconnects mid-payment, with real processes: every payment ends, money is exact.

One cluster (chain, LSP, payer, payee) runs the scenarios in order; each one
interrupts a payment at a precise step — a dev crash point
(`SUPERSCALAR_DEV_CRASH`, the daemon dies like kill -9) or a dropped
connection — restarts what died and checks that the payment completed and
every channel holds exactly the expected msat on both sides. The last test
closes the factory cooperatively and checks the on-chain outputs. The first
one has a cluster of its own: its LSP dies during the channel open.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from superscalar.bitcoin.tx import Transaction
from superscalar.node.channels import CHANNEL_CONFIG
from superscalar.node.common import CRASH_ENV

from .support import NODE, Cluster, run_node, wait_for

PAYER, PAYEE = 0, 1
AMOUNTS = {PAYER: 100_000, PAYEE: 80_000}


class Payments:
    """The cluster plus what every channel must hold (client msat), updated per payment."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.client_msat = {i: a * 1000 for i, a in AMOUNTS.items()}
        self.position: dict[int, int] = {}
        self.pubkey: dict[int, str] = {}

    def channels(self, datadir: Path) -> list[dict[str, Any]]:
        snap = self.cluster.status(datadir)
        assert snap is not None
        return list(snap["channels"])

    def connected(self, i: int) -> bool:
        return bool((self.cluster.status(self.cluster.client_dir(i)) or {}).get("connected"))

    def balances_exact(self) -> bool:
        """Both sides of both channels agree with the model; no HTLC left anywhere."""
        lsp = {int(c["position"]): c for c in self.channels(self.cluster.lsp_dir)}
        for i, msat in self.client_msat.items():
            capacity = 2 * AMOUNTS[i] * 1000
            (mine,) = self.channels(self.cluster.client_dir(i))
            theirs = lsp[self.position[i]]
            if (mine["local_msat"], mine["remote_msat"], mine["htlcs"]) != (
                msat,
                capacity - msat,
                0,
            ) or (theirs["local_msat"], theirs["remote_msat"], theirs["htlcs"]) != (
                capacity - msat,
                msat,
                0,
            ):
                return False
        return True

    def invoice(self, amount_msat: int) -> str:
        r = run_node(
            "invoice",
            "--datadir",
            str(self.cluster.client_dir(PAYEE)),
            "--amount-msat",
            str(amount_msat),
        )
        assert r.returncode == 0, r.stderr
        return str(json.loads(r.stdout)["payment_hash"])

    def start_pay(self, payment_hash: str, amount_msat: int, *extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [
                *NODE,
                "pay",
                "--datadir",
                str(self.cluster.client_dir(PAYER)),
                "--to-pubkey",
                self.pubkey[PAYEE],
                "--payment-hash",
                payment_hash,
                "--amount-msat",
                str(amount_msat),
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def payment_state(self, payment_hash: str) -> str | None:
        snap = self.cluster.status(self.cluster.client_dir(PAYER))
        states = {p["payment_hash"]: p["state"] for p in (snap or {}).get("payments", [])}
        return states.get(payment_hash)

    def paid(self, amount_msat: int) -> None:
        self.client_msat[PAYER] -= amount_msat
        self.client_msat[PAYEE] += amount_msat


def _opened(cluster: Cluster) -> Payments:
    """Wait until every channel is open on both sides with the opening balances."""
    p = Payments(cluster)

    def opened() -> bool:
        chans = p.channels(cluster.lsp_dir)
        return len(chans) == 2 and all(c.get("status") == "open" for c in chans)

    wait_for("lsp channels open", opened, timeout=120)
    f = cluster.factory(cluster.lsp_dir)
    assert f is not None
    pos_of = {c["pubkey"]: int(c["position"]) for c in f["clients"]}
    for i in AMOUNTS:
        snap = cluster.status(cluster.client_dir(i))
        assert snap is not None
        p.pubkey[i] = str(snap["pubkey"])
        p.position[i] = pos_of[p.pubkey[i]]
        wait_for(f"client {i} channel", lambda i=i: p.channels(cluster.client_dir(i)))
    wait_for("opening balances", p.balances_exact)
    return p


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Payments]:
    cluster = Cluster(tmp_path_factory.mktemp("reestablish"), 2)
    try:
        cluster.start_lsp()
        for i, amount in AMOUNTS.items():
            cluster.start_client(i, amount)
        yield _opened(cluster)
    finally:
        cluster.stop()


def _restart_lsp(p: Payments, monkeypatch: pytest.MonkeyPatch, crash: str | None) -> None:
    assert p.cluster.lsp is not None
    p.cluster.lsp.kill(signal.SIGTERM)
    for i in AMOUNTS:
        wait_for(f"client {i} sees the disconnect", lambda i=i: not p.connected(i))
    _start(p, monkeypatch, crash, p.cluster.start_lsp)
    for i in AMOUNTS:
        wait_for(f"client {i} reconnects", lambda i=i: p.connected(i))


def _start(p: Payments, monkeypatch: pytest.MonkeyPatch, crash: str | None, start: Any) -> None:
    if crash is not None:
        monkeypatch.setenv(CRASH_ENV, crash)
    try:
        start()
    finally:
        monkeypatch.delenv(CRASH_ENV, raising=False)


def _client_open(cluster: Cluster, i: int) -> bool:
    snap = cluster.status(cluster.client_dir(i)) or {}
    return any(c.get("status") == "open" for c in snap.get("channels", []))


def _exited(proc: Any) -> bool:
    return proc is not None and proc.proc.poll() == 137


@pytest.mark.slow
def test_lsp_killed_before_storing_funding_signed_opens_the_channel_after_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # its own cluster (run before the shared one exists): the crash is during the open
    cluster = Cluster(tmp_path, 2)
    try:
        monkeypatch.setenv(CRASH_ENV, "lsp-before-funding-signed")
        cluster.start_lsp()
        monkeypatch.delenv(CRASH_ENV)
        for i, amount in AMOUNTS.items():
            cluster.start_client(i, amount)
        wait_for("lsp dies as a funding_signed arrives", lambda: _exited(cluster.lsp), 120)
        # that client is open; the LSP never stored its signature on the LSP's commitment 0
        wait_for("a client's channel open", lambda: any(_client_open(cluster, i) for i in AMOUNTS))
        cluster.start_lsp()
        p = _opened(cluster)
        r = p.start_pay(p.invoice(7_000_007), 7_000_007)
        _, err = r.communicate(timeout=120)
        assert r.returncode == 0, err
        p.paid(7_000_007)
        wait_for("balances", p.balances_exact)
    finally:
        cluster.stop()


@pytest.mark.slow
def test_payment_over_reestablished_channels_is_unchanged(net: Payments) -> None:
    start = time.monotonic()
    r = net.start_pay(net.invoice(2_000_111), 2_000_111)
    out, err = r.communicate(timeout=120)
    assert r.returncode == 0, err
    net.paid(2_000_111)
    wait_for("balances", net.balances_exact)
    print(f"payment latency {json.loads(out)['ms']} ms (command {time.monotonic() - start:.2f} s)")


@pytest.mark.slow
@pytest.mark.parametrize("point", ["lsp-before-forward", "lsp-before-upstream-fulfill"])
def test_lsp_killed_mid_payment_completes_it_after_restart(
    net: Payments, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    _restart_lsp(net, monkeypatch, point)
    h = net.invoice(3_000_333)
    pay = net.start_pay(h, 3_000_333)
    wait_for(f"lsp dies at {point}", lambda: _exited(net.cluster.lsp))
    started = time.monotonic()
    net.cluster.start_lsp()
    _, err = pay.communicate(timeout=120)  # the same `pay` call completes
    assert pay.returncode == 0, err
    print(f"{point}: restart + reestablish + resume took {time.monotonic() - started:.2f} s")
    net.paid(3_000_333)
    wait_for("balances", net.balances_exact)
    assert net.payment_state(h) == "complete"


@pytest.mark.slow
def test_payer_killed_after_its_add_gets_paid_after_restart(
    net: Payments, monkeypatch: pytest.MonkeyPatch
) -> None:
    net.cluster.clients[PAYER].kill(signal.SIGTERM)
    _start(net, monkeypatch, "payer-after-add", lambda: net.cluster.start_client(PAYER, 100_000))
    wait_for("payer reconnects", lambda: net.connected(PAYER))
    h = net.invoice(1_000_001)
    pay = net.start_pay(h, 1_000_001)
    pay.communicate(timeout=120)
    assert pay.returncode != 0  # the payer died under it
    assert _exited(net.cluster.clients[PAYER])
    net.cluster.start_client(PAYER, 100_000)
    wait_for("payment complete in the payer's database", lambda: net.payment_state(h) == "complete")
    net.paid(1_000_001)
    wait_for("balances", net.balances_exact)


@pytest.mark.slow
def test_payee_killed_before_its_fulfill_is_paid_after_restart(
    net: Payments, monkeypatch: pytest.MonkeyPatch
) -> None:
    net.cluster.clients[PAYEE].kill(signal.SIGTERM)
    _start(
        net, monkeypatch, "payee-before-fulfill", lambda: net.cluster.start_client(PAYEE, 80_000)
    )
    wait_for("payee reconnects", lambda: net.connected(PAYEE))
    h = net.invoice(4_000_004)
    pay = net.start_pay(h, 4_000_004)
    wait_for("payee dies before fulfilling", lambda: _exited(net.cluster.clients[PAYEE]))
    net.cluster.start_client(PAYEE, 80_000)
    _, err = pay.communicate(timeout=120)
    assert pay.returncode == 0, err
    net.paid(4_000_004)
    wait_for("balances", net.balances_exact)


@pytest.mark.slow
def test_disconnect_with_htlc_in_flight_then_payment_completes(net: Payments) -> None:
    h = net.invoice(5_000_005)
    payee = net.cluster.clients[PAYEE].proc
    payee.send_signal(signal.SIGSTOP)  # the forwarded HTLC waits unread in the payee's socket
    pay = net.start_pay(h, 5_000_005)
    try:
        lsp = net.cluster.lsp_dir
        up = net.position[PAYER]
        wait_for(
            "the payer's HTLC committed at the LSP",
            lambda: {int(c["position"]): c["htlcs"] for c in net.channels(lsp)}[up] == 1,
        )
        time.sleep(0.5)  # the LSP forwards it to the stopped payee
        assert net.cluster.lsp is not None
        net.cluster.lsp.kill(signal.SIGTERM)  # every connection drops, HTLCs in flight
    finally:
        payee.send_signal(signal.SIGCONT)
    for i in AMOUNTS:
        wait_for(f"client {i} sees the disconnect", lambda i=i: not net.connected(i))
    net.cluster.start_lsp()
    _, err = pay.communicate(timeout=120)
    assert pay.returncode == 0, err
    net.paid(5_000_005)
    wait_for("balances", net.balances_exact)


@pytest.mark.slow
def test_forward_waiting_for_a_payee_that_never_returns_fails_back_before_expiry(
    net: Payments, monkeypatch: pytest.MonkeyPatch
) -> None:
    _restart_lsp(net, monkeypatch, "lsp-before-forward")
    h = net.invoice(6_000_006)
    height = net.cluster.chain.get_block_count()
    snap = net.cluster.status(net.cluster.lsp_dir)
    assert snap is not None
    delta = int(snap["htlc_cltv_delta"])  # the factory's forwarding delta (both exit paths)
    expiry = height + CHANNEL_CONFIG.min_cltv_delta + delta + 4
    pay = net.start_pay(h, 6_000_006, "--cltv-expiry", str(expiry))
    wait_for("lsp dies before forwarding", lambda: _exited(net.cluster.lsp))
    net.cluster.clients[PAYEE].kill(signal.SIGTERM)  # and the payee stays away
    net.cluster.start_lsp()
    wait_for("payer reconnects", lambda: net.connected(PAYER))
    time.sleep(1.0)  # the resumed forward waits for its payee: nothing fails yet
    assert pay.poll() is None and net.payment_state(h) == "pending"
    # at expiry - delta - min_cltv_delta it could still go out; one block later not
    net.cluster.chain.generate_to_address(5, net.cluster.mine_to)
    _, err = pay.communicate(timeout=120)
    assert pay.returncode != 0 and "payee did not return" in err, err
    wait_for("the payment failed in the payer's database", lambda: net.payment_state(h) == "failed")
    net.cluster.start_client(PAYEE, AMOUNTS[PAYEE])
    wait_for("payee reconnects", lambda: net.connected(PAYEE))
    wait_for("balances unchanged", net.balances_exact)


@pytest.mark.slow
def test_cooperative_close_pays_the_exact_balances(net: Payments) -> None:
    wait_for("balances", net.balances_exact)
    f = net.cluster.factory(net.cluster.lsp_dir)
    assert f is not None
    close = run_node("close", "--datadir", str(net.cluster.lsp_dir))
    assert close.returncode == 0, close.stderr + close.stdout
    close_txid = close.stdout.strip().splitlines()[-1]
    net.cluster.chain.generate_to_address(1, net.cluster.mine_to)
    tx: Transaction = net.cluster.chain.get_raw_transaction(close_txid)
    expected = [0, 0]
    for i, msat in net.client_msat.items():
        expected[net.position[i]] = msat // 1000
    assert [o.value for o in tx.outputs[:2]] == expected
    fee = int(f["funding_amount"]) - tx.total_out
    assert 0 < fee < 2_000
    assert sum(net.client_msat.values()) == 1000 * sum(AMOUNTS.values())
