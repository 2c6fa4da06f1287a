"""`superscalar demo`: the most complete flow that exists, shown step by step.

Until the networked daemons exist (issue: daemons), this runs in one process:
an LSP and four clients build the factory's root key, sign with MuSig2, hand
over a key through a PTLC adaptor signature, and revoke old states with a
shachain — all real libsecp256k1 signatures, verified as they are made.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from superscalar.bitcoin.fees import Feerate
from superscalar.chain.node import RegtestNode
from superscalar.crypto import adaptor, musig, schnorr
from superscalar.crypto.keys import SecretKey
from superscalar.crypto.shachain import ShachainSeed, ShachainStore, commitment_index
from superscalar.factory import (
    ClientSpec,
    DWParams,
    FactoryParams,
    FactorySpec,
    FactoryState,
    FactoryTree,
    LStockSecrets,
    build_shape,
    cpfp_child,
    sign_tree,
    unilateral_exit,
)
from superscalar.factory.outputs import timeout_output

CLIENTS = ("alice", "bob", "carol", "dave")


def _short(hexstr: str) -> str:
    return f"{hexstr[:16]}…"


def run_demo(
    console: Console,
    workdir: Path | None = None,
    network: bool = True,
    breach: bool = False,
    rotation: bool = False,
    advance: bool = False,
) -> int:
    console.print(
        Panel(
            "[bold]SuperScalar demo[/bold]\n"
            "Part 1, networked: `superscalar chain`, an LSP and 4 clients as separate processes "
            "build and fund a factory over BOLT-8, open leaf channels, pay alice → LSP → bob "
            "with a real preimage, and close on the channel balances (with --breach: the LSP "
            "broadcasts a revoked commitment instead and bob's watcher sweeps the channel).\n"
            "With --rotation, the daemons then walk the ladder: factory 0 dies, clients move "
            "to factory 1 and hand over their keys (PTLC turnover), the LSP closes factory 0 "
            "alone.\n"
            "Part 2, in-process (not yet over the wire: unilateral exit): "
            "real BIP340/MuSig2/adaptor signatures, shachain revocation, and a "
            "factory exit confirmed on the embedded libbitcoinkernel chain.",
            expand=False,
        )
    )
    networked = True
    if network:
        from superscalar.cli.netdemo import run_network_demo

        work = workdir or Path(tempfile.mkdtemp(prefix="superscalar-demo-"))
        networked = run_network_demo(
            console, work, breach=breach, rotation=rotation, advance=advance
        )
    console.print("[bold]In-process[/bold]")
    lsp = SecretKey.generate()
    clients = {name: SecretKey.generate() for name in CLIENTS}

    keys = Table(title="Participants")
    keys.add_column("who")
    keys.add_column("public key")
    keys.add_row("LSP", lsp.public_key.hex())
    for name, key in clients.items():
        keys.add_row(name, key.public_key.hex())
    console.print(keys)

    # 1. The factory root: a 5-of-5 MuSig2 key, taproot-tweaked.
    signers = [lsp, *clients.values()]
    keyagg = musig.aggregate_keys(musig.sort_keys([k.public_key for k in signers]))
    root = keyagg.taproot_tweak(None)
    msg = os.urandom(32)
    by_key = {k.public_key: k for k in signers}
    ordered = [by_key[pk] for pk in root.pubkeys]
    nonces = [
        musig.generate_nonce(k.public_key, secret_key=k, keyagg=root, msg=msg) for k in ordered
    ]
    pubnonces = [p for _, p in nonces]
    session = musig.SigningSession(root, musig.aggregate_nonces(pubnonces), msg)
    psigs = [session.sign(sec, k) for (sec, _), k in zip(nonces, ordered, strict=True)]
    sig = session.aggregate_verified(psigs, pubnonces)
    ok = schnorr.verify(root.xonly, msg, sig)
    console.print(
        f"[bold]1. Factory root key[/bold] (MuSig2 of LSP + 4 clients, taproot-tweaked): "
        f"{root.xonly.hex()}\n   5 partial signatures verified, aggregate BIP340 signature "
        f"{_short(sig.hex())} verifies: [{'green' if ok else 'red'}]{ok}[/]"
    )

    # 2. PTLC key turnover: the client's completed signature reveals its factory key.
    alice_factory_key = SecretKey.generate()
    turnover_msg = os.urandom(32)
    presig = adaptor.presign(lsp, turnover_msg, alice_factory_key.public_key)
    presig_ok = adaptor.verify_presignature(
        lsp.xonly_public_key, turnover_msg, alice_factory_key.public_key, presig
    )
    completed = adaptor.adapt(presig, alice_factory_key)
    revealed = adaptor.extract(presig, completed, alice_factory_key.public_key)
    turned = revealed == alice_factory_key
    console.print(
        "[bold]2. PTLC key turnover[/bold]: LSP pre-signs locked to alice's factory key "
        f"(pre-signature verifies: {presig_ok}); alice completes it "
        f"(valid BIP340: {schnorr.verify(lsp.xonly_public_key, turnover_msg, completed)}); "
        f"the LSP extracts alice's key from it: [{'green' if turned else 'red'}]{turned}[/]"
    )

    # 3. Revocation: the LSP reveals per-commitment secrets, alice stores them compactly.
    seed = ShachainSeed(os.urandom(32))
    store = ShachainStore()
    states = 100
    for n in range(states):
        store.insert(commitment_index(n), seed.commitment_secret(n))
    derivable = all(
        store.lookup(commitment_index(n)) == seed.commitment_secret(n) for n in range(states)
    )
    console.print(
        f"[bold]3. Revocation[/bold]: {states} superseded states revoked; alice keeps "
        f"{len(store)} secrets and can derive all {states}: "
        f"[{'green' if derivable else 'red'}]{derivable}[/]"
    )
    mined = _on_chain(console, lsp, clients)
    success = networked and ok and presig_ok and turned and derivable and mined
    console.print("[green]demo complete[/green]" if success else "[red]demo FAILED[/red]")
    return 0 if success else 1


def _on_chain(console: Console, lsp: SecretKey, clients: dict[str, SecretKey]) -> bool:
    """Open a 4-client factory on a fresh kernel chain, sign it, and exit alice unilaterally."""
    keys = [lsp, *clients.values()]
    with (
        tempfile.TemporaryDirectory(prefix="superscalar-demo-") as tmp,
        RegtestNode(Path(tmp) / "chain") as node,
    ):
        miner = node.wallet.new_script()
        node.mine(101, miner)
        params = FactoryParams(cltv_timeout=node.height + 500, arity=(2,), dw=DWParams(4, 10))
        channel = 1_000_000
        funding = len(clients) * (channel + 500_000) + 8 * len(clients) * 240
        specs = tuple(ClientSpec(k.public_key, channel) for k in clients.values())
        script = timeout_output(
            [k.public_key for k in keys], lsp.xonly_public_key, params.cltv_timeout
        ).script_pubkey
        funding_tx = node.send_to(script, funding)
        node.mine(1, miner)
        vout = next(i for i, o in enumerate(funding_tx.outputs) if o.script_pubkey == script)
        shape = build_shape(
            FactorySpec(lsp.public_key, specs, funding_tx.outpoint(vout), funding, params)
        )
        lstock = LStockSecrets(os.urandom(32))
        state = FactoryState.initial(
            shape, [lstock.point(leaf, 0) for leaf in range(len(shape.leaves))]
        )
        tree = FactoryTree.build(shape, state)
        signed = sign_tree(tree, dict(enumerate(keys)))
        table = Table(title=f"Factory tree on chain (funding {funding_tx.txid_hex[:16]}…)")
        for column in ("tx", "nSequence", "outputs (sat)"):
            table.add_column(column)
        for ttx in tree.txs:
            table.add_row(
                f"{ttx.kind.value} (node {ttx.node})",
                f"{ttx.sequence:#x}",
                " + ".join(str(o.value) for o in ttx.tx.outputs),
            )
        console.print(table)
        path = unilateral_exit(signed, 0)
        heights = []
        for step in path.steps:
            if step.relative_delay:
                node.mine(step.relative_delay - 1, miner)
            coin = max(node.spendable(min_conf=1), key=lambda c: c.output.value)
            child = cpfp_child(
                step.tx, coin.outpoint, coin.output, node.wallet.new_script(), Feerate(2000)
            )
            child = node.wallet.sign(child, [step.tx.outputs[-1], coin.output])
            if not node.submit_package([step.tx, child]).ok:
                return False
            node.mine(1, miner)
            status = node.transaction(step.tx.txid)
            heights.append(status.height if status else None)
        exited = node.utxo(path.channel_outpoint) is not None and None not in heights
        console.print(
            f"[bold]4. Factory on chain[/bold] (embedded regtest, every block validated by "
            f"libbitcoinkernel): LSP + 4 clients in one {funding:,} sat UTXO; "
            f"{len(tree.txs)} zero-fee tree txs signed with sparse MuSig2 sessions. alice exits "
            f"alone: {len(path.steps)} txs, each CPFP'd through its P2A anchor, confirmed at "
            f"heights {heights}; her channel output {path.channel_outpoint} is on chain: "
            f"[{'green' if exited else 'red'}]{exited}[/]"
        )
        return exited
