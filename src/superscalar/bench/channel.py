"""Channel benchmarks: payments through a hub, and the libsecp256k1 work each one costs.

The hub is the SuperScalar shape: client A → LSP → client B over two leaf
channels, run in-process with `LoopbackChannel` (every message goes through
`step` on the receiving side). A payment is the full BOLT-2 dance on both
channels — add, commitment_signed/revoke_and_ack both ways, forward, fulfill,
and the same again to remove the HTLCs — with every MuSig2 partial signature
and HTLC signature made *and verified*.

`ops_per_payment` counts the libsecp256k1 signing work underneath (BIP340
signs/verifies, MuSig2 nonce generations, partial signs/verifies). Their
summed bare C cost per payment gives the physical limit of this protocol on
this machine; `ratio_to_physical_limit` shows how much our Python (building
transactions, taproot trees, sighashes, key derivation) costs on top.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from superscalar.bitcoin.script import p2tr_script
from superscalar.bitcoin.tx import OutPoint
from superscalar.channel import (
    AddHtlc,
    ChannelConfig,
    FulfillHtlc,
    Funding,
    IncomingHtlcCommitted,
    LoopbackChannel,
    OutgoingHtlcFulfilled,
    Side,
)
from superscalar.channel import state as channel_state
from superscalar.crypto import musig, schnorr
from superscalar.crypto._secp import CTX, ffi, lib
from superscalar.crypto.hashes import sha256
from superscalar.crypto.keys import PublicKey, SecretKey, XOnlyPublicKey

from .timing import seconds_per_call

Progress = Callable[[str], None]

CHANNEL_SAT = 10_000_000
PAYMENT_MSAT = 1_000_000
HEIGHT = 800_000
CONFIG = ChannelConfig(to_self_delay=144, min_cltv_delta=40, max_accepted_htlcs=30)
_SIGNING_OPS = (
    "schnorr_sign",
    "schnorr_verify",
    "musig_nonce_gen",
    "musig_partial_sign",
    "musig_partial_verify",
)
_OPS = (*_SIGNING_OPS, "ec_point_tweak")
"""`ec_point_tweak`: BOLT-3 key derivation and taproot output tweaks (one EC multiply each)."""


def _seed(label: str) -> bytes:
    return hashlib.sha256(b"bench channel " + label.encode()).digest()


def _script(label: str) -> bytes:
    return p2tr_script(SecretKey(_seed("close " + label)).xonly_public_key)


def _channel(name: str, left: str, right: str) -> LoopbackChannel:
    funding = Funding(OutPoint(_seed("funding " + name), 0), CHANNEL_SAT)
    half = CHANNEL_SAT * 1000 // 2
    return LoopbackChannel.open(
        funding,
        CONFIG,
        (_seed(left + name), _seed(right + name)),
        (half, half),
        (_script(left), _script(right)),
        names=(left, right),
        chain_height=HEIGHT,
    )


class Hub:
    """Client A —ch1— LSP —ch2— client B, with the LSP forwarding between its two sides."""

    def __init__(self) -> None:
        self.ch1 = _channel("ch1", "alice", "lsp")
        self.ch2 = _channel("ch2", "lsp", "bob")
        self.count = 0

    @staticmethod
    def _take(side: Side, kind: type[Any]) -> list[Any]:
        found = [e for e in side.notices if isinstance(e, kind)]
        side.notices.clear()
        return found

    def pay(self) -> None:
        self.count += 1
        preimage = hashlib.sha256(b"bench preimage %d" % self.count).digest()
        payment_hash = sha256(preimage)
        ch1, ch2 = self.ch1, self.ch2
        ch1.apply(ch1.a, AddHtlc(PAYMENT_MSAT + 1_000, payment_hash, HEIGHT + 200))
        ch1.settle()
        (incoming,) = self._take(ch1.b, IncomingHtlcCommitted)
        ch2.apply(ch2.a, AddHtlc(PAYMENT_MSAT, payment_hash, HEIGHT + 100))  # the LSP forwards
        ch2.settle()
        (arrived,) = self._take(ch2.b, IncomingHtlcCommitted)
        ch2.apply(ch2.b, FulfillHtlc(arrived.htlc.id, preimage))
        ch2.deliver_all()
        (fulfilled,) = self._take(ch2.a, OutgoingHtlcFulfilled)
        ch1.apply(ch1.b, FulfillHtlc(incoming.htlc.id, fulfilled.preimage))  # upstream at once
        ch2.settle()
        ch1.settle()
        self._take(ch1.a, OutgoingHtlcFulfilled)


@contextmanager
def _counting() -> Iterator[dict[str, int]]:
    """Count the signing operations the channel code asks libsecp256k1 for."""
    counts = dict.fromkeys(_OPS, 0)
    originals: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, name: str, key: str) -> None:
        original = getattr(owner, name)
        originals.append((owner, name, original))

        def counted(*args: Any, **kwargs: Any) -> Any:
            counts[key] += 1
            return original(*args, **kwargs)

        setattr(owner, name, counted)

    wrap(schnorr, "sign", "schnorr_sign")
    wrap(schnorr, "verify", "schnorr_verify")
    wrap(musig, "generate_nonce", "musig_nonce_gen")
    wrap(channel_state, "verification_nonce", "musig_nonce_gen")
    wrap(musig.SigningSession, "sign", "musig_partial_sign")
    wrap(musig.SigningSession, "verify", "musig_partial_verify")
    wrap(PublicKey, "add_scalar", "ec_point_tweak")
    wrap(PublicKey, "multiply", "ec_point_tweak")
    wrap(XOnlyPublicKey, "tweak_add", "ec_point_tweak")
    try:
        yield counts
    finally:
        for owner, name, original in reversed(originals):
            setattr(owner, name, original)


def _time_batch(prepare: Callable[[int], Any], work: Callable[[Any, int], None], n: int) -> float:
    """Seconds per call of `work(state, i)` over `n` calls, with `prepare(n)` untimed."""
    state = prepare(n)
    start = time.perf_counter()
    for i in range(n):
        work(state, i)
    return (time.perf_counter() - start) / n


def _bare_costs(t: float) -> dict[str, float]:
    """Seconds per bare libsecp256k1 call for each counted operation (2-of-2 MuSig2)."""
    keys = [SecretKey.generate() for _ in range(2)]
    keyagg = musig.aggregate_keys([k.public_key for k in keys]).taproot_tweak()
    msg, aux = os.urandom(32), os.urandom(32)
    sig = schnorr.sign(keys[0], msg, aux)
    xonly = keys[0].xonly_public_key
    out64 = ffi.new("unsigned char[64]")
    secnonce = ffi.new("secp256k1_musig_secnonce *")
    pubnonce = ffi.new("secp256k1_musig_pubnonce *")
    nonces = [musig.generate_nonce(k.public_key, secret_key=k) for k in keys]
    session = musig.SigningSession(keyagg, musig.aggregate_nonces([p for _, p in nonces]), msg)
    psig = session.sign(nonces[0][0], keys[0])
    psig_out = ffi.new("secp256k1_musig_partial_sig *")
    seckey = keys[0].to_bytes()
    point = ffi.new("secp256k1_pubkey *", keys[1].public_key.handle[0])
    tweak = os.urandom(32)
    # The raw libsecp256k1 objects, read once so the timed calls are bare C calls.
    keypair, pubkey, cache = keys[0].handle, keys[0].public_key.handle, keyagg.handle
    c_session, c_psig, c_nonce, c_xonly = (
        session.handle,
        psig.handle,
        nonces[0][1].handle,
        xonly.handle,
    )

    def nonce_gen() -> None:
        rand = ffi.new("unsigned char[32]", os.urandom(32))
        lib.secp256k1_musig_nonce_gen(
            CTX, secnonce, pubnonce, rand, seckey, pubkey, ffi.NULL, cache, ffi.NULL,
        )  # fmt: skip

    def fresh_nonces(n: int) -> Any:
        """Signing zeroes a secret nonce, so each timed sign gets its own, made untimed."""
        made = ffi.new("secp256k1_musig_secnonce[]", n)
        for i in range(n):
            rand = ffi.new("unsigned char[32]", os.urandom(32))
            lib.secp256k1_musig_nonce_gen(
                CTX, made + i, pubnonce, rand, seckey, pubkey, ffi.NULL, cache, ffi.NULL,
            )  # fmt: skip
        return made

    def partial_sign(made: Any, i: int) -> None:
        lib.secp256k1_musig_partial_sign(CTX, psig_out, made + i, keypair, cache, c_session)

    return {
        "schnorr_sign": seconds_per_call(
            lambda: lib.secp256k1_schnorrsig_sign32(CTX, out64, msg, keypair, aux), t
        ),
        "schnorr_verify": seconds_per_call(
            lambda: lib.secp256k1_schnorrsig_verify(CTX, sig, msg, 32, c_xonly), t
        ),
        "musig_nonce_gen": seconds_per_call(nonce_gen, t),
        "musig_partial_sign": min(
            _time_batch(fresh_nonces, partial_sign, 2000 if t > 0.1 else 300) for _ in range(3)
        ),
        "musig_partial_verify": seconds_per_call(
            lambda: lib.secp256k1_musig_partial_sig_verify(
                CTX, c_psig, c_nonce, pubkey, cache, c_session
            ),
            t,
        ),
        "ec_point_tweak": seconds_per_call(
            lambda: lib.secp256k1_ec_pubkey_tweak_add(CTX, point, tweak), t
        ),
    }


def run(quick: bool, progress: Progress | None = None) -> dict[str, Any]:
    say = progress or (lambda _text: None)
    payments = 40 if quick else 400
    say("opening the hub's two channels")
    hub = Hub()
    hub.pay()  # warm caches
    say("counting libsecp256k1 operations per payment")
    with _counting() as counts:
        hub.pay()
    ops = dict(counts)
    say(f"{payments} payments client → LSP → client")
    start = time.perf_counter()
    for _ in range(payments):
        hub.pay()
    elapsed = time.perf_counter() - start
    say("timing the bare libsecp256k1 operations")
    bare = _bare_costs(0.05 if quick else 0.3)
    signing_s = sum(ops[name] * bare[name] for name in _SIGNING_OPS)
    all_s = signing_s + ops["ec_point_tweak"] * bare["ec_point_tweak"]
    per_payment = elapsed / payments
    commits = [side.state.local_commit for side in (hub.ch1.a, hub.ch1.b, hub.ch2.a, hub.ch2.b)]
    assert all(c is not None and not c.spec.htlcs for c in commits)
    return {
        "payments": payments,
        "seconds": round(elapsed, 3),
        "payments_per_s": round(payments / elapsed, 1),
        "ms_per_payment": round(per_payment * 1e3, 3),
        "commitments_signed_per_payment": ops["musig_partial_sign"],
        "ops_per_payment": ops,
        "bare_us": {name: round(bare[name] * 1e6, 2) for name in _OPS},
        "physical_limit_payments_per_s": round(1 / signing_s, 1),
        "ratio_to_physical_limit": round(per_payment / signing_s, 2),
        "physical_limit_with_key_tweaks_payments_per_s": round(1 / all_s, 1),
        "ratio_to_physical_limit_with_key_tweaks": round(per_payment / all_s, 2),
    }
