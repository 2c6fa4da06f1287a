"""The `superscalar` command as a user runs it: a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def superscalar(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "superscalar", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_help_lists_the_commands() -> None:
    out = superscalar("--help")
    assert out.returncode == 0
    for command in ("bench", "demo", "chain", "chain-cli", "watchtower"):
        assert command in out.stdout


def test_demo_runs_to_completion() -> None:
    out = superscalar("demo")
    assert out.returncode == 0, out.stdout + out.stderr
    text = " ".join(out.stdout.replace("│", " ").split())  # undo rich's wrapping
    assert "demo complete" in text
    assert "Factory built over BOLT-8 by 5 processes" in text
    assert "alice paid bob 25,000,000 msat through the LSP" in text
    assert "every client paid exactly: True" in text
    assert "not yet over the wire" in text  # says plainly what is still in-process


@pytest.mark.slow
def test_demo_breach_shows_the_watcher_sweeping_the_cheaters_revoked_commitment() -> None:
    out = superscalar("demo", "--breach", "--in-process")
    assert out.returncode != 0 and "--breach needs the networked demo" in out.stderr
    out = superscalar("demo", "--breach")
    assert out.returncode == 0, out.stdout + out.stderr
    text = " ".join(out.stdout.replace("│", " ").split())
    assert "REVOKED commitment with bob on chain" in text
    assert "bob gets" in text and "the LSP gets nothing" in text
    assert "(breach block → penalty in mempool:" in text
    assert text.count(": True") >= 1 and ": False" not in text


def test_bench_crypto_prints_json_with_the_overhead_ratio() -> None:
    out = superscalar("bench", "crypto", "--quick")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)["crypto"]
    assert result["bip340"]["sign_per_s"] > 0
    assert [r["keys"] for r in result["musig2_key_agg"]] == [2, 16, 128, 1024]
    assert [r["signers"] for r in result["musig2_session"]] == [2, 16, 128]
    assert all(r["bare_us"] > 0 for r in result["musig2_session"])


def test_unknown_bench_suite_is_a_clear_error() -> None:
    out = superscalar("bench", "nonsense")
    assert out.returncode == 2
    assert "Invalid value" in out.stderr


def test_bench_chain_measures_blocks_transactions_and_rpc() -> None:
    out = superscalar("bench", "chain", "--quick")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)["chain"]
    assert result["blocks"]["blocks_per_s"] > 0
    assert result["transactions"]["transactions"] == 200
    assert result["transactions"]["mempool_accept_per_s"] > 0
    assert result["rpc"]["getblockcount_round_trips_per_s"] > 0


def test_bench_factory_signs_every_size_and_reports_exit_costs() -> None:
    out = superscalar("bench", "factory", "--quick")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)["factory"]
    assert [f["n"] for f in result["factories"]] == [4, 16, 64]
    assert all(f["sign_s"] > 0 for f in result["factories"])
    assert result["exit_costs"]["rows"]


def test_bench_wire_measures_bolt8_handshakes() -> None:
    out = superscalar("bench", "wire", "--quick")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["wire"]["handshakes_per_s"] > 0


def test_bench_watch_catches_up_and_answers_the_breach() -> None:
    out = superscalar("bench", "watch", "--quick")
    assert out.returncode == 0, out.stderr
    watch = json.loads(out.stdout)["watch"]
    assert watch["catch_up"]["blocks"] == 100 and watch["catch_up"]["blocks_per_s"] > 0
    assert watch["response_in_mempool"] is True


def test_bench_channel_counts_payments_and_their_curve_operations() -> None:
    out = superscalar("bench", "channel", "--quick")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)["channel"]
    assert result["payments_per_s"] > 0


@pytest.mark.slow
def test_demo_advance_shows_bob_buying_inbound_liquidity_before_the_payment() -> None:
    out = superscalar("demo", "--advance", "--in-process")
    assert out.returncode != 0 and "--advance needs the networked demo" in out.stderr
    out = superscalar("demo", "--advance")
    assert out.returncode == 0, out.stdout + out.stderr
    text = " ".join(out.stdout.replace("│", " ").split())
    assert "bob buys 30,000 sat of inbound: leaf" in text
    assert "the old L-stock secret revealed: True" in text
    assert "every client paid exactly: True" in text
