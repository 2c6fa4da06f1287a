"""Real processes on loopback: the chain, an LSP and clients, driven through the CLI."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from superscalar.chain.bitcoind import BitcoindClient
from superscalar.cli.netdemo import free_port, wait_for
from superscalar.cli.netdemo import pubkey_from_log as _pubkey

NODE = [sys.executable, "-m", "superscalar"]


class Proc:
    """A daemon subprocess with its log in its datadir."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log = log
        self._fh = log.open("ab")
        self.proc = subprocess.Popen(
            args,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            env=None if env is None else {**os.environ, **env},
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)
        self._fh.close()

    def text(self) -> str:
        return self.log.read_text(errors="replace")


class Cluster:
    """Chain + LSP + clients under one temp dir."""

    def __init__(self, root: Path, n_clients: int) -> None:
        self.root = root
        self.n = n_clients
        self.chain_dir = root / "chain"
        self.chain_port = free_port()
        self.chain_proc = Proc(
            [
                sys.executable,
                "-m",
                "superscalar",
                "chain",
                "--datadir",
                str(self.chain_dir),
                "--rpcport",
                str(self.chain_port),
            ],
            root / "chain.log",
        )
        self.cookie = self.chain_dir / ".cookie"
        wait_for("chain cookie", self.cookie.exists)
        self.url = f"http://127.0.0.1:{self.chain_port}/"
        self.chain = BitcoindClient(self.url, cookie_file=self.cookie)
        wait_for("chain rpc", lambda: self.chain.get_block_count() >= 0)
        self.mine_to = self.chain.get_new_address()
        self.chain.generate_to_address(110, self.mine_to)
        self.lsp_port = free_port()
        self.lsp_dir = root / "lsp"
        self.lsp: Proc | None = None
        self.clients: dict[int, Proc] = {}
        self.lsp_pubkey = ""

    def chain_args(self) -> list[str]:
        return ["--chain-rpc", self.url, "--chain-cookie", str(self.cookie)]

    def start_lsp(self, *extra: str, env: dict[str, str] | None = None) -> None:
        """`env`: added to the daemon's environment (e.g. `SUPERSCALAR_DEV_CRASH`)."""
        self.lsp = Proc(
            [
                *NODE,
                "lsp",
                "--datadir",
                str(self.lsp_dir),
                "--port",
                str(self.lsp_port),
                "--clients",
                str(self.n),
                *self.chain_args(),
                # a long life: tests that mine (breaches, exits) must not trip a rotation;
                # the ladder's own tests pass shorter lives, which win (last flag counts)
                *("--active-blocks", "5000", "--dying-blocks", "500"),
                # the operator's credit: each newcomer opens with its amount on its side
                *("--client-credit-sat", "10000000"),
                *extra,
                "-v",
            ],
            self.lsp_dir / "log.txt",
            env,
        )
        line = wait_for("lsp pubkey", lambda: _pubkey(self.lsp_dir / "log.txt"))
        self.lsp_pubkey = line
        wait_for("lsp control", lambda: self.status(self.lsp_dir))

    def client_dir(self, i: int) -> Path:
        return self.root / f"client{i}"

    def start_client(self, i: int, amount: int = 100_000, *extra: str) -> None:
        d = self.client_dir(i)
        self.clients[i] = Proc(
            [
                *NODE,
                "client",
                "--datadir",
                str(d),
                "--lsp",
                f"127.0.0.1:{self.lsp_port}",
                "--lsp-pubkey",
                self.lsp_pubkey,
                "--amount",
                str(amount),
                *self.chain_args(),
                *extra,
                "-v",
            ],
            d / "log.txt",
        )

    def status(self, datadir: Path) -> dict[str, Any] | None:
        r = run_node("status", "--datadir", str(datadir), "--json")
        return json.loads(r.stdout) if r.returncode == 0 else None

    def factory(self, datadir: Path) -> dict[str, Any] | None:
        snap = self.status(datadir)
        if not snap:
            return None
        live = [f for f in snap["factories"] if f["state"] != "aborted"]
        return live[-1] if live else None

    def state_of(self, datadir: Path) -> str | None:
        f = self.factory(datadir)
        return None if f is None else str(f["state"])

    def mine_until(self, height: int) -> None:
        """Mine (to `mine_to`) until the chain is at `height`; never backwards."""
        n = height - self.chain.get_block_count()
        assert n >= 0, f"the chain is already past {height}"
        if n:
            self.chain.generate_to_address(n, self.mine_to)

    def channels_open(self, datadir: Path, count: int) -> bool:
        """`count` channels in `datadir`'s status, every one open."""
        snap = self.status(datadir)
        chans = [] if snap is None else snap["channels"]
        return len(chans) == count and all(c.get("status") == "open" for c in chans)

    def stop(self) -> None:
        for p in [*self.clients.values(), *([self.lsp] if self.lsp else [])]:
            p.kill(signal.SIGTERM)
        self.chain_proc.kill(signal.SIGTERM)
        self.chain.close()


def client_pubkey(cluster: Cluster, i: int) -> str:
    """Client i's node pubkey, from its status."""
    snap = cluster.status(cluster.client_dir(i))
    assert snap is not None
    return str(snap["pubkey"])


def payout_script(datadir: Path) -> bytes:
    """A client's own payout script (its `node_kv`): where its exits, closes and the
    distribution tx pay it."""
    db = sqlite3.connect(f"file:{datadir / 'node.sqlite3'}?mode=ro", uri=True)
    try:
        (value,) = db.execute("SELECT value FROM node_kv WHERE key='payout_script'").fetchone()
        return bytes.fromhex(value)
    finally:
        db.close()


def try_pay(cluster: Cluster, payer: int, payee: int, amount_msat: int) -> Any:
    """Client `payer` pays an invoice of client `payee`; the `pay` run, success or not."""
    inv = run_node(
        "invoice", "--datadir", str(cluster.client_dir(payee)), "--amount-msat", str(amount_msat)
    )
    assert inv.returncode == 0, inv.stderr
    return run_node(
        "pay", "--datadir", str(cluster.client_dir(payer)),
        "--to-pubkey", client_pubkey(cluster, payee),
        "--payment-hash", json.loads(inv.stdout)["payment_hash"], "--amount-msat", str(amount_msat),
    )  # fmt: skip


def run_node(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*NODE, *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
