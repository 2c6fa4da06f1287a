"""Operator commands talking to a running daemon's control RPC: status, close, report.

`python -m superscalar.cli.ops` runs them (and the daemons) as one group, so
tests and scripts work before the commands are registered on `superscalar`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

out = Console()


def _call(datadir: Path, method: str, *args: Any) -> Any:
    from superscalar.chain.bitcoind import ChainUnavailable
    from superscalar.chain.rpc import RpcError
    from superscalar.node.control import ControlUnavailable, call_control

    try:
        return call_control(datadir, method, *args)
    except (ControlUnavailable, ChainUnavailable) as exc:
        raise click.ClickException(f"daemon not reachable: {exc}") from exc
    except RpcError as exc:
        raise click.ClickException(f"{method} failed: {exc}") from exc


_datadir = click.option(
    "--datadir", required=True, type=click.Path(file_okay=False, path_type=Path)
)


@click.command("status")
@_datadir
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON instead of tables.")
def status_command(datadir: Path, as_json: bool) -> None:
    """Show the daemon's factory, tree nodes, clients and balances."""
    snap = _call(datadir, "status")
    if as_json:
        click.echo(json.dumps(snap, indent=2, default=str))
        return
    out.print(f"[bold]{snap['role']}[/bold] {snap['pubkey']}")
    for f in snap["factories"]:
        t = Table(title=f"factory {f['factory_id'][:16]}…")
        t.add_column("field")
        t.add_column("value")
        for k in (
            "state",
            "lsp_balance_sat",
            "funding_txid",
            "funding_amount",
            "cltv_timeout",
            "signatures",
            "close_txid",
        ):
            t.add_row(k, str(f[k]))
        dist = f.get("distribution")
        if dist is not None:
            payout = "" if dist["payout_sat"] is None else f", your payout {dist['payout_sat']} sat"
            t.add_row(
                "distribution tx",
                f"{dist['state']} {dist['txid'] or ''} locktime {dist['locktime']}{payout}",
            )
        out.print(t)
        if f["state"] == "aborted":
            continue
        c = Table(title="clients")
        for col in ("position", "pubkey", "channel (sat)"):
            c.add_column(col)
        for cl in f["clients"]:
            c.add_row(str(cl["position"]), cl["pubkey"][:20] + "…", str(cl["amount_sat"]))
        out.print(c)
        n = Table(title="tree nodes")
        for col in ("tx", "kind", "txid", "nSequence", "outputs (sat)"):
            n.add_column(col)
        for node in f["nodes"]:
            n.add_row(
                str(node["index"]),
                node["kind"],
                node["txid"][:16] + "…",
                hex(node["sequence"]),
                ", ".join(map(str, node["outputs"])),
            )
        out.print(n)
        if f.get("leaves"):
            lv = Table(title="leaves (DW state / L-stock generation)")
            for col in (
                "leaf",
                "DW state",
                "nSequence",
                "L-stock gen",
                "channels (sat)",
                "L-stock",
            ):
                lv.add_column(col)
            for leaf in f["leaves"]:
                lv.add_row(
                    str(leaf["leaf"] if leaf["leaf"] is not None else "ours"),
                    str(leaf["dw_state"]),
                    str(leaf["sequence"]),
                    str(leaf["lstock_generation"]),
                    ", ".join(map(str, leaf["channels_sat"])),
                    str(leaf["lstock_sat"]),
                )
            out.print(lv)
    ladder = snap.get("ladder") or {}
    if ladder.get("factories"):
        lt = Table(
            title=f"ladder at height {ladder['height']} (active {ladder['active_blocks']}"
            f" + dying {ladder['dying_blocks']} blocks)"
        )
        for col in (
            "factory",
            "state",
            "phase",
            "dying at",
            "expires at",
            "keys handed over",
            "kickoff",
        ):
            lt.add_column(col)
        for lf in ladder["factories"]:
            kick = lf.get("kickoff")
            lt.add_row(
                lf["factory_id"][:16] + "…",
                lf["state"],
                lf["phase"],
                str(lf["dying_at"]),
                str(lf["expires_at"]),
                f"{lf['keys_handed_over']}/{lf['clients']}",
                "" if not kick else f"{kick['state']} (locktime {kick['locktime']})",
            )
        out.print(lt)
        for b in ladder.get("barred") or []:
            out.print(
                f"  barred: client {b['pubkey'][:16]}… from moving out of"
                f" {b['factory_id'][:16]}… at height {b['height']}: {b['code']}"
            )
        for event in ladder.get("events", [])[-5:]:
            out.print(f"  ladder: {event}")
    if snap.get("channels"):
        ch = Table(title="channels (msat)")
        for col in ("position", "status", "ours", "theirs", "htlcs"):
            ch.add_column(col)
        for c in snap["channels"]:
            ch.add_row(
                str(c["position"]),
                str(c.get("status", "opening")),
                str(c.get("local_msat", "")),
                str(c.get("remote_msat", "")),
                str(c.get("htlcs", "")),
            )
        out.print(ch)
    for e in snap.get("exits") or []:
        _print_exit(e)
    forwards = snap.get("forwards") or []
    if forwards:
        counts = snap.get("forward_counts") or {}
        fw = Table(
            title="forwards ("
            + ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
            + "; the last 10)"
        )
        for col in ("from", "to", "amount (msat)", "expiry", "payment hash", "state"):
            fw.add_column(col)
        for f in forwards[-10:]:
            fw.add_row(
                str(f["up_position"]),
                "" if f["down_position"] is None else str(f["down_position"]),
                str(f["amount_msat"]),
                str(f["cltv_expiry"]),
                f["payment_hash"][:16] + "…",
                f["state"],
            )
        out.print(fw)


