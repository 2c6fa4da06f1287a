"""Factory benchmarks: build, full in-process signing, bundle sizes, client views, exit costs.

For each N every participant is simulated in this process: each holds only its
own key and sessions, every bundle is encoded and decoded as on the wire, and
the coordinator verifies every partial signature — so "sign" is the whole
creation ceremony's CPU cost, not a best case. Target (issue 4): N=1024 fully
signed in under a minute on two cores.

The exit-cost table needs no signatures (every tree input's witness is one
64-byte BIP340 signature), so it is computed from shapes alone and covers
several arities. The baseline is standard Lightning, where each client's
channel is opened by its own funding transaction.
"""

from __future__ import annotations

import hashlib
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from superscalar.bitcoin.script import P2A_SCRIPT, p2tr_script
from superscalar.bitcoin.tx import OutPoint, Transaction, TxIn, TxOut
from superscalar.crypto.keys import SecretKey
from superscalar.factory import (
    ClientExpectation,
    ClientSpec,
    DWParams,
    FactoryParams,
    FactoryScripts,
    FactorySpec,
    FactoryState,
    FactoryTree,
    LStockSecrets,
    Shape,
    ShapeError,
    SigningPlan,
    build_shape,
    extract_view,
    run_ceremony,
    verify_view,
)
from superscalar.factory.shape import tree_tx_vsize

Progress = Callable[[str], None]

CHANNEL_SAT = 200_000
LSTOCK_PER_CLIENT_SAT = 100_000
DW = DWParams(states_per_layer=4, step_blocks=10)
"""The C implementation's defaults (K=4, step 10)."""
ARITIES: tuple[tuple[int, ...], ...] = ((1,), (2,), (2, 4), (2, 4, 8))
_DUMMY_TXID = hashlib.sha256(b"superscalar bench funding").digest()


def _keys(n: int) -> list[SecretKey]:
    """Deterministic participants (0 = LSP), so runs are reproducible."""
    return [SecretKey(hashlib.sha256(b"bench-%d" % i).digest()) for i in range(n + 1)]


def _spec(keys: list[SecretKey], arity: tuple[int, ...]) -> FactorySpec:
    n = len(keys) - 1
    params = FactoryParams(cltv_timeout=800_000, arity=arity, dw=DW)
    clients = tuple(ClientSpec(k.public_key, CHANNEL_SAT) for k in keys[1:])
    funding = n * (CHANNEL_SAT + LSTOCK_PER_CLIENT_SAT) + 8 * n * params.fees.anchor_value
    return FactorySpec(keys[0].public_key, clients, OutPoint(_DUMMY_TXID, 0), funding, params)


def _one_in_two_out_vsize() -> int:
    """A P2TR key-path spend paying two P2TR outputs: a funding tx with change."""
    script = p2tr_script(bytes(32))
    tx = Transaction(2, (TxIn(OutPoint(bytes(32), 0)),), (TxOut(1, script), TxOut(1, script)))
    return tx.with_witness(0, (bytes(64),)).vsize


def _cpfp_child_vsize() -> int:
    """A CPFP child: the P2A anchor plus one P2TR wallet input, one P2TR change output."""
    tx = Transaction(
        3,
        (TxIn(OutPoint(bytes(32), 0)), TxIn(OutPoint(bytes(32), 1))),
        (TxOut(1, p2tr_script(bytes(32))),),
    )
    return tx.with_witnesses([(), (bytes(64),)]).vsize


def _exit_costs(shape: Shape, child_vsize: int) -> dict[str, Any]:
    """Txs, vbytes and delay to exit the client with the deepest leaf (worst case)."""
    nodes = shape.nodes
    worst_leaf = max(range(len(shape.leaves)), key=lambda i: shape.leaf_node(i).depth)
    path = shape.path(shape.leaves[worst_leaf])
    vbytes = 0
    for n in path:
        node = nodes[n]
        vbytes += tree_tx_vsize(1)
        vbytes += tree_tx_vsize(len(node.children) if node.children else node.n_clients + 1)
    txs = 2 * len(path)
    all_vbytes = sum(
        tree_tx_vsize(1)
        + tree_tx_vsize(len(node.children) if node.children else node.n_clients + 1)
        for node in nodes
    )
    return {
        "dw_layers": len(path),
        "exit_txs": txs,
        "exit_vbytes": vbytes,
        "exit_vbytes_with_cpfp": vbytes + txs * child_vsize,
        "worst_case_delay_blocks": shape.exit_delay(worst_leaf),
        "all_exit_txs": 2 * len(nodes),
        "all_exit_vbytes": all_vbytes,
    }


