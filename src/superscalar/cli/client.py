"""`superscalar client`: a client daemon that joins an LSP's factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import click
from rich.console import Console

from superscalar.node.misbehave import ClientMisbehaviour

from .lsp import (
    check_misbehave,
    daemon_identity,
    misbehave_option,
    run_until_signal,
    watch_options,
)

err = Console(stderr=True)


@click.command("client")
@click.option("--datadir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--lsp", "lsp_addr", required=True, help="HOST:PORT of the LSP.")
@click.option("--lsp-pubkey", required=True, help="The LSP's node key (33-byte hex).")
@click.option("--amount", required=True, type=click.IntRange(1000), help="Channel size, sat.")
@click.option("--chain-rpc", required=True, help="bitcoind JSON-RPC URL.")
@click.option("--chain-cookie", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--step-timeout",
    type=click.FloatRange(1, 86_400),
    default=None,
    help="Seconds to wait for the LSP's next ceremony step "
    "[default: twice the LSP's default for the factory's size, + 30].",
)
@watch_options
@click.option(
    "--refuse-turnover",
    is_flag=True,
    help="Decline to move to the LSP's next factory (stay on a dying one until it closes).",
)
@click.option(
    "--close-exit-blocks",
    type=click.IntRange(1, 2016),
    default=None,
    help="Blocks a close we signed may stay unconfirmed before we exit alone "
    "[default: 144, 6 on regtest].",
)
@click.option(
    "--min-factory-life",
    type=click.IntRange(0),
    help="Refuse a factory whose CLTV timeout is fewer blocks away [default: 2016; 30 on regtest].",
)
@click.option(
    "--confirm-margin",
    type=click.IntRange(0),
    help="Blocks our exit path's txs get to confirm, on top of its DW delays, before the CLTV "
    "timeout [default: 144; 4 on regtest].",
)
@click.option(
    "--min-dw-step",
    type=click.IntRange(1),
    help="Refuse DW steps shorter than this [default: 6; 1 on regtest].",
)
@click.option(
    "--max-dw-step", type=click.IntRange(1), help="Refuse longer DW steps [default: 144]."
)
@click.option(
    "--max-states-per-layer",
    type=click.IntRange(2),
    help="Refuse more DW states per layer [default: 32].",
)
@click.option("--max-arity", type=click.IntRange(2), help="Refuse wider tree nodes [default: 16].")
@click.option(
    "--max-anchor", type=click.IntRange(0), help="Refuse larger anchors, sat [default: 1000]."
)
@click.option(
    "--max-exit-delay",
    type=click.IntRange(0),
    help="Refuse a tree whose worst-case exit from our leaf takes longer [default: 2016].",
)
@click.option(
    "--advance-done-blocks",
    type=click.IntRange(1),
    default=144,
    show_default=True,
    help="Blocks to wait for the LSP to finish a leaf advance we signed (our channel is "
    "frozen meanwhile) before exiting on chain.",
)
@misbehave_option(ClientMisbehaviour)
@click.option("-v", "--verbose", is_flag=True)
def client_command(
    datadir: Path,
    lsp_addr: str,
    lsp_pubkey: str,
    amount: int,
    chain_rpc: str,
    chain_cookie: Path,
    step_timeout: float | None,
    watch: bool,
    watchtowers: tuple[str, ...],
    dev_tools: bool,
    refuse_turnover: bool,
    close_exit_blocks: int | None,
    min_factory_life: int | None,
    confirm_margin: int | None,
    min_dw_step: int | None,
    max_dw_step: int | None,
    max_states_per_layer: int | None,
    max_arity: int | None,
    max_anchor: int | None,
    max_exit_delay: int | None,
    advance_done_blocks: int,
    misbehave: tuple[str, ...],
    verbose: bool,
) -> None:
    """Run a client: connect to the LSP over BOLT-8, join, verify and sign the factory."""
    from superscalar.crypto.keys import PublicKey
    from superscalar.factory.safety import safety_for
    from superscalar.node.client import ClientConfig, ClientDaemon
    from superscalar.node.misbehave import Misbehaviour

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)
    host, sep, port_text = lsp_addr.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise click.BadParameter("expected HOST:PORT", param_hint="--lsp")
    try:
        lsp_key = PublicKey.from_hex(lsp_pubkey)
    except ValueError as exc:
        raise click.BadParameter(f"not a public key: {exc}", param_hint="--lsp-pubkey") from None
    safety = {
        "min_factory_life": min_factory_life,
        "confirm_margin": confirm_margin,
        "min_dw_step": min_dw_step,
        "max_dw_step": max_dw_step,
        "max_states_per_layer": max_states_per_layer,
        "max_arity": max_arity,
        "max_anchor_value": max_anchor,
        "max_exit_delay": max_exit_delay,
    }
    overrides = tuple((k, v) for k, v in safety.items() if v is not None)
    for network in ("regtest", "mainnet"):  # the bounds must make sense on either defaults
        try:
            safety_for(network, **dict(overrides))
        except ValueError as exc:
            raise click.UsageError(f"client safety bounds: {exc}") from None
    key, chain = daemon_identity(datadir, chain_rpc, chain_cookie)
    check_misbehave(chain, misbehave, dev_tools)
    config = ClientConfig(
        datadir,
        host,
        int(port_text),
        lsp_key,
        amount,
        step_timeout,
        watch=watch,
        dev_tools=dev_tools,
        watchtowers=watchtowers,
        refuse_turnover=refuse_turnover,
        misbehave=Misbehaviour(frozenset(ClientMisbehaviour(m) for m in misbehave)),
        close_exit_blocks=close_exit_blocks,
        safety=overrides,
        advance_done_blocks=advance_done_blocks,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_until_signal(ClientDaemon(config, key, chain).run()))
