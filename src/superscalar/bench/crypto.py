"""Crypto benchmarks: our typed wrapper against the bare libsecp256k1 calls under it.

Each "bare" figure calls the same libsecp256k1 functions on pre-parsed C objects
with no Python wrapper, so `overhead` (wrapper time / bare time) shows how much
the glue costs on the hot path. Target: overhead <= 2.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from superscalar.crypto import adaptor, musig, schnorr
from superscalar.crypto._secp import CTX, ffi, lib
from superscalar.crypto.keys import SecretKey
from superscalar.crypto.shachain import ShachainSeed, ShachainStore, commitment_index

from .timing import per_second, seconds_per_call

Progress = Callable[[str], None]


def _pair(wrapper: float, bare: float) -> dict[str, float]:
    """Both timings (seconds per operation) and their ratio."""
    return {
        "wrapper_us": round(wrapper * 1e6, 2),
        "bare_us": round(bare * 1e6, 2),
        "overhead": round(wrapper / bare, 3),
    }


def _schnorr(t: float) -> dict[str, Any]:
    key = SecretKey.generate()
    msg, aux = os.urandom(32), os.urandom(32)
    sig = schnorr.sign(key, msg, aux)
    xonly = key.xonly_public_key
    out = ffi.new("unsigned char[64]")
    keypair, c_xonly = key.handle, xonly.handle

    def bare_sign() -> None:
        lib.secp256k1_schnorrsig_sign32(CTX, out, msg, keypair, aux)

    def bare_verify() -> None:
        lib.secp256k1_schnorrsig_verify(CTX, sig, msg, 32, c_xonly)

    sign_w = seconds_per_call(lambda: schnorr.sign(key, msg, aux), t)
    verify_w = seconds_per_call(lambda: schnorr.verify(xonly, msg, sig), t)
    return {
        "sign_per_s": round(1 / sign_w),
        "verify_per_s": round(1 / verify_w),
        "sign": _pair(sign_w, seconds_per_call(bare_sign, t)),
        "verify": _pair(verify_w, seconds_per_call(bare_verify, t)),
    }


def _key_agg(n: int, t: float) -> dict[str, Any]:
    keys = [SecretKey.generate().public_key for _ in range(n)]
    ptrs = ffi.new("secp256k1_pubkey *[]", [k.handle for k in keys])
    cache = ffi.new("secp256k1_musig_keyagg_cache *")
    full = ffi.new("secp256k1_pubkey *")
    out, size = ffi.new("unsigned char[33]"), ffi.new("size_t *", 33)

    def bare() -> None:
        # What aggregate_keys calls: aggregate, read the full point, serialize it.
        lib.secp256k1_musig_pubkey_agg(CTX, ffi.NULL, cache, ptrs, n)
        lib.secp256k1_musig_pubkey_get(CTX, full, cache)
        lib.secp256k1_ec_pubkey_serialize(CTX, out, size, full, 0x102)

    wrapper = seconds_per_call(lambda: musig.aggregate_keys(keys), t)
    bare_t = seconds_per_call(bare, t)
    return {"keys": n, **_pair(wrapper, bare_t)}


def _session_wrapper(keys: list[SecretKey], keyagg: musig.KeyAggContext, msg: bytes) -> bytes:
    nonces = [musig.generate_nonce(k.public_key, secret_key=k, keyagg=keyagg) for k in keys]
    pubnonces = [p for _, p in nonces]
    session = musig.SigningSession(keyagg, musig.aggregate_nonces(pubnonces), msg)
    psigs = [session.sign(sec, k) for (sec, _), k in zip(nonces, keys, strict=True)]
    sig = session.aggregate_verified(psigs, pubnonces)
    assert schnorr.verify(keyagg.xonly, msg, sig)
    return sig


def _session_bare(keys: list[SecretKey], keyagg: musig.KeyAggContext, msg: bytes) -> None:
    """The same n-of-n session as raw libsecp256k1 calls, results checked as in the wrapper."""
    n, cache = len(keys), keyagg.handle
    secnonces = ffi.new("secp256k1_musig_secnonce[]", n)
    pubnonces = ffi.new("secp256k1_musig_pubnonce[]", n)
    for i, key in enumerate(keys):
        rand = ffi.new("unsigned char[32]", os.urandom(32))
        ok = lib.secp256k1_musig_nonce_gen(
            CTX, secnonces + i, pubnonces + i, rand, key.to_bytes(), key.public_key.handle,
            ffi.NULL, cache, ffi.NULL,
        )  # fmt: skip
        assert ok
    aggnonce = ffi.new("secp256k1_musig_aggnonce *")
    lib.secp256k1_musig_nonce_agg(CTX, aggnonce, [pubnonces + i for i in range(n)], n)
    session = ffi.new("secp256k1_musig_session *")
    lib.secp256k1_musig_nonce_process(CTX, session, aggnonce, msg, cache)
    psigs = ffi.new("secp256k1_musig_partial_sig[]", n)
    for i, key in enumerate(keys):
        lib.secp256k1_musig_partial_sign(CTX, psigs + i, secnonces + i, key.handle, cache, session)
    for i, key in enumerate(keys):
        ok = lib.secp256k1_musig_partial_sig_verify(
            CTX, psigs + i, pubnonces + i, key.public_key.handle, cache, session
        )
        assert ok
    sig = ffi.new("unsigned char[64]")
    lib.secp256k1_musig_partial_sig_agg(CTX, sig, session, [psigs + i for i in range(n)], n)
    assert lib.secp256k1_schnorrsig_verify(CTX, sig, msg, 32, keyagg.xonly.handle)


def _session(n: int, t: float) -> dict[str, Any]:
    keys = [SecretKey.generate() for _ in range(n)]
    keyagg = musig.aggregate_keys([k.public_key for k in keys]).taproot_tweak()
    msg = os.urandom(32)
    wrapper = seconds_per_call(lambda: _session_wrapper(keys, keyagg, msg), t)
    bare = seconds_per_call(lambda: _session_bare(keys, keyagg, msg), t)
    return {"signers": n, "sessions_per_s": round(1 / wrapper, 2), **_pair(wrapper, bare)}


def _adaptor(t: float) -> dict[str, Any]:
    key, secret = SecretKey.generate(), SecretKey.generate()
    point, msg = secret.public_key, os.urandom(32)
    presig = adaptor.presign(key, msg, point)
    sig = adaptor.adapt(presig, secret)
    return {
        "presign_per_s": round(per_second(lambda: adaptor.presign(key, msg, point), t)),
        "verify_presig_per_s": round(
            per_second(
                lambda: adaptor.verify_presignature(key.xonly_public_key, msg, point, presig), t
            )
        ),
        "extract_per_s": round(per_second(lambda: adaptor.extract(presig, sig, point), t)),
    }


def _shachain(count: int) -> dict[str, Any]:
    import time

    seed = ShachainSeed(os.urandom(32))
    secrets = [seed.commitment_secret(n) for n in range(count)]
    store = ShachainStore()
    start = time.perf_counter()
    for n, secret in enumerate(secrets):
        store.insert(commitment_index(n), secret)
    elapsed = time.perf_counter() - start
    return {"inserts": count, "inserts_per_s": round(count / elapsed), "entries_kept": len(store)}


def run(quick: bool = False, progress: Progress | None = None) -> dict[str, Any]:
    t = 0.05 if quick else 0.4
    say = progress or (lambda _: None)
    say("BIP340 sign/verify")
    result: dict[str, Any] = {"bip340": _schnorr(t)}
    result["musig2_key_agg"] = []
    for n in (2, 16, 128, 1024):
        say(f"MuSig2 key aggregation, {n} keys")
        result["musig2_key_agg"].append(_key_agg(n, t))
    result["musig2_session"] = []
    for n in (2, 16, 128):
        say(f"MuSig2 full session, {n} signers")
        result["musig2_session"].append(_session(n, t))
    say("adaptor signatures")
    result["adaptor"] = _adaptor(t)
    say("shachain")
    result["shachain"] = _shachain(1000 if quick else 10000)
    ratios = [result["bip340"]["sign"]["overhead"], result["bip340"]["verify"]["overhead"]]
    ratios += [r["overhead"] for r in result["musig2_key_agg"] + result["musig2_session"]]
    result["max_overhead"] = max(ratios)
    result["overhead_target"] = 2.0
    return result
