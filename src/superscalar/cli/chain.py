"""`superscalar chain` (the embedded regtest node) and `superscalar chain-cli` (its bitcoin-cli)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

DEFAULT_DATADIR = Path.home() / ".superscalar" / "chain"
DEFAULT_RPCPORT = 18443  # bitcoind's regtest RPC port

err = Console(stderr=True)


def _datadir_option(fn: Any) -> Any:
    return click.option(
        "--datadir",
        type=click.Path(file_okay=False, path_type=Path),
        default=DEFAULT_DATADIR,
        show_default=True,
        envvar="SUPERSCALAR_CHAIN_DATADIR",
        help="Where the kernel chainstate, indexes, wallet and RPC cookie live.",
    )(fn)


def _port_option(fn: Any) -> Any:
    return click.option(
        "--rpcport", type=click.IntRange(0, 65535), default=DEFAULT_RPCPORT, show_default=True
    )(fn)


@click.command("chain")
@_datadir_option
@_port_option
@click.option("--rpcbind", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--rpcuser", default=None, help="Also accept this user (with --rpcpassword).")
@click.option("--rpcpassword", default=None, envvar="SUPERSCALAR_RPCPASSWORD")
@click.option(
    "--mine-every",
    type=click.FloatRange(min=0),
    default=0,
    help="Mine a block every N seconds (0: only on generatetoaddress).",
)
def chain_command(
    datadir: Path,
    rpcport: int,
    rpcbind: str,
    rpcuser: str | None,
    rpcpassword: str | None,
    mine_every: float,
) -> None:
    """Run the embedded regtest node (libbitcoinkernel) and serve bitcoind's JSON-RPC."""
    from superscalar.chain.kernel import BlockRejectedError
    from superscalar.chain.node import RegtestNode
    from superscalar.chain.rpc import RpcServer
    from superscalar.chain.service import NodeService

    if rpcuser and not rpcpassword:
        raise click.UsageError("--rpcuser needs --rpcpassword")
    stop = threading.Event()
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("indexing blocks", total=None)

        def step(height: int, tip: int) -> None:
            progress.update(task, completed=height, total=tip)

        try:
            node = RegtestNode(datadir, progress=step)
        except RuntimeError as exc:
            raise click.ClickException(str(exc)) from exc
    with node:
        service = NodeService(node, on_stop=stop.set)
        server = RpcServer(
            service.handlers(),
            host=rpcbind,
            port=rpcport,
            cookie_dir=datadir,
            rpcuser=rpcuser,
            rpcpassword=rpcpassword,
        )
        try:
            server.start()
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {rpcbind}:{rpcport}: {exc}") from exc
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        table = Table(title="superscalar chain (regtest, validated by libbitcoinkernel)")
        table.add_column("what")
        table.add_column("value")
        table.add_row("datadir", str(datadir))
        table.add_row("height", str(node.height))
        table.add_row("mempool", f"{len(node.mempool)} txs")
        table.add_row("rpc", f"http://{rpcbind}:{server.port}/")
        table.add_row("cookie", str(server.cookie_path))
        err.print(table)
        mine_to = node.wallet.new_script() if mine_every else b""
        try:
            while not stop.wait(mine_every or 3600):
                if mine_every:
                    try:
                        node.mine(1, mine_to)
                    except BlockRejectedError as exc:
                        err.print(f"[red]kernel rejected a block: {exc}[/red]")
        finally:
            server.stop()
            err.print(f"stopped at height {node.height}")


def _parse_param(text: str) -> Any:
    """bitcoin-cli style: JSON when it parses (numbers, arrays, true), else a string."""
    from superscalar.chain.amounts import decode_json

    try:
        return decode_json(text)
    except ValueError:
        return text


@click.command("chain-cli", context_settings={"ignore_unknown_options": True})
@_datadir_option
@_port_option
@click.option("--rpcconnect", default="127.0.0.1", show_default=True)
@click.option("--rpcuser", default=None)
@click.option("--rpcpassword", default=None, envvar="SUPERSCALAR_RPCPASSWORD")
@click.argument("method")
@click.argument("params", nargs=-1)
def chain_cli_command(
    datadir: Path,
    rpcport: int,
    rpcconnect: str,
    rpcuser: str | None,
    rpcpassword: str | None,
    method: str,
    params: tuple[str, ...],
) -> None:
    """Call METHOD on `superscalar chain` (or any bitcoind), like bitcoin-cli."""
    from superscalar.chain.amounts import encode_json
    from superscalar.chain.bitcoind import BitcoindClient, ChainUnavailable
    from superscalar.chain.rpc import RpcError

    auth: dict[str, Any] = (
        {"user": rpcuser or "", "password": rpcpassword}
        if rpcpassword
        else {"cookie_file": datadir / ".cookie"}
    )
    client = BitcoindClient(f"http://{rpcconnect}:{rpcport}/", **auth)
    try:
        result = client.call(method, *(_parse_param(p) for p in params))
    except RpcError as exc:
        err.print(f"error code: {exc.code}\nerror message:\n{exc.message}")
        raise SystemExit(1) from None
    except ChainUnavailable as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        client.close()
    if isinstance(result, str):
        click.echo(result)
    elif result is not None:
        click.echo(_pretty(result, encode_json))


def _pretty(value: Any, encode: Any, depth: int = 0) -> str:
    """Indented JSON that keeps amounts as exact bare numbers (`50.00000000`)."""
    pad, inner = "  " * depth, "  " * (depth + 1)
    if isinstance(value, dict) and value:
        items = [f"{inner}{encode(k)}: {_pretty(v, encode, depth + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list) and value:
        items = [inner + _pretty(v, encode, depth + 1) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return str(encode(value))
