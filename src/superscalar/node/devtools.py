"""Regtest-only cheating helpers (`--dev-tools`): how the scenario tests and `demo --breach`
get a revoked commitment onto the chain.

NOT for production: a daemon only serves these when started with `--dev-tools`.
An honest node never keeps a signed copy of a commitment it is about to revoke;
`dev_snapshot` does exactly that (signing the current local commitment with the
peer's stored partial signature, as a force close would), so that after a
payment revokes it the test can broadcast it and watch the victim punish it.
`dev_export` hands out the signed factory path down to a channel and the
snapshots, for `superscalar dev breach` to put on chain.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from superscalar.bitcoin.fees import Feerate
from superscalar.bitcoin.tx import Transaction
from superscalar.chain.bitcoind import BitcoindClient, ChainResponseError
from superscalar.chain.rpc import RpcError
from superscalar.channel.onchain import build_sweep, sweep_to_local
from superscalar.channel.state import signed_local_commitment
from superscalar.crypto.keys import PublicKey, SecretKey
from superscalar.factory import TxKind
from superscalar.wire.codec import decode, decode_record
from superscalar.wire.messages import FactoryPropose

from .chancodec import decode_state
from .channels import channel_anchor, channel_secrets
from .common import FactoryTerms, factory_signing_key, open_db, tree_of, view_of, wallet_cpfp

__all__ = ["broadcast_breach", "dev_handlers", "sweep_after_breach"]

FEERATE = Feerate.from_sat_per_vb(2)


def dev_handlers(datadir: Path, key: SecretKey) -> dict[str, Callable[..., Any]]:
    """`dev_snapshot` and `dev_export`, each on its own connection (RPC thread)."""

    def dev_snapshot() -> list[dict[str, Any]]:
        out = []
        with open_db(datadir) as db:
            rows = db.execute("SELECT factory_id, position, state FROM channels").fetchall()
            for r in rows:
                state = decode_state(r["state"])
                if state.local_commit is None:
                    continue
                fid, pos = str(r["factory_id"]), int(r["position"])
                secrets = channel_secrets(
                    factory_signing_key(db, key, bytes.fromhex(fid)),
                    bytes.fromhex(fid),
                    pos,
                    channel_anchor(db, bytes.fromhex(fid), pos),
                )
                commitment, tx = signed_local_commitment(secrets, state)
                sweep = build_sweep(
                    [sweep_to_local(secrets, commitment)], state.local_close_script, FEERATE
                )
                number = state.local_commit.number
                with db.transaction() as c:
                    c.execute(
                        "INSERT OR REPLACE INTO dev_commitments VALUES (?, ?, ?, ?, ?)",
                        (fid, pos, number, tx.hex(), sweep.hex()),
                    )
                out.append(
                    {"factory_id": fid, "position": pos, "number": number, "txid": tx.txid_hex}
                )
        return out

    def dev_export(position: int) -> dict[str, Any]:
        with open_db(datadir) as db:
            row = db.execute(
                "SELECT * FROM factories WHERE state IN ('funded', 'closing', 'closed')"
                " ORDER BY created DESC LIMIT 1"
            ).fetchone()
            if row is None:
                raise ValueError("no funded factory")
            if row["role"] == "client" and int(row["position"]) != position:
                raise ValueError(f"this client is at position {row['position']}, not {position}")
            fid = str(row["factory_id"])
            lsp_key = key.public_key
            if row["role"] == "client":
                kv = db.execute("SELECT value FROM node_kv WHERE key='lsp_pubkey'").fetchone()
                lsp_key = PublicKey.from_hex(kv["value"])
            if row["role"] == "client":  # a client keeps its PROPOSE: its own path only
                propose = decode(row["propose"])
                assert isinstance(propose, FactoryPropose)
                txs = [(st.tx_index, st.kind, st.tx) for st in view_of(propose, lsp_key).steps]
            else:  # the LSP keeps the terms of the whole tree
                tree = tree_of(decode_record(row["propose"], FactoryTerms), lsp_key)
                txs = [
                    (i, tree.txs[i].kind, tree.txs[i].tx) for i in tree.shape.client_txs(position)
                ]
            sigs = {
                int(s["session_id"]): bytes.fromhex(s["signature"])
                for s in db.execute(
                    "SELECT session_id, signature FROM tree_signatures WHERE factory_id=?", (fid,)
                )
            }
            path = []  # the LSP holds every signature, a client those of its own path
            for i, kind, tx in txs:
                delay = 0 if kind is TxKind.KICKOFF else tx.inputs[0].sequence & 0xFFFF
                path.append({"tx": tx.with_witness(0, (sigs[i],)).hex(), "delay": delay})
            chan = db.execute(
                "SELECT state FROM channels WHERE factory_id=? AND position=?", (fid, position)
            ).fetchone()
            current = None if chan is None else decode_state(chan["state"]).local_commit
            snaps = db.execute(
                "SELECT number, tx, sweep FROM dev_commitments WHERE factory_id=? AND position=?"
                " ORDER BY number",
                (fid, position),
            ).fetchall()
        return {
            "factory_id": fid,
            "path": path,
            "current_number": None if current is None else current.number,
            "commitments": [
                {"number": int(s["number"]), "tx": str(s["tx"]), "sweep": str(s["sweep"])}
                for s in snaps
            ],
        }

    return {"dev_snapshot": dev_snapshot, "dev_export": dev_export}


def _confirmed(chain: BitcoindClient, txid: str) -> bool:
    try:
        return chain.get_raw_transaction_verbose(txid).confirmations > 0
    except (RpcError, ChainResponseError):
        return False


def broadcast_breach(
    chain: BitcoindClient, export: dict[str, Any], number: int | None, miner: str
) -> dict[str, Any]:
    """Put the factory path and a revoked commitment on chain (regtest: mines as it goes).

    Each path tx waits out its relative lock and goes with a CPFP child on its
    anchor; then the revoked commitment `number` (default: the oldest
    snapshot) goes the same way and is mined. Returns what happened.
    """
    feerate = FEERATE
    snaps = {int(c["number"]): Transaction.from_hex(c["tx"]) for c in export["commitments"]}
    current = export["current_number"]
    revoked = sorted(n for n in snaps if current is None or n < current)
    if not revoked:
        raise ValueError("no revoked commitment was snapshotted (dev_snapshot before paying)")
    cheat = snaps[revoked[0] if number is None else number]
    path = []
    for step in export["path"]:
        tx = Transaction.from_hex(step["tx"])
        if not all(_confirmed(chain, i.prevout.txid_hex) for i in tx.inputs):
            chain.generate_to_address(1, miner)  # e.g. the factory funding, not yet mined
        if not _confirmed(chain, tx.txid_hex):
            if step["delay"] > 1:
                chain.generate_to_address(int(step["delay"]) - 1, miner)
            result = chain.submit_package([tx, wallet_cpfp(chain, tx, feerate)])
            if not result.success:
                parents = [
                    (i.prevout.txid_hex, _confirmed(chain, i.prevout.txid_hex)) for i in tx.inputs
                ]
                raise ValueError(
                    f"path tx {tx.txid_hex} (v{tx.version}, parents {parents}, mempool "
                    f"{chain.get_raw_mempool()}) refused: {result}"
                )
            chain.generate_to_address(1, miner)
        path.append(tx.txid_hex)
    result = chain.submit_package([cheat, wallet_cpfp(chain, cheat, feerate)])
    if not result.success:
        raise ValueError(f"revoked commitment refused: {result}")
    chain.generate_to_address(1, miner)
    return {
        "path": path,
        "commitment_txid": cheat.txid_hex,
        "height": chain.get_block_count(),
        "outputs": [o.value for o in cheat.outputs],
    }


def sweep_after_breach(chain: BitcoindClient, export: dict[str, Any], txid: str) -> dict[str, Any]:
    """The cheater takes its to_local of the revoked commitment `txid` once its CSV allows."""
    for c in export["commitments"]:
        if Transaction.from_hex(c["tx"]).txid_hex == txid:
            sweep = Transaction.from_hex(c["sweep"])
            chain.send_raw_transaction(sweep)
            return {"sweep_txid": sweep.txid_hex, "value": sweep.outputs[0].value}
    raise ValueError(f"no snapshot with txid {txid}")


def broadcast_old_state(
    chain: BitcoindClient, export: dict[str, Any], miner: str, pause: float = 0.5
) -> dict[str, Any]:
    """The cheat of a superseded factory state: the path's kickoffs and parents as usual,
    then the OLD leaf state tx (`export` is the LSP's path as first signed), tried once
    per block as its relative lock runs out, `pause` seconds between blocks so the
    victims' watchers get their turn. Reports whether the old state confirmed or was
    beaten to the kickoff output (and by which tx)."""
    steps = [Transaction.from_hex(s["tx"]) for s in export["path"]]
    delays = [int(s["delay"]) for s in export["path"]]
    *parents, old = steps
    path = []
    for tx, delay in zip(parents, delays, strict=False):
        if not all(_confirmed(chain, i.prevout.txid_hex) for i in tx.inputs):
            chain.generate_to_address(1, miner)
        if not _confirmed(chain, tx.txid_hex):
            if delay > 1:
                chain.generate_to_address(delay - 1, miner)
            result = chain.submit_package([tx, wallet_cpfp(chain, tx, FEERATE)])
            if not result.success:
                raise ValueError(f"path tx {tx.txid_hex} refused: {result}")
            chain.generate_to_address(1, miner)
        path.append(tx.txid_hex)
    prevout = old.inputs[0].prevout
    for _ in range(delays[-1] + 1):
        if chain.get_tx_out(prevout.txid_hex, prevout.vout, include_mempool=False) is None:
            return {"path": path, "old_state_txid": old.txid_hex, "confirmed": False,
                    "height": chain.get_block_count()}  # fmt: skip
        result = chain.submit_package([old, wallet_cpfp(chain, old, FEERATE)])
        if result.success:
            chain.generate_to_address(1, miner)
            if _confirmed(chain, old.txid_hex):
                return {"path": path, "old_state_txid": old.txid_hex, "confirmed": True,
                        "height": chain.get_block_count(),
                        "outputs": [o.value for o in old.outputs]}  # fmt: skip
        else:
            chain.generate_to_address(1, miner)
        time.sleep(pause)
    raise ValueError(f"the old leaf state {old.txid_hex} neither confirmed nor was beaten")
