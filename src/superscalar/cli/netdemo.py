"""The networked part of `superscalar demo`: real processes, real sockets, real chain.

Starts `superscalar chain`, an LSP and four clients as separate processes in a
work directory it names (logs and databases stay there), lets them build and
fund a factory over BOLT-8, opens the leaf channels, makes a payment between
two clients through the LSP, then closes the factory cooperatively on the
channel balances and shows what the chain says. Everything goes through the
same commands an operator would run.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.table import Table

from superscalar.chain.bitcoind import BitcoindClient
from superscalar.node.control import call_control

__all__ = ["free_port", "pubkey_from_log", "run_network_demo", "wait_for"]

T = TypeVar("T")
CLIENT_AMOUNTS = {"alice": 400_000, "bob": 300_000, "carol": 200_000, "dave": 100_000}


def free_port() -> int:
    """A loopback port free right now (the demo and the process tests bind daemons to it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 60.0) -> T:
    """Poll `check` until it returns something truthy; a process not up yet may raise."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except Exception:  # the process may not be up yet: keep polling
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


class _Processes:
    """Child processes, each logging into the work directory; stopped with SIGTERM."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, log: Path, *args: str) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "superscalar", *args],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def pubkey_from_log(log: Path) -> str | None:
    """The node key a daemon printed (`pubkey <hex>`) at the top of its log."""
    for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
        if line.startswith("pubkey "):
            return line.split()[1]
    return None


def _factory(datadir: Path) -> dict[str, Any] | None:
    live = [f for f in call_control(datadir, "status")["factories"] if f["state"] != "aborted"]
    return live[-1] if live else None


