"""`--watchtower PUBKEY@HOST:PORT`: parsed strictly, refused clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from superscalar.crypto.keys import SecretKey
from superscalar.node.towerclient import TowerAddress

from .support import run_node

KEY = SecretKey.from_int(7).public_key.hex()


def test_a_tower_address_parses_and_prints_back() -> None:
    addr = TowerAddress.parse(f"{KEY}@tower.example:9911")
    assert (addr.host, addr.port, addr.pubkey.hex()) == ("tower.example", 9911, KEY)
    assert str(addr) == f"{KEY}@tower.example:9911"


@pytest.mark.parametrize(
    "text",
    [f"{KEY}tower:1", f"{KEY}@tower", f"{KEY}@:1", f"{KEY}@tower:0", f"{KEY}@t:99999", "ab@t:1"],
)
def test_a_malformed_tower_address_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        TowerAddress.parse(text)


@given(st.text(max_size=120))
def test_any_text_parses_or_raises_value_error(text: str) -> None:
    try:
        addr = TowerAddress.parse(text)
    except ValueError:
        return
    assert TowerAddress.parse(str(addr)) == addr


def test_the_client_command_refuses_a_bad_watchtower_before_anything_else(tmp_path: Path) -> None:
    r = run_node(
        "client", "--datadir", str(tmp_path), "--lsp", "127.0.0.1:1", "--lsp-pubkey", KEY,
        "--amount", "10000", "--chain-rpc", "http://127.0.0.1:1/", "--chain-cookie", "/nonexistent",
        "--watchtower", "not-a-tower",
    )  # fmt: skip
    assert r.returncode != 0
    assert "--watchtower" in r.stderr and "expected <pubkey>@host:port" in r.stderr


def test_the_lsp_command_refuses_a_bad_watchtower_too(tmp_path: Path) -> None:
    r = run_node(
        "lsp", "--datadir", str(tmp_path), "--port", "0", "--clients", "2",
        "--chain-rpc", "http://127.0.0.1:1/", "--chain-cookie", "/nonexistent",
        "--watchtower", f"{KEY}@host",
    )  # fmt: skip
    assert r.returncode != 0
    assert "--watchtower" in r.stderr and "expected <pubkey>@host:port" in r.stderr