def _exit_table(sizes: tuple[int, ...], say: Progress) -> dict[str, Any]:
    child = _cpfp_child_vsize()
    funding = _one_in_two_out_vsize()
    rows = []
    for n in sizes:
        keys = _keys(n)
        for arity in ARITIES:
            say(f"exit costs N={n} arity={arity}")
            try:
                shape = build_shape(_spec(keys, arity))
            except ShapeError as exc:
                rows.append({"n": n, "arity": list(arity), "refused": str(exc)})
                continue
            row = {"n": n, "arity": list(arity), **_exit_costs(shape, child)}
            row["onboard_vbytes_per_client"] = round(funding / n, 2)
            row["baseline_onboard_vbytes_per_client"] = funding
            rows.append(row)
    return {
        "dw": {"states_per_layer": DW.states_per_layer, "step_blocks": DW.step_blocks},
        "cpfp_child_vbytes": child,
        "baseline": {
            "what": "standard Lightning: one funding tx per client, no tree to exit through",
            "onboard_txs_per_client": 1,
            "onboard_vbytes_per_client": funding,
            "exit_txs": 0,
            "exit_vbytes": 0,
            "worst_case_delay_blocks": 0,
        },
        "rows": rows,
    }


def _factory(n: int, sign: bool, say: Progress) -> dict[str, Any]:
    keys = _keys(n)
    secrets = LStockSecrets(hashlib.sha256(b"bench lstock").digest())
    say(f"N={n}: build")
    start = time.perf_counter()
    shape = build_shape(_spec(keys, (2,)))
    scripts = FactoryScripts.build(shape)
    points = [secrets.point(leaf, 0) for leaf in range(len(shape.leaves))]
    tree = FactoryTree.build(shape, FactoryState.initial(shape, points), scripts)
    build_s = time.perf_counter() - start
    plan = SigningPlan.for_tree(tree)
    entries = sum(len(plan.sessions_for(p)) for p in plan.participants)
    out: dict[str, Any] = {
        "n": n,
        "arity": [2],
        "nodes": len(shape.nodes),
        "txs": len(tree.txs),
        "depth": shape.max_depth,
        "build_s": round(build_s, 3),
        "sessions": len(plan),
        "partial_signatures": entries,
        "dense_partial_signatures": (n + 1) * len(plan),
    }

    say(f"N={n}: client view")
    view = extract_view(tree, 0)
    expect = ClientExpectation(keys[1].public_key, CHANNEL_SAT, keys[0].public_key, shape.params)
    start = time.perf_counter()
    verified = verify_view(view, expect)
    verify_s = time.perf_counter() - start
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    held = verify_view(view, expect)
    python_bytes = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del held
    out["client_view"] = {
        "verify_s": round(verify_s, 4),
        "python_bytes": python_bytes,
        "propose_bytes": len(view.to_bytes()),
        "kept_bytes": verified.kept_bytes(signatures=len(verified.sessions)),
        "path_txs": len(view.steps),
    }
    if not sign:
        return out

    def stage(what: str, done: int, total: int) -> None:
        say(f"N={n}: {what} {done}/{total}")

    start = time.perf_counter()
    result = run_ceremony(plan, dict(enumerate(keys)), progress=stage)
    out["sign_s"] = round(time.perf_counter() - start, 3)
    out["sign_breakdown_s"] = {k: round(v, 3) for k, v in result.seconds.items()}
    out["bundle_bytes_total"] = result.bytes_sent
    out["bundle_bytes_max_client"] = result.max_client_bytes
    if len(result.signatures) != len(tree.txs):  # pragma: no cover
        raise AssertionError("ceremony did not sign every tx")
    return out


def run(quick: bool = False, progress: Progress | None = None, big: bool = False) -> dict[str, Any]:
    """Factory suite; `big` adds N=10,000, fully signed in-process (takes minutes)."""
    say = progress or (lambda _text: None)
    sizes: tuple[int, ...] = (4, 16, 64) if quick else (4, 16, 64, 256, 1024)
    factories = [_factory(n, True, say) for n in sizes]
    exit_sizes = sizes
    if big:
        factories.append(_factory(10_000, True, say))
        exit_sizes = (*sizes, 10_000)
    signed = [f for f in factories if "sign_s" in f]
    largest = max(signed, key=lambda f: f["n"])
    return {
        "anchor": {"script": P2A_SCRIPT.hex(), "value_sat": 240},
        "factories": factories,
        "exit_costs": _exit_table(exit_sizes, say),
        "client_view_fields": {
            "propose_bytes": "PROPOSE message: path txs, node ranges, all participant keys",
            "kept_bytes": "what the client stores: path txs, ranges, L-stock point, signatures",
            "python_bytes": "live objects verification adds (sessions, aggregates, outputs)",
        },
        "target": {"n": 1024, "sign_s_max": 60.0},
        "largest_signed": {"n": largest["n"], "sign_s": largest["sign_s"]},
    }