def _cli(*args: str) -> str:
    """An operator command, exactly as a user would type it; its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "superscalar", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"superscalar {args[0]} failed: {done.stderr.strip()}")
    return done.stdout


def _channels_open(datadir: Path, count: int) -> bool:
    chans = call_control(datadir, "status").get("channels", [])
    return len(chans) == count and all(c.get("status") == "open" for c in chans)


def _pay(
    console: Console,
    workdir: Path,
    lsp_dir: Path,
    payer: str = "alice",
    payee: str = "bob",
    amount_msat: int = 25_000_000,
    channels: int = 1,
) -> int:
    """payee invoices, payer pays it through the LSP: HTLCs over the wire, real preimage."""
    count = channels * len(CLIENT_AMOUNTS)
    wait_for("the leaf channels to open", lambda: _channels_open(lsp_dir, count))
    for name in CLIENT_AMOUNTS:
        client_dir = workdir / name
        wait_for(f"{name}'s channel", partial(_channels_open, client_dir, channels))
    invoice = json.loads(
        _cli("invoice", "--datadir", str(workdir / payee), "--amount-msat", str(amount_msat))
    )
    bob_key = str(call_control(workdir / payee, "status")["pubkey"])
    result = json.loads(
        _cli(
            "pay",
            "--datadir",
            str(workdir / payer),
            "--to-pubkey",
            bob_key,
            "--payment-hash",
            invoice["payment_hash"],
            "--amount-msat",
            str(amount_msat),
        )
    )
    console.print(
        f"   {payer} paid {payee} {amount_msat:,} msat through the LSP in {result['ms']} ms: "
        f"payment hash {invoice['payment_hash'][:16]}…, preimage {result['preimage'][:16]}… "
        "(update_add → commitment_signed → revoke_and_ack on both channels, over BOLT-8)"
    )
    return amount_msat


def _lsp_position(lsp_dir: Path, workdir: Path, name: str) -> int:
    key = str(call_control(workdir / name, "status")["pubkey"])
    factory = _factory(lsp_dir)
    assert factory is not None
    return next(int(c["position"]) for c in factory["clients"] if c["pubkey"] == key)


def _breach(console: Console, chain: BitcoindClient, miner: str, workdir: Path) -> bool:
    """The LSP broadcasts its revoked commitment with bob; bob's watcher takes the whole channel."""
    from superscalar.bitcoin.script import is_p2a
    from superscalar.node.devtools import broadcast_breach

    lsp_dir, bob_dir = workdir / "lsp", workdir / "bob"
    position = _lsp_position(lsp_dir, workdir, "bob")
    export = call_control(lsp_dir, "dev_export", position)
    done = broadcast_breach(chain, export, None, miner)
    started = time.monotonic()  # the revoked commitment's block is now the tip
    cheat_txid = str(done["commitment_txid"])
    cheat = chain.get_raw_transaction(cheat_txid)
    capacity = 2 * CLIENT_AMOUNTS["bob"]
    console.print(
        f"[bold red]Breach[/bold red]: the LSP put the factory path ({len(done['path'])} txs, "
        f"mined through their relative locks) and its REVOKED commitment with bob on chain: "
        f"{cheat_txid} at height {done['height']}, outputs {done['outputs']} sat "
        f"(the state from before bob was paid)"
    )
    in_mempool: list[float] = []

    def penalty() -> str | None:
        for txid in chain.get_raw_mempool():
            tx = chain.get_raw_transaction(txid)
            if any(i.prevout.txid_hex == cheat_txid for i in tx.inputs):
                in_mempool.append(time.monotonic())
                chain.generate_to_address(1, miner)
        for b in call_control(bob_dir, "watch")["breaches"]:
            if b["txid"] == cheat_txid and b["won"]:
                return str(b["spender"])
        return None

    spender = wait_for("bob's watcher to sweep the revoked commitment", penalty, timeout=120)
    info = chain.get_raw_transaction_verbose(spender)
    taken = sum(
        cheat.outputs[i.prevout.vout].value
        for i in info.tx.inputs
        if not is_p2a(cheat.outputs[i.prevout.vout].script_pubkey)
    )
    (out,) = info.tx.outputs
    fee = taken - out.value
    anchor = sum(o.value for o in cheat.outputs if is_p2a(o.script_pubkey))
    ok = info.confirmations >= 1 and out.value + fee + anchor == capacity == cheat.total_out
    latency = (in_mempool[0] - started) if in_mempool else float("nan")
    console.print(
        f"   bob's watcher saw it in the block and broadcast the penalty {spender}: it takes "
        f"every output of the revoked commitment (the LSP's to_local by the revocation key); "
        f"confirmed "
        f"({info.confirmations}). bob gets {out.value:,} sat = the whole {capacity:,}-sat "
        f"channel − {anchor} sat anchor − {fee} sat fee; the LSP gets nothing "
        f"(breach block → penalty in mempool: {latency:.1f} s): "
        f"[{'green' if ok else 'red'}]{ok}[/]"
    )
    return ok


def _rotate(console: Console, workdir: Path, lsp_dir: Path, chain: BitcoindClient) -> bool:
    """Mine factory 0 into DYING and watch the daemons rotate: invite, factory 1 at the same
    balances, key turnover, the LSP's lone close of factory 0."""
    ladder = wait_for(  # the ladder's view is refreshed on its own tick
        "the LSP's ladder to see factory 0",
        lambda: (lad := call_control(lsp_dir, "status")["ladder"]).get("factories") and lad,
    )
    (f0,) = ladder["factories"]
    miner = chain.get_new_address()
    chain.generate_to_address(int(f0["dying_at"]) - chain.get_block_count(), miner)
    console.print(
        f"[bold]Rotation[/bold]: mined to height {f0['dying_at']}: factory 0 is DYING "
        f"(active {ladder['active_blocks']} + dying {ladder['dying_blocks']} blocks)"
    )
    started = time.monotonic()
    done = wait_for(
        "factory 0 to be closed by the LSP alone",
        lambda: next(
            (
                f
                for f in call_control(lsp_dir, "status")["ladder"]["factories"]
                if f["factory_id"] == f0["factory_id"] and f["state"] == "closed"
            ),
            None,
        ),
        timeout=180,
    )
    seconds = time.monotonic() - started
    ladder = call_control(lsp_dir, "status")["ladder"]
    for event in ladder["events"]:
        console.print(f"   LSP: {event}")
    rot = ladder["rotation"]
    console.print(
        f"   {done['keys_handed_over']}/{done['clients']} keys handed over; rotation took "
        f"{seconds:.1f} s (invite → funded {rot.get('invite_to_funded_s')} s); lone close "
        f"{rot.get('close_vsize')} vB, fee {rot.get('close_fee_sat')} sat"
    )
    chain.generate_to_address(1, miner)
    # a moved balance unlocks once the old factory's close is in a block (the LSP's next tick)
    wait_for(
        "the moved balances to unlock",
        lambda: call_control(lsp_dir, "status")["ladder"].get("locked_clients") == 0,
        timeout=60,
    )
    return bool(done["keys_handed_over"] == done["clients"])


