"""`superscalar lsp`: the LSP daemon (factory ceremony, funding, cooperative close)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.console import Console

from superscalar.node.misbehave import LspMisbehaviour

if TYPE_CHECKING:
    from superscalar.chain.bitcoind import BitcoindClient
    from superscalar.crypto.keys import SecretKey

F = TypeVar("F", bound=Callable[..., Any])
err = Console(stderr=True)


def chain_client(url: str, cookie: Path) -> object:
    """A `BitcoindClient` that has answered once: fail early and clearly if the chain is down."""
    from superscalar.chain.bitcoind import BitcoindClient, ChainUnavailable

    if not cookie.exists():
        raise click.ClickException(f"chain cookie {cookie} not found: is the chain running?")
    try:
        chain = BitcoindClient(url, cookie_file=cookie, timeout=60)
        chain.get_block_count()
    except (ChainUnavailable, ValueError) as exc:
        raise click.ClickException(f"chain at {url} unreachable: {exc}") from exc
    return chain


def check_misbehave(chain: BitcoindClient, names: tuple[str, ...], dev_tools: bool) -> None:
    """`--dev-misbehave` only with `--dev-tools` on a regtest chain (see `node.misbehave`)."""
    from superscalar.node.misbehave import Misbehaviour, MisbehaviourRefused

    if not names:
        return
    network = str(chain.get_blockchain_info().get("chain", "?"))
    try:
        Misbehaviour.check_allowed(names, dev_tools, network)
    except MisbehaviourRefused as exc:
        raise click.UsageError(str(exc)) from None


def misbehave_option(switches: type[StrEnum]) -> Callable[[F], F]:
    """The hidden `--dev-misbehave NAME` (repeatable): one attack switch of `node.misbehave`."""
    return click.option(
        "--dev-misbehave",
        "misbehave",
        multiple=True,
        hidden=True,
        type=click.Choice([s.value for s in switches]),
        help="Regtest attack switch for tests (needs --dev-tools).",
    )


def daemon_identity(
    datadir: Path, chain_rpc: str, chain_cookie: Path
) -> tuple[SecretKey, BitcoindClient]:
    """(node key, chain client) for a daemon command: the chain must answer, the key is
    loaded or created in `datadir`; prints the pubkey (stdout, for scripts) and what it did."""
    from superscalar.chain.bitcoind import BitcoindClient
    from superscalar.node.common import load_or_create_key

    chain = chain_client(chain_rpc, chain_cookie)
    assert isinstance(chain, BitcoindClient)
    try:
        key, created = load_or_create_key(datadir)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"pubkey {key.public_key.hex()}")
    err.print(f"{'created' if created else 'loaded'} node key in {datadir}")
    return key, chain


def _check_towers(
    _ctx: click.Context, _param: click.Parameter, towers: tuple[str, ...]
) -> tuple[str, ...]:
    """Refuse a malformed `--watchtower` while parsing, before the daemon touches anything."""
    from superscalar.node.towerclient import TowerAddress

    for tower in towers:
        try:
            TowerAddress.parse(tower)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return towers


def watch_options(command: F) -> F:
    """`--watch/--no-watch`, `--watchtower` and the hidden `--dev-tools`: the same for every
    daemon that owns channels (the LSP and clients)."""
    command = click.option(
        "--dev-tools", is_flag=True, hidden=True, help="Regtest cheating helpers (tests)."
    )(command)
    command = click.option(
        "--watchtower",
        "watchtowers",
        multiple=True,
        callback=_check_towers,
        help="<pubkey>@host:port of a watchtower to send encrypted breach hints to (repeatable).",
    )(command)
    return click.option(
        "--watch/--no-watch", default=True, show_default=True, help="Watch the chain for breaches."
    )(command)


async def run_until_signal(main: Coroutine[Any, Any, None]) -> None:
    """Run a daemon until SIGTERM/SIGINT, then cancel it so it stops its servers cleanly."""
    task = asyncio.ensure_future(main)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def parse_arity(text: str) -> tuple[int, ...]:
    try:
        arity = tuple(int(a) for a in text.split(","))
    except ValueError:
        raise click.BadParameter("comma-separated integers, e.g. 2 or 4,2") from None
    if not arity or any(a < 1 for a in arity):
        raise click.BadParameter("every arity must be ≥ 1")
    return arity


@click.command("lsp")
@click.option("--datadir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", required=True, type=click.IntRange(0, 65535), help="Peer port (BOLT-8).")
@click.option(
    "--chain-rpc", required=True, help="bitcoind JSON-RPC URL, e.g. http://127.0.0.1:18443/"
)
@click.option("--chain-cookie", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--clients", "n_clients", required=True, type=click.IntRange(1, 4096))
@click.option(
    "--arity", default="2", show_default=True, help="Leaf-first arity list, e.g. 2 or 2,4."
)
@click.option("--states-per-layer", default=4, show_default=True, type=click.IntRange(2, 256))
@click.option(
    "--step-blocks",
    type=click.IntRange(1, 1000),
    help="Blocks between DW states [default: 10; 2 on regtest].",
)
@click.option("--lstock-sat", default=50_000, show_default=True, type=click.IntRange(1000))
@click.option(
    "--active-blocks",
    type=click.IntRange(1),
    help="Blocks a factory serves before it starts dying and its clients move to the next "
    "one [default: 4320 (~30 days); 120 on regtest].",
)
@click.option(
    "--dying-blocks",
    type=click.IntRange(1),
    help="Blocks of handover between dying and the factory's CLTV timeout "
    "[default: 720 (~5 days); 60 on regtest].",
)
@click.option(
    "--step-timeout",
    type=click.FloatRange(1, 86_400),
    default=None,
    help="Seconds every client gets per ceremony step [default: 60 + 0.5 per client].",
)
@click.option(
    "--client-credit-sat",
    default=0,
    show_default=True,
    type=click.IntRange(0, 21_000_000 * 100_000_000),
    help="Sat you give each new client on its side of its channel (at most its amount), from "
    "your wallet: a join never sets its own balance.",
)
@click.option(
    "--max-client-sat",
    default=10_000_000,
    show_default=True,
    type=click.IntRange(1000, 21_000_000 * 100_000_000),
    help="Largest amount a join may ask for (its channel is twice that, half your inbound).",
)
@click.option(
    "--max-liquidity-per-client",
    type=click.IntRange(1),
    default=None,
    help="Sat of inbound liquidity one client may request per factory "
    "[default: its share of its leaf's L-stock].",
)
@click.option(
    "--max-advances-per-client",
    type=click.IntRange(1),
    default=None,
    help="Liquidity requests (leaf advances) one client may have per factory "
    "[default: its share of its leaf's DW states].",
)
@watch_options
@misbehave_option(LspMisbehaviour)
@click.option("-v", "--verbose", is_flag=True)
def lsp_command(
    datadir: Path,
    host: str,
    port: int,
    chain_rpc: str,
    chain_cookie: Path,
    n_clients: int,
    arity: str,
    states_per_layer: int,
    step_blocks: int | None,
    lstock_sat: int,
    step_timeout: float | None,
    client_credit_sat: int,
    max_client_sat: int,
    max_liquidity_per_client: int | None,
    max_advances_per_client: int | None,
    watch: bool,
    watchtowers: tuple[str, ...],
    dev_tools: bool,
    active_blocks: int | None,
    dying_blocks: int | None,
    misbehave: tuple[str, ...],
    verbose: bool,
) -> None:
    """Run the LSP: wait for CLIENTS joins, build and sign the factory with them, fund it."""
    from superscalar.node.lsp import LspConfig, LspDaemon
    from superscalar.node.misbehave import Misbehaviour

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)
    arities = parse_arity(arity)
    key, chain = daemon_identity(datadir, chain_rpc, chain_cookie)
    check_misbehave(chain, misbehave, dev_tools)
    config = LspConfig(
        datadir,
        host,
        port,
        n_clients,
        arities,
        states_per_layer,
        step_blocks,
        lstock_sat,
        step_timeout=step_timeout,
        client_credit_sat=client_credit_sat,
        max_client_sat=max_client_sat,
        watch=watch,
        dev_tools=dev_tools,
        watchtowers=watchtowers,
        active_blocks=active_blocks,
        dying_blocks=dying_blocks,
        misbehave=Misbehaviour(frozenset(LspMisbehaviour(m) for m in misbehave)),
        max_liquidity_per_client=max_liquidity_per_client,
        max_advances_per_client=max_advances_per_client,
    )
    daemon = LspDaemon(config, key, chain)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_until_signal(daemon.run()))
