"""A channel re-anchored by a leaf advance: its retired anchor's revoked commitments stay watched.

If the superseded leaf state ever confirms (nobody answered it in time), the old
channel's funding output exists on chain and the cheater can broadcast any of
that old channel's revoked commitments. The daemon's `ChannelDetector` must
still find them, with the old anchor's secrets, and punish them.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from superscalar.bitcoin.tx import OutPoint
from superscalar.chain.bitcoind import BitcoindClient
from superscalar.chain.node import RegtestNode
from superscalar.channel import AddHtlc, FulfillHtlc, Funding, LoopbackChannel
from superscalar.channel.scripts import funding_output
from superscalar.channel.state import signed_local_commitment
from superscalar.crypto.keys import SecretKey
from superscalar.node.chancodec import encode_state, encode_value
from superscalar.node.channels import channel_secrets
from superscalar.node.detector import ChannelDetector
from superscalar.node.watcher import ChainWatcher, breach_report
from superscalar.store.db import Database
from superscalar.store.schema import DAEMON_MIGRATIONS
from superscalar.watch.responses import PENALTY_LADDER

from ..chain.chain_support import MINER, fund
from ..channel.support import CLOSE_SCRIPTS, CONFIG, SEEDS, add_committed, payment_hash, preimage

FID = bytes(range(32))
POS = 1
AMOUNT = 1_000_000
CHEATER, US = SecretKey(bytes(31) + b"\x07"), SecretKey(bytes(31) + b"\x09")


def _channel(anchor: int, funding: Funding, height: int) -> LoopbackChannel:
    """The cheater (a) and us (b) on `funding`, with the daemon's secrets of `anchor`."""
    return LoopbackChannel.open(
        funding,
        CONFIG,
        SEEDS,
        (600_000_000, 400_000_000),
        CLOSE_SCRIPTS,
        chain_height=height,
        secrets=(
            channel_secrets(CHEATER, FID, POS, anchor),
            channel_secrets(US, FID, POS, anchor),
        ),
    )


def _store(db: Database, pair: LoopbackChannel, anchor: int | None) -> None:
    """What the daemon keeps: the current channel, or a retired anchor (see `advance`)."""
    ours = pair.b
    with db.transaction() as c:
        if anchor is None:
            c.execute(
                "INSERT INTO channels VALUES (?, ?, ?, 0)",
                (FID.hex(), POS, encode_state(ours.state)),
            )
        else:
            c.execute(
                "INSERT INTO channel_anchors VALUES (?, ?, ?, 'retired', ?)",
                (FID.hex(), POS, anchor, encode_state(ours.state)),
            )
        for number, revoked in ours.revoked.items():
            record = json.dumps(encode_value(revoked))
            if anchor is None:
                c.execute(
                    "INSERT INTO channel_revoked VALUES (?, ?, ?, ?)",
                    (FID.hex(), POS, number, record),
                )
            else:
                c.execute(
                    "INSERT INTO channel_revoked_retired VALUES (?, ?, ?, ?, ?)",
                    (anchor, FID.hex(), POS, number, record),
                )


def test_a_revoked_commitment_of_a_retired_anchor_is_punished(
    tmp_path: Path, node: RegtestNode, rpc: BitcoindClient
) -> None:
    keys = channel_secrets(CHEATER, FID, POS, 0).funding, channel_secrets(US, FID, POS, 0).funding
    script = funding_output(keys[0].public_key, keys[1].public_key).script_pubkey
    outpoint, _ = fund(node, script, AMOUNT)
    old = _channel(0, Funding(outpoint, AMOUNT), node.height)
    expiry = node.height + 30
    to_cheater = add_committed(old, old.b, 25_000_000, 2, expiry)
    _, cheat = signed_local_commitment(old.a.secrets, old.a.state)
    old.apply(old.a, FulfillHtlc(to_cheater, preimage(2)))
    old.apply(old.a, AddHtlc(1_000_000, payment_hash(4), expiry))
    old.settle()
    # the advance: the channel now lives on a new leaf output, numbers restart at 0
    new = _channel(1, Funding(OutPoint(bytes(32), 0), AMOUNT), node.height)
    new.apply(new.a, AddHtlc(2_000_000, payment_hash(5), expiry))
    new.settle()
    db = Database.open(tmp_path / "us.sqlite3", DAEMON_MIGRATIONS)
    _store(db, old, 0)
    _store(db, new, None)
    w = ChainWatcher(db, rpc, name="us", detect=ChannelDetector(db, US))
    w.load(start_height=node.height)

    node.mine_transactions([cheat], MINER)
    asyncio.run(w.catch_up())
    (report,) = breach_report(db)
    assert report["txid"] == cheat.txid_hex and report["won"] is None
    penalty = next(
        e.tx for e in node.mempool if any(i.prevout.txid == cheat.txid for i in e.tx.inputs)
    )
    node.mine(1, MINER)
    asyncio.run(w.catch_up())
    anchor = min(cheat.outputs, key=lambda o: o.value)
    taken = sum(o.value for o in cheat.outputs) - anchor.value
    assert {i.prevout for i in penalty.inputs} == {
        OutPoint(cheat.txid, v) for v, o in enumerate(cheat.outputs) if o is not anchor
    }
    assert penalty.outputs[0].value == taken - PENALTY_LADDER[0].fee_for_vsize(penalty.vsize)
    assert penalty.outputs[0].script_pubkey == CLOSE_SCRIPTS[1]
    (report,) = breach_report(db)
    assert report["won"] is True and report["spender"] == penalty.txid_hex
