"""Swarm benchmark: one LSP and N clients over real sockets and real BOLT-8.

The chain is the embedded regtest node served over loopback RPC from this
process. The LSP runs in its own process; the clients run as asyncio tasks
(`ClientDaemon` objects, each with its own datadir) spread over a few worker
processes. We time the factory ceremony (the LSP's own figure, and the wall
time from starting the clients until every client holds a funded factory) and
report peak RSS of the LSP process and per client (worker peak RSS / clients),
and CPU seconds until funded: the LSP's, and the clients' per client (all N
clients share this machine's cores, so at large N the ceremony's wall time is
N clients' O(N) view checks run back to back; on their own machines they run
in parallel and each costs `client_cpu_seconds_each_until_funded`).

Then every leaf channel opens and, at one signal, every client pays its ring
neighbour (within its worker) a few times in a row, all clients at once:
real invoices and preimages, client → LSP → client over BOLT-8, each payment
counted only when the preimage we got back hashes to the invoice's hash.
Payments per second = settled payments / (last finish − first start).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import multiprocessing as mp
import resource
import tempfile
import time
from collections.abc import Callable
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

from superscalar.bitcoin.script import P2A_SCRIPT
from superscalar.chain.node import RegtestNode

from .chain import prepare_node

Progress = Callable[[str], None]
_AMOUNT = 100_000
_PAY_MSAT = 1_000_000
"""1,000 sat a payment: above dust, so every payment is a real HTLC output."""
_IN_FLIGHT_PER_WORKER = 16
"""Payments a worker keeps in flight at once: the rate is throughput, and piling every
client's payment on the LSP at once only adds latency (and hits the 60 s pay timeout)."""


