"""`superscalar`: one command, a subcommand per daemon or tool."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from superscalar import __version__
from superscalar.cli.chain import chain_cli_command, chain_command
from superscalar.cli.client import client_command
from superscalar.cli.dev import dev_group
from superscalar.cli.lsp import lsp_command
from superscalar.cli.ops import (
    close_command,
    exit_command,
    force_close_command,
    invoice_command,
    liquidity_command,
    pay_command,
    report_command,
    status_command,
)
from superscalar.cli.watchtower import watch_command, watchtower_command

err = Console(stderr=True)

SUITES = ("crypto", "chain", "factory", "channel", "wire", "watch", "swarm")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="superscalar")
def main() -> None:
    """SuperScalar: laddered timeout-tree channel factories for Lightning."""


@main.command()
@click.argument("suite", type=click.Choice([*SUITES, "all"]), default="all")
@click.option("--quick", is_flag=True, help="Shorter timing runs (noisier numbers).")
@click.option(
    "--big",
    is_flag=True,
    help="Add the largest sizes (factory: N=10,000 in-process; swarm: 256, 1024).",
)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Also write JSON here."
)
def bench(suite: str, quick: bool, big: bool, output: Path | None) -> None:
    """Run benchmark SUITE and print its results as JSON on stdout."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from superscalar.bench import chain, channel, crypto, factory, swarm, watch, wire

    runners: dict[str, Any] = {
        "crypto": crypto.run,
        "chain": chain.run,
        "factory": lambda quick, progress: factory.run(quick, progress, big=big),
        "channel": channel.run,
        "wire": wire.run,
        "watch": watch.run,
        "swarm": lambda quick, progress: swarm.run(quick, progress, big=big),
    }
    chosen = list(SUITES) if suite == "all" else [suite]
    results: dict[str, Any] = {"version": __version__, "quick": quick, "big": big}
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err
    ) as progress:
        for name in chosen:
            task = progress.add_task(f"{name}: starting", total=None)

            def say(text: str, task: Any = task, name: str = name) -> None:
                progress.update(task, description=f"{name}: {text}")

            results[name] = runners[name](quick=quick, progress=say)
            progress.update(task, description=f"{name}: done")
    text = json.dumps(results, indent=2)
    click.echo(text)
    if output is not None:
        output.write_text(text + "\n")


main.add_command(chain_command)
main.add_command(chain_cli_command)
for _command in (
    lsp_command,
    client_command,
    status_command,
    report_command,
    close_command,
    exit_command,
    invoice_command,
    pay_command,
    liquidity_command,
    exit_command,
    force_close_command,
    dev_group,
    watchtower_command,
    watch_command,
):
    main.add_command(_command)


@main.command()
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the demo's processes keep logs and databases (default: a new temp dir).",
)
@click.option("--in-process", is_flag=True, help="Skip the networked part (no processes).")
@click.option(
    "--breach",
    is_flag=True,
    help="After the payment the LSP broadcasts a revoked commitment; bob's watcher punishes it.",
)
@click.option(
    "--rotation",
    is_flag=True,
    help="Then walk the ladder: factory 0 dies, balances move to factory 1, PTLC key "
    "turnover, the LSP closes factory 0 alone, factory 1 serves and closes.",
)
@click.option(
    "--advance",
    is_flag=True,
    help="Before paying, bob buys inbound liquidity: a per-leaf DW advance moves L-stock "
    "into his channel.",
)
def demo(
    workdir: Path | None, in_process: bool, breach: bool, rotation: bool, advance: bool
) -> None:
    """Run the end-to-end demo and print what happened."""
    from superscalar.cli.demo import run_demo

    if breach and in_process:
        raise click.UsageError("--breach needs the networked demo (drop --in-process)")
    if advance and in_process:
        raise click.UsageError("--advance needs the networked demo (drop --in-process)")
    if breach and rotation:
        raise click.UsageError("--breach and --rotation are separate demos: pick one")
    console = Console()
    code = run_demo(
        console,
        workdir,
        network=not in_process,
        breach=breach,
        rotation=rotation,
        advance=advance,
    )
    if rotation:
        from superscalar.cli.rotation import run_rotation_demo

        code = max(code, run_rotation_demo(console, workdir / "rotation" if workdir else None))
    sys.exit(code)
