"""Helpers for channel tests: a loopback channel with known seeds, payments, CPFP children."""

from __future__ import annotations

import hashlib

from superscalar.bitcoin.script import p2tr_script
from superscalar.bitcoin.tx import OutPoint
from superscalar.channel import (
    AddHtlc,
    ChannelConfig,
    ChannelSecrets,
    FulfillHtlc,
    Funding,
    IncomingHtlcCommitted,
    LoopbackChannel,
    Side,
)
from superscalar.channel.scripts import funding_output
from superscalar.crypto.hashes import sha256
from superscalar.crypto.keys import SecretKey

SEEDS = (hashlib.sha256(b"alice").digest(), hashlib.sha256(b"bob").digest())
CLOSE_SCRIPTS = (
    p2tr_script(SecretKey.from_int(0xA11CE).xonly_public_key),
    p2tr_script(SecretKey.from_int(0xB0B).xonly_public_key),
)
FUNDING = Funding(OutPoint(hashlib.sha256(b"funding").digest(), 1), 1_000_000)
HEIGHT = 1000
CONFIG = ChannelConfig(to_self_delay=6, min_cltv_delta=10, max_accepted_htlcs=10)


def preimage(n: int) -> bytes:
    return hashlib.sha256(b"preimage %d" % n).digest()


def payment_hash(n: int) -> bytes:
    return sha256(preimage(n))


def make_pair(
    *,
    config: ChannelConfig = CONFIG,
    balances: tuple[int, int] = (600_000_000, 400_000_000),
    funding: Funding = FUNDING,
    height: int = HEIGHT,
) -> LoopbackChannel:
    return LoopbackChannel.open(
        funding, config, SEEDS, balances, CLOSE_SCRIPTS, names=("alice", "bob"), chain_height=height
    )


def funding_script() -> bytes:
    a, b = (ChannelSecrets.from_seed(s).funding.public_key for s in SEEDS)
    return funding_output(a, b).script_pubkey


def add_committed(pair: LoopbackChannel, sender: Side, amount_msat: int, n: int, cltv: int) -> int:
    """Offer an HTLC from `sender` and commit it both ways; returns its id."""
    pair.apply(sender, AddHtlc(amount_msat, payment_hash(n), cltv))
    pair.settle()
    receiver = pair.other(sender)
    committed = [e for e in receiver.notices if isinstance(e, IncomingHtlcCommitted)]
    return committed[-1].htlc.id


def pay(pair: LoopbackChannel, sender: Side, amount_msat: int, n: int, cltv: int) -> None:
    htlc_id = add_committed(pair, sender, amount_msat, n, cltv)
    pair.apply(pair.other(sender), FulfillHtlc(htlc_id, preimage(n)))
    pair.settle()
