"""`superscalar watchtower`: a standalone watchtower (own process, datadir, database)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import click
from rich.console import Console

from .lsp import daemon_identity, run_until_signal

err = Console(stderr=True)


@click.command("watchtower")
@click.option("--datadir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", required=True, type=click.IntRange(0, 65535), help="Hint port (BOLT-8).")
@click.option("--chain-rpc", required=True, help="bitcoind JSON-RPC URL.")
@click.option("--chain-cookie", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--from-datadir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Also watch this daemon's channels, read-only from its database (same operator).",
)
@click.option("-v", "--verbose", is_flag=True)
def watchtower_command(
    datadir: Path,
    host: str,
    port: int,
    chain_rpc: str,
    chain_cookie: Path,
    from_datadir: Path | None,
    verbose: bool,
) -> None:
    """Run a watchtower: take encrypted breach hints over BOLT-8, punish breaches on chain.

    Clients point at it with `superscalar client --watchtower <pubkey>@HOST:PORT`.
    """
    from superscalar.node.watchtower import TowerConfig, WatchtowerDaemon

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)
    key, chain = daemon_identity(datadir, chain_rpc, chain_cookie)
    try:
        daemon = WatchtowerDaemon(
            TowerConfig(datadir, host, port, from_datadir=from_datadir), key, chain
        )
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot read {from_datadir}: {exc}") from exc
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_until_signal(daemon.run()))


@click.command("watch")
@click.option("--datadir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
def watch_command(datadir: Path, as_json: bool) -> None:
    """Show what a daemon's (or tower's) watcher has scanned and every breach it answered."""
    import json

    from rich.table import Table

    from .ops import _call

    snap = _call(datadir, "watch")
    if as_json:
        click.echo(json.dumps(snap, indent=2))
        return
    out = Console()
    if not snap.get("enabled"):
        out.print("[yellow]no watcher running (--no-watch): breaches go unanswered[/yellow]")
    else:
        out.print(
            f"scanned to height {snap['scan_height']}: {snap['blocks_scanned']} blocks "
            f"({snap['blocks_per_second']}/s), {snap['entries']} entries, "
            f"{snap['broadcasts']} broadcasts"
            + (f", last error: {snap['last_error']}" if snap["last_error"] else "")
        )
    for tower, t in snap.get("towers", {}).items():
        out.print(f"tower {tower}: {t['hints_sent']} hints sent; error: {t['last_error']}")
    table = Table(title="breaches")
    for column in ("txid", "kind", "height", "resolved", "outcome"):
        table.add_column(column)
    for b in snap["breaches"]:
        outcome = "pending" if b["won"] is None else ("punished" if b["won"] else "LOST")
        table.add_row(
            b["txid"], b["kind"], str(b["height"]), str(b["resolved_height"] or "-"), outcome
        )
    out.print(table)