def _advance(console: Console, workdir: Path, lsp_dir: Path, amount: int = 30_000) -> bool:
    """bob buys `amount` sat of inbound liquidity: his leaf advances one DW state."""
    wait_for("the leaf channels to open", lambda: _channels_open(lsp_dir, len(CLIENT_AMOUNTS)))
    bob = _lsp_position(lsp_dir, workdir, "bob")
    leaf_of = next(
        i
        for i, leaf in enumerate(_leaves(lsp_dir))
        if bob in range(leaf["first"], leaf["first"] + len(leaf["channels_sat"]))
    )
    before = _leaves(lsp_dir)[leaf_of]
    result = json.loads(
        _cli("liquidity", "--datadir", str(workdir / "bob"), "--amount", str(amount))
    )
    after = _leaves(lsp_dir)[leaf_of]
    table = Table(title=f"bob buys {amount:,} sat of inbound: leaf {leaf_of} advances")
    for column in ("", "DW state", "nSequence", "L-stock gen", "channels (sat)", "L-stock (sat)"):
        table.add_column(column)
    for label, leaf in (("before", before), ("after", after)):
        table.add_row(
            label,
            str(leaf["dw_state"]),
            str(leaf["sequence"]),
            str(leaf["lstock_generation"]),
            ", ".join(f"{v:,}" for v in leaf["channels_sat"]),
            f"{leaf['lstock_sat']:,}",
        )
    console.print(table)
    ok: bool = (
        after["lstock_sat"] == before["lstock_sat"] - amount
        and sum(after["channels_sat"]) == sum(before["channels_sat"]) + amount
        and after["sequence"] < before["sequence"]
    )
    console.print(
        f"   new leaf state {result['leaf_txid'][:16]}… signed by the LSP and the leaf's "
        "clients (LEAF_ADVANCE_PROPOSE → NONCE → AGG_NONCE → PSIG → DONE); the channels "
        "re-anchored on it, the old L-stock secret revealed: "
        f"[{'green' if ok else 'red'}]{ok}[/]"
    )
    return ok


def _leaves(lsp_dir: Path) -> list[dict[str, Any]]:
    """The LSP's leaves, each with the position of its first client."""
    factory = _factory(lsp_dir)
    assert factory is not None
    leaves, first = [], 0
    for leaf in factory["leaves"]:
        leaves.append({**leaf, "first": first})
        first += len(leaf["channels_sat"])
    return leaves