def payments_per_client(n: int) -> int:
    """Enough payments for a stable rate, few enough that N = 1024 stays quick."""
    return max(2, min(10, 2048 // n))


def _cpu_seconds() -> float:
    """User + system CPU of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _chain(url: str, cookie: str) -> Any:
    from superscalar.chain.bitcoind import BitcoindClient

    return BitcoindClient(url, cookie_file=Path(cookie), timeout=600)


def _lsp_main(
    root: str, url: str, cookie: str, n: int, out: Queue[Any], go: Any, stop: Any
) -> None:
    _quiet_after_stop()
    from superscalar.node.common import load_or_create_key
    from superscalar.node.lsp import LspConfig, LspDaemon

    async def main() -> None:
        datadir = Path(root) / "lsp"
        key, _ = load_or_create_key(datadir)
        daemon = LspDaemon(
            LspConfig(datadir, "127.0.0.1", 0, n, client_credit_sat=_AMOUNT),
            key,
            _chain(url, cookie),
        )
        task = asyncio.create_task(daemon.run())
        while daemon.server is None:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        out.put(("lsp", key.public_key.hex(), daemon.server.port))
        while daemon.ceremony_seconds is None:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        out.put(("ceremony", daemon.ceremony_seconds, _peak_rss_mb(), _cpu_seconds()))
        while not go.is_set():
            await asyncio.sleep(0.02)
        commits = daemon.db.commits  # the payments' SQLite commits start here
        while not stop.is_set():
            await asyncio.sleep(0.05)
        logging.disable(logging.CRITICAL)  # clients hanging up now is expected
        out.put(("lsp_rss", _peak_rss_mb(), daemon.db.commits - commits))
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())


def _latest_factory_state(db: Any) -> str | None:
    """The state of a client's newest factory that was not aborted (None before any)."""
    row = db.execute(
        "SELECT state FROM factories WHERE role='client' AND state != 'aborted'"
        " ORDER BY created DESC, rowid DESC LIMIT 1"
    ).fetchone()
    return None if row is None else str(row["state"])


def _worker_main(
    root: str,
    url: str,
    cookie: str,
    indexes: list[int],
    lsp_pubkey: str,
    lsp_port: int,
    out: Queue[Any],
    go: Any,
    stop: Any,
    rounds: int,
) -> None:
    from superscalar.crypto.keys import PublicKey
    from superscalar.node.client import ClientConfig, ClientDaemon
    from superscalar.node.common import load_or_create_key

    _quiet_after_stop()

    async def main() -> None:
        chain = _chain(url, cookie)
        pub = PublicKey.from_hex(lsp_pubkey)
        base_rss = _peak_rss_mb()
        base_cpu = _cpu_seconds()
        daemons: list[ClientDaemon] = []
        for i in indexes:
            datadir = Path(root) / f"client{i}"
            key, _ = load_or_create_key(datadir)
            cfg = ClientConfig(datadir, "127.0.0.1", lsp_port, pub, _AMOUNT)
            daemons.append(ClientDaemon(cfg, key, chain))
        tasks = [asyncio.create_task(d.run()) for d in daemons]

        async def until(done: Callable[[], bool]) -> None:
            while not done():
                for t in tasks:
                    if t.done():
                        t.result()
                await asyncio.sleep(0.05)

        def funded() -> bool:
            return all(_latest_factory_state(d.db) == "funded" for d in daemons)

        await until(funded)
        out.put(("funded", len(daemons), time.time(), base_rss, _cpu_seconds() - base_cpu))
        await until(
            lambda: all(d.channel is not None and d.channel.ready.is_set() for d in daemons)
        )
        out.put(("open", len(daemons)))
        await until(go.is_set)
        out.put(("paid", *await _pay_ring(daemons, rounds)))
        logging.disable(logging.CRITICAL)  # measured; the LSP hanging up from now on is expected
        await until(stop.is_set)
        out.put(("worker_rss", len(daemons), _peak_rss_mb(), base_rss))
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    asyncio.run(main())


def _quiet_after_stop() -> None:
    """Warnings show while measuring; at stop each process disables logging (hang-ups)."""
    logging.basicConfig(level=logging.WARNING)


async def _pay_ring(daemons: list[Any], rounds: int) -> tuple[int, int, float, float]:
    """Client k pays client k+1 `rounds` times in a row, all clients at once.

    Returns (settled, failed, first start, last finish). The invoices are made
    before the clock starts; a payment counts only if its preimage checks out.
    """
    from superscalar.node.client import make_invoice

    n = len(daemons)
    if n < 2:
        now = time.time()
        return 0, 0, now, now
    invoices = [
        [
            bytes.fromhex(make_invoice(d.config.datadir, _PAY_MSAT)["payment_hash"])
            for _ in range(rounds)
        ]
        for d in daemons
    ]
    in_flight = asyncio.Semaphore(_IN_FLIGHT_PER_WORKER)

    async def payer(k: int) -> tuple[int, int]:
        payee = daemons[(k + 1) % n]
        ok = failed = 0
        for payment_hash in invoices[(k + 1) % n]:
            try:
                async with in_flight:
                    result = await daemons[k].pay(payee.key.public_key, payment_hash, _PAY_MSAT)
            except (RuntimeError, TimeoutError):
                failed += 1
                continue
            if hashlib.sha256(bytes.fromhex(result["preimage"])).digest() == payment_hash:
                ok += 1
            else:
                failed += 1
        return ok, failed

    start = time.time()
    results = await asyncio.gather(*(payer(k) for k in range(n)))
    end = time.time()
    return sum(r[0] for r in results), sum(r[1] for r in results), start, end


def _get(out: Queue[Any], kind: str, timeout: float) -> tuple[Any, ...]:
    item: tuple[Any, ...] = out.get(timeout=timeout)
    if item[0] != kind:
        raise RuntimeError(f"swarm: expected {kind}, got {item!r}")
    return item


def _swarm(node: RegtestNode, url: str, cookie: str, n: int, workers: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    out: Queue[Any] = ctx.Queue()
    stop = ctx.Event()
    go = ctx.Event()
    timeout = 120 + n * 1.0
    rounds = payments_per_client(n)
    with tempfile.TemporaryDirectory(prefix="superscalar-bench-swarm-") as root:
        lsp = ctx.Process(target=_lsp_main, args=(root, url, cookie, n, out, go, stop))
        lsp.start()
        procs = [lsp]
        try:
            _, pubkey, port = _get(out, "lsp", 60)
            workers = max(1, min(workers, n // 2))  # each worker pays within a ring of >= 2
            shares = [list(range(w, n, workers)) for w in range(workers)]
            start = time.time()
            for share in shares:
                p = ctx.Process(
                    target=_worker_main,
                    args=(root, url, cookie, share, pubkey, port, out, go, stop, rounds),
                )
                p.start()
                procs.append(p)
            ceremony: float | None = None
            lsp_rss_at_funding = 0.0
            funded_at: list[float] = []
            client_cpu = lsp_cpu = 0.0
            opened = 0
            while ceremony is None or opened < workers:
                item = out.get(timeout=timeout)
                if item[0] == "ceremony":
                    ceremony, lsp_rss_at_funding = float(item[1]), float(item[2])
                    lsp_cpu = float(item[3])
                elif item[0] == "funded":
                    funded_at.append(float(item[2]))
                    client_cpu += float(item[4])
                elif item[0] == "open":
                    opened += 1
                else:
                    raise RuntimeError(f"swarm: unexpected {item!r}")
            wall = max(funded_at) - start
            channels_open = time.time() - start
            go.set()
            paid = [_get(out, "paid", timeout) for _ in range(workers)]
            stop.set()
            lsp_rss = lsp_rss_at_funding
            lsp_commits = 0
            per_worker: list[tuple[int, float, float]] = []
            for _ in range(workers + 1):
                item = out.get(timeout=60)
                if item[0] == "lsp_rss":
                    lsp_rss, lsp_commits = float(item[1]), int(item[2])
                elif item[0] == "worker_rss":
                    per_worker.append((int(item[1]), float(item[2]), float(item[3])))
            for p in procs:
                p.join(30)
        finally:
            for p in procs:
                if p.is_alive():
                    p.kill()
                    p.join(5)
    clients = sum(c for c, _, _ in per_worker)
    total = sum(r for _, r, _ in per_worker)
    over_base = sum(r - b for _, r, b in per_worker)
    node.mine(1, P2A_SCRIPT)
    settled = sum(int(p[1]) for p in paid)
    failed = sum(int(p[2]) for p in paid)
    pay_seconds = max(float(p[4]) for p in paid) - min(float(p[3]) for p in paid)
    return {
        "clients": n,
        "worker_processes": workers,
        "lsp_ceremony_seconds": round(ceremony, 3),
        "lsp_cpu_seconds_until_funded": round(lsp_cpu, 2),
        "client_cpu_seconds_each_until_funded": round(client_cpu / n, 3),
        "wall_seconds_until_all_funded": round(wall, 3),
        "lsp_peak_rss_mb": lsp_rss,
        "worker_peak_rss_mb_total": round(total, 1),
        "client_peak_rss_mb_each": round(total / clients, 2) if clients else None,
        "worker_rss_growth_mb_per_client": round(over_base / clients, 2) if clients else None,
        "wall_seconds_until_all_channels_open": round(channels_open, 3),
        "payments_settled": settled,
        "payments_failed": failed,
        "payment_seconds": round(pay_seconds, 3),
        "payments_per_second": round(settled / pay_seconds, 1) if pay_seconds > 0 else None,
        "lsp_sqlite_commits_per_payment": round(lsp_commits / settled, 1) if settled else None,
    }


def run(quick: bool, progress: Progress | None = None, big: bool = False) -> dict[str, Any]:
    """Quick: N = 4, 16; full: 4, 16, 64; `big` adds 256 and 1024 (stops at the first failure).

    Each client checks only its path view (O(log N) txs, O(N) keys), and the
    LSP's step timeout grows with N, so 1024 converges on two cores; a failure
    at any size is recorded in the JSON, not hidden.
    """
    sizes = [4, 16] if quick else [4, 16, 64]
    if big:
        sizes += [256, 1024]
    return run_sizes(sizes, progress)


def run_sizes(
    sizes: list[int], progress: Progress | None = None, max_workers: int = 4
) -> dict[str, Any]:
    """The ceremony at each size in turn; stops at the first size that fails."""
    from superscalar.chain.service import serve_node

    say = progress or (lambda _text: None)
    results: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="superscalar-bench-swarm-chain-") as tmp,
        RegtestNode(Path(tmp) / "node") as node,
    ):
        say("mining blocks")
        prepare_node(node)
        with serve_node(node) as (server, _client):
            url = f"http://127.0.0.1:{server.port}/"
            cookie = str(server.cookie_path)
            for n in sizes:
                say(f"factory ceremony with {n} clients")
                try:
                    results[f"n{n}"] = _swarm(node, url, cookie, n, workers=min(max_workers, n))
                except Exception as exc:  # report, keep the smaller sizes
                    results[f"n{n}"] = {"clients": n, "error": f"{type(exc).__name__}: {exc}"}
                    break
    return {"ceremony": results}
