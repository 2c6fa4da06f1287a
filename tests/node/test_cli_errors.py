"""Clear errors, not tracebacks: bad flags, an unreachable chain, no daemon to talk to."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from superscalar.cli.main import main

KEY = "02" + "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"


@pytest.fixture
def cookie(tmp_path: Path) -> Path:
    path = tmp_path / ".cookie"
    path.write_text("__cookie__:00")
    return path


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_unreachable_chain_is_a_clear_error(tmp_path: Path, cookie: Path) -> None:
    code, out = invoke(
        "lsp", "--datadir", str(tmp_path / "d"), "--port", "0", "--clients", "2",
        "--chain-rpc", "http://127.0.0.1:1/", "--chain-cookie", str(cookie),
    )  # fmt: skip
    assert code == 1 and "unreachable" in out


def test_missing_cookie_is_a_clear_error(tmp_path: Path) -> None:
    code, out = invoke(
        "client", "--datadir", str(tmp_path / "d"), "--lsp", "127.0.0.1:9735",
        "--lsp-pubkey", KEY, "--amount", "100000",
        "--chain-rpc", "http://127.0.0.1:1/", "--chain-cookie", str(tmp_path / "nope"),
    )  # fmt: skip
    assert code == 1 and "not found" in out


@pytest.mark.parametrize(
    ("flag", "value", "needle"),
    [("--lsp", "nohostport", "HOST:PORT"), ("--lsp-pubkey", "zz", "public key")],
)
def test_bad_client_flags(tmp_path: Path, cookie: Path, flag: str, value: str, needle: str) -> None:
    args = {"--lsp": "127.0.0.1:9735", "--lsp-pubkey": KEY, flag: value}
    code, out = invoke(
        "client", "--datadir", str(tmp_path / "d"), "--amount", "100000",
        "--chain-rpc", "http://127.0.0.1:1/", "--chain-cookie", str(cookie),
        *(x for kv in args.items() for x in kv),
    )  # fmt: skip
    assert code == 2 and needle in out


def test_bad_arity_flag(tmp_path: Path, cookie: Path) -> None:
    code, out = invoke(
        "lsp", "--datadir", str(tmp_path / "d"), "--port", "0", "--clients", "2",
        "--arity", "0", "--chain-rpc", "http://127.0.0.1:1/", "--chain-cookie", str(cookie),
    )  # fmt: skip
    assert code == 2 and "arity" in out


@pytest.mark.parametrize("command", ["status", "report", "close"])
def test_operator_commands_without_a_daemon(tmp_path: Path, command: str) -> None:
    code, out = invoke(command, "--datadir", str(tmp_path))
    assert code == 1 and "not reachable" in out


def test_node_key_is_private_and_stable(tmp_path: Path) -> None:
    from superscalar.node.common import load_or_create_key

    key, created = load_or_create_key(tmp_path)
    assert created and (tmp_path / "node_key").stat().st_mode & 0o777 == 0o600
    again, created_again = load_or_create_key(tmp_path)
    assert not created_again and again.public_key == key.public_key
    (tmp_path / "node_key").chmod(0o644)
    with pytest.raises(PermissionError):
        load_or_create_key(tmp_path)
