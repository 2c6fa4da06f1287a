"""`superscalar dev`: regtest-only tools for the breach scenarios (the daemon needs `--dev-tools`).

`dev snapshot` keeps a signed copy of every current local commitment of the
daemon (which an honest node never does); after a payment revokes them,
`dev breach` puts the factory path and one of them on chain, so the victim's
watcher can be seen punishing it. `dev old-state` (after a leaf advance) puts the
superseded factory state on chain: the victims' watchers answer with the newer
leaf state, or burn the old L-stock if the old state got through.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from .ops import _call, _datadir


@click.group("dev", hidden=True)
def dev_group() -> None:
    """Regtest-only cheating tools (the daemon must run with --dev-tools)."""


@dev_group.command("snapshot")
@_datadir
def snapshot_command(datadir: Path) -> None:
    """Keep a signed copy of each channel's current local commitment."""
    click.echo(json.dumps(_call(datadir, "dev_snapshot"), indent=2))


@dev_group.command("breach")
@_datadir
@click.option("--position", required=True, type=click.IntRange(0), help="The victim's position.")
@click.option("--number", type=click.IntRange(0), help="Which snapshot (default: the oldest).")
@click.option("--chain-rpc", required=True)
@click.option("--chain-cookie", required=True, type=click.Path(dir_okay=False, path_type=Path))
def breach_command(
    datadir: Path, position: int, number: int | None, chain_rpc: str, chain_cookie: Path
) -> None:
    """Broadcast the factory path and a REVOKED commitment (mining on regtest); JSON out."""
    from superscalar.chain.bitcoind import BitcoindClient, ChainResponseError, ChainUnavailable
    from superscalar.chain.rpc import RpcError
    from superscalar.node.devtools import broadcast_breach

    export = _call(datadir, "dev_export", position)
    chain = BitcoindClient(chain_rpc, cookie_file=chain_cookie)
    try:
        done = broadcast_breach(chain, export, number, chain.get_new_address())
    except (ValueError, RpcError, ChainResponseError, ChainUnavailable) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        chain.close()
    click.echo(json.dumps(done, indent=2))


@dev_group.command("sweep")
@_datadir
@click.option("--position", required=True, type=click.IntRange(0))
@click.option("--txid", required=True, help="The revoked commitment on chain.")
@click.option("--chain-rpc", required=True)
@click.option("--chain-cookie", required=True, type=click.Path(dir_okay=False, path_type=Path))
def sweep_command(
    datadir: Path, position: int, txid: str, chain_rpc: str, chain_cookie: Path
) -> None:
    """The cheater's to_local sweep of a revoked commitment (valid after its CSV delay)."""
    from superscalar.chain.bitcoind import BitcoindClient, ChainResponseError, ChainUnavailable
    from superscalar.chain.rpc import RpcError
    from superscalar.node.devtools import sweep_after_breach

    export = _call(datadir, "dev_export", position)
    chain = BitcoindClient(chain_rpc, cookie_file=chain_cookie)
    try:
        done = sweep_after_breach(chain, export, txid)
    except (ValueError, RpcError, ChainResponseError, ChainUnavailable) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        chain.close()
    click.echo(json.dumps(done, indent=2))


@dev_group.command("old-state")
@_datadir
@click.option("--position", required=True, type=click.IntRange(0), help="A client of the leaf.")
@click.option("--pause", default=0.5, show_default=True, help="Seconds between mined blocks.")
@click.option("--chain-rpc", required=True)
@click.option("--chain-cookie", required=True, type=click.Path(dir_okay=False, path_type=Path))
def old_state_command(
    datadir: Path, position: int, pause: float, chain_rpc: str, chain_cookie: Path
) -> None:
    """LSP: broadcast the SUPERSEDED factory path (kickoffs, then the leaf state as first
    signed, once its CSV allows), mining on regtest; JSON says whether it confirmed."""
    from superscalar.chain.bitcoind import BitcoindClient, ChainResponseError, ChainUnavailable
    from superscalar.chain.rpc import RpcError
    from superscalar.node.devtools import broadcast_old_state

    export = _call(datadir, "dev_export", position)
    chain = BitcoindClient(chain_rpc, cookie_file=chain_cookie)
    try:
        done = broadcast_old_state(chain, export, chain.get_new_address(), pause)
    except (ValueError, RpcError, ChainResponseError, ChainUnavailable) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        chain.close()
    click.echo(json.dumps(done, indent=2))
