"""BOLT-3 Appendix D shachain vectors, plus the store's ordering rules."""

from __future__ import annotations

from typing import Any

import pytest

from superscalar.crypto.errors import ShachainError
from superscalar.crypto.shachain import (
    MAX_INDEX,
    ShachainSeed,
    ShachainStore,
    commitment_index,
)
from tests.conftest import load_json

V = load_json("bolt03/bolt03_shachain_vectors.json")


@pytest.mark.parametrize("case", V["generation"], ids=lambda c: c["name"])
def test_generate_from_seed_matches_bolt3(case: dict[str, Any]) -> None:
    seed = ShachainSeed(bytes.fromhex(case["seed"]))
    assert seed.secret(case["index"]).hex() == case["output"]


@pytest.mark.parametrize("case", V["storage"], ids=lambda c: c["name"])
def test_insert_secret_accepts_and_rejects_like_bolt3(case: dict[str, Any]) -> None:
    store = ShachainStore()
    outcomes = []
    for step in case["steps"]:
        try:
            store.insert(step["index"], bytes.fromhex(step["secret"]))
            outcomes.append("OK")
        except ShachainError:
            outcomes.append("ERROR")
    assert outcomes == [step["output"] for step in case["steps"]]


def test_rejected_secret_leaves_the_store_unchanged() -> None:
    steps = V["storage"][1]["steps"]
    bad = next(i for i, step in enumerate(steps) if step["output"] == "ERROR")
    store = ShachainStore()
    for step in steps[:bad]:
        store.insert(step["index"], bytes.fromhex(step["secret"]))
    before = (dict(store.known), store.next_index)
    with pytest.raises(ShachainError):
        store.insert(steps[bad]["index"], bytes.fromhex(steps[bad]["secret"]))
    assert (store.known, store.next_index) == before


def test_store_keeps_log_n_entries_and_derives_every_secret() -> None:
    seed = ShachainSeed(bytes(range(32)))
    store = ShachainStore()
    for n in range(1025):
        store.insert(commitment_index(n), seed.commitment_secret(n))
    assert len(store) <= 11
    for n in range(1025):
        assert store.lookup(commitment_index(n)) == seed.commitment_secret(n)


def test_store_refuses_secrets_out_of_order() -> None:
    seed = ShachainSeed(bytes(32))
    store = ShachainStore()
    with pytest.raises(ShachainError, match="expected secret"):
        store.insert(MAX_INDEX - 1, seed.secret(MAX_INDEX - 1))


def test_lookup_of_a_secret_not_yet_received_fails() -> None:
    seed = ShachainSeed(bytes(32))
    store = ShachainStore()
    store.insert(MAX_INDEX, seed.secret(MAX_INDEX))
    with pytest.raises(ShachainError, match="no secret"):
        store.lookup(MAX_INDEX - 1)


def test_seed_never_prints_its_secret() -> None:
    seed = ShachainSeed(b"\xab" * 32)
    assert "ab" not in repr(seed)


@pytest.mark.parametrize("bad", [-1, 1 << 48, "7"])
def test_index_out_of_range_is_a_shachain_error(bad: Any) -> None:
    with pytest.raises(ShachainError):
        ShachainSeed(bytes(32)).secret(bad)