@click.command("report")
@_datadir
def report_command(datadir: Path) -> None:
    """JSON diagnostics of the daemon (state, peers, factory, timings)."""
    click.echo(json.dumps(_call(datadir, "report"), indent=2, default=str))


@click.command("close")
@_datadir
def close_command(datadir: Path) -> None:
    """LSP: cooperatively close the factory with every client and broadcast the close tx."""
    result = _call(datadir, "close")
    click.echo(result["txid"])


@click.command("invoice")
@_datadir
@click.option("--amount-msat", required=True, type=click.IntRange(1), help="Amount to receive.")
@click.option("--description", default="", help="Free text kept with the invoice.")
def invoice_command(datadir: Path, amount_msat: int, description: str) -> None:
    """Client: create an invoice (payment hash; the preimage stays in the daemon's database)."""
    from superscalar.chain.rpc import RpcError
    from superscalar.node.control import ControlUnavailable, call_control

    try:
        result = call_control(datadir, "invoice", amount_msat, description)
    except ControlUnavailable as exc:
        raise click.ClickException(f"daemon not reachable: {exc}") from exc
    except RpcError as exc:
        raise click.ClickException(f"invoice failed: {exc}") from exc
    click.echo(json.dumps(result, indent=2, default=str))


@click.command("pay")
@_datadir
@click.option(
    "--to-pubkey", "payee", required=True, help="The payee client's node public key (hex)."
)
@click.option("--payment-hash", required=True, help="The payee's invoice payment hash (hex).")
@click.option("--amount-msat", required=True, type=click.IntRange(1), help="Amount to send.")
@click.option(
    "--cltv-expiry",
    type=click.IntRange(1),
    default=None,
    help="The HTLC's expiry height (default: 300 blocks ahead, before the factory's"
    " distribution locktime).",
)
def pay_command(
    datadir: Path, payee: str, payment_hash: str, amount_msat: int, cltv_expiry: int | None
) -> None:
    """Client: pay another client of the same LSP (an HTLC forwarded client → LSP → client)."""
    args: tuple[object, ...] = (payee, payment_hash, amount_msat)
    if cltv_expiry is not None:
        args = (*args, cltv_expiry)
    result = _call(datadir, "pay", *args)
    click.echo(json.dumps(result, indent=2, default=str))


@click.command("liquidity")
@_datadir
@click.option(
    "--amount", "amount_sat", required=True, type=click.IntRange(1), help="Sat of inbound."
)
@click.option(
    "--client",
    "position",
    type=click.IntRange(0),
    default=None,
    help="LSP only: the client position whose channel gets the liquidity.",
)
def liquidity_command(datadir: Path, amount_sat: int, position: int | None) -> None:
    """Move SAT of the leaf's L-stock into a client's channel on the LSP's side (inbound
    capacity for the client): a per-leaf DW advance signed by the LSP and the leaf's
    clients. A client asks for its own channel; the LSP names the client with --client."""
    result = _call(datadir, "liquidity", amount_sat, position)
    click.echo(json.dumps(result, indent=2, default=str))


def _print_exit(e: dict[str, Any]) -> None:
    steps = e["steps"]
    now_at = next((s for s in steps if s["state"] != "confirmed"), None)
    if now_at is None:
        head = "done"
    elif now_at["state"] == "broadcast":
        head = f"step {now_at['index'] + 1}/{len(steps)} ({now_at['kind']}) in the mempool"
    elif now_at["wait_height"] is not None:
        head = (
            f"step {now_at['index'] + 1}/{len(steps)} ({now_at['kind']}) waiting for height"
            f" {now_at['wait_height']}"
        )
    else:
        head = f"step {now_at['index'] + 1}/{len(steps)} ({now_at['kind']}) waiting for its parent"
    t = Table(title=f"unilateral exit from factory {e['factory_id'][:16]}…: {head}")
    for col in ("step", "kind", "txid", "state", "delay", "confirmed at", "last error"):
        t.add_column(col)
    for s in steps:
        t.add_row(
            f"{s['index'] + 1}/{len(steps)}",
            s["kind"],
            s["txid"],
            s["state"],
            str(s["delay"]),
            "" if s["confirmed_height"] is None else str(s["confirmed_height"]),
            s["last_error"] or "",
        )
    out.print(t)


@click.command("exit")
@_datadir
@click.option(
    "--factory",
    "factory_id",
    default=None,
    help="Factory id to exit (default: every factory still holding our money).",
)
def exit_command(datadir: Path, factory_id: str | None) -> None:
    """Client: leave a factory without the LSP (it is gone or misbehaving): put our path,
    our latest commitment and then our to_local sweep on chain, block by block. Returns at
    once; `status` shows the progress."""
    result = _call(datadir, "exit", *(() if factory_id is None else (factory_id,)))
    click.echo(json.dumps(result, indent=2, default=str))


@click.command("force-close")
@_datadir
@click.option(
    "--client",
    "position",
    required=True,
    type=click.IntRange(0),
    help="The client position whose channel goes on chain.",
)
def force_close_command(datadir: Path, position: int) -> None:
    """LSP: close a client's channel on chain without it: its factory path, our latest
    commitment, the HTLC-success txs of HTLCs we hold the preimage of, and the sweeps,
    block by block (the same machinery the LSP uses by itself when a payer sits on a
    fulfilled HTLC near its expiry). Returns at once; `status` shows the progress."""
    result = _call(datadir, "force_close", position)
    click.echo(json.dumps(result, indent=2, default=str))