def run_network_demo(
    console: Console,
    workdir: Path,
    breach: bool = False,
    rotation: bool = False,
    advance: bool = False,
) -> bool:
    """Chain + LSP + 4 clients as processes: build and fund a factory, pay, close cooperatively.

    With `breach`, the close is replaced by a cheating LSP and bob's watcher punishing it.
    With `rotation`, factory 0 is first walked into DYING and replaced by factory 1
    (see `_rotate`); bob then pays carol there, and factory 1 is the one closed."""
    procs = _Processes()
    chain_dir, lsp_dir = workdir / "chain", workdir / "lsp"
    chain_port, lsp_port = free_port(), free_port()
    try:
        console.print(f"[bold]Networked[/bold]: processes and logs in [cyan]{workdir}[/cyan]")
        procs.start(
            workdir / "chain.log",
            "chain",
            "--datadir",
            str(chain_dir),
            "--rpcport",
            str(chain_port),
        )
        cookie = chain_dir / ".cookie"
        wait_for("the chain's RPC cookie", cookie.exists)
        url = f"http://127.0.0.1:{chain_port}/"
        chain = BitcoindClient(url, cookie_file=cookie)
        wait_for("the chain", lambda: chain.get_block_count() >= 0 or None)
        miner = chain.get_new_address()
        chain.generate_to_address(110, miner)
        chain_args = ("--chain-rpc", url, "--chain-cookie", str(cookie))
        procs.start(
            lsp_dir / "log.txt", "lsp", "--datadir", str(lsp_dir), "--port", str(lsp_port),
            "--clients", str(len(CLIENT_AMOUNTS)), *chain_args,
            # the operator credits each newcomer its amount (a join never sets its balance)
            "--client-credit-sat", str(max(CLIENT_AMOUNTS.values())),
            *(("--dev-tools",) if breach else ()),
        )  # fmt: skip
        lsp_key = wait_for("the LSP's node key", lambda: pubkey_from_log(lsp_dir / "log.txt"))
        for name, amount in CLIENT_AMOUNTS.items():
            procs.start(
                workdir / name / "log.txt", "client", "--datadir", str(workdir / name),
                "--lsp", f"127.0.0.1:{lsp_port}", "--lsp-pubkey", lsp_key,
                "--amount", str(amount), *chain_args,
            )  # fmt: skip
        started = time.monotonic()
        factory = wait_for(
            "the factory to be signed and funded",
            lambda: (f := _factory(lsp_dir)) and f["state"] == "funded" and f,
            timeout=120,
        )
        chain.generate_to_address(1, miner)
        seconds = time.monotonic() - started
        funding = chain.get_raw_transaction_verbose(str(factory["funding_txid"]))
        table = Table(title="Factory built over BOLT-8 by 5 processes")
        for column in ("who", "channel (sat)", "factory state seen by them"):
            table.add_column(column)
        table.add_row(
            "LSP", f"{factory['lsp_balance_sat']:,} (inbound + L-stock)", str(factory["state"])
        )
        for name, amount in CLIENT_AMOUNTS.items():
            seen = _factory(workdir / name)
            table.add_row(name, f"{amount:,}", str(seen["state"] if seen else "-"))
        console.print(table)
        console.print(
            f"   joined, PROPOSE → NONCES → PSIGS → READY and funded in {seconds:.1f} s; "
            f"funding {factory['funding_txid']} has {funding.confirmations} confirmation(s); "
            f"{factory['signatures']} tree signatures stored; {len(factory['nodes'])} tree txs"
        )
        if breach:
            wait_for(
                "the leaf channels to open", lambda: _channels_open(lsp_dir, len(CLIENT_AMOUNTS))
            )
            call_control(lsp_dir, "dev_snapshot")  # the cheater keeps its signed commitments
        advanced = _advance(console, workdir, lsp_dir) if advance else True
        paid_msat = _pay(console, workdir, lsp_dir)
        if breach:
            ok = _breach(console, chain, miner, workdir) and advanced
            chain.close()
            return ok
        balances = dict(CLIENT_AMOUNTS)
        balances["alice"] -= paid_msat // 1000
        balances["bob"] += paid_msat // 1000
        rotated = True
        if rotation:
            rotated = _rotate(console, workdir, lsp_dir, chain)
            more = _pay(console, workdir, lsp_dir, "bob", "carol", 40_000_000, channels=2)
            balances["bob"] -= more // 1000
            balances["carol"] += more // 1000
        close_txid = wait_for(  # the last revoke_and_ack may still be on its way: retry
            "the cooperative close", lambda: str(call_control(lsp_dir, "close")["txid"])
        )
        chain.generate_to_address(1, miner)
        close = chain.get_raw_transaction_verbose(close_txid)
        paid = sorted(o.value for o in close.tx.outputs)
        expected = sorted(balances.values())
        everyone_paid = all(paid.count(a) >= expected.count(a) for a in expected)
        ok = close.confirmations >= 1 and everyone_paid and rotated and advanced
        console.print(
            f"   cooperative close {close_txid}: outputs {paid} sat, confirmed "
            f"({close.confirmations}); every client paid exactly: "
            f"[{'green' if ok else 'red'}]{ok}[/]"
        )
        chain.close()
        return ok
    finally:
        procs.stop()
