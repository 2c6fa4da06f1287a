"""BOLT-8 Appendix A, run straight from the spec's text (tests/data/bolt08/).

The parser reads the appendix as written: each case is a `name:` followed by
key/value lines (`rs.pub: 0x…`, `ls.priv=…`) and ordered `input:`/`output:`
steps, where an output is bytes, `ERROR (ACT2_BAD_VERSION 1)`, or the final
`sk,rk=` / `rk,sk=` keys. Every case must be found and run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest

from superscalar.crypto.keys import PublicKey, SecretKey
from superscalar.wire.errors import HandshakeError
from superscalar.wire.noise import Initiator, Responder, SessionKeys, Transport
from tests.conftest import DATA

TEXT = (DATA / "bolt08" / "bolt08_appendix_a.txt").read_text()
_LINE = re.compile(r"^(?P<key>[a-z][a-z.]*(?: \d+)?)(?::\s*|=)(?P<value>\S.*)$")


@dataclass
class Case:
    name: str
    params: dict[str, str] = field(default_factory=dict)
    steps: list[tuple[str, str]] = field(default_factory=list)


def _parse_section(title: str) -> list[Case]:
    start = TEXT.index(f"## {title}")
    end = TEXT.find("\n## ", start + 1)
    cases: list[Case] = []
    for raw in TEXT[start : end if end != -1 else len(TEXT)].splitlines():
        line = raw.strip()
        if line.startswith("name:"):
            cases.append(Case(line.split(":", 1)[1].strip()))
            continue
        m = _LINE.match(line)
        if not cases or m is None:
            continue
        key, value = m["key"], m["value"].strip()
        if key in ("input", "output") or key.startswith("output "):
            cases[-1].steps.append((key, value))
        else:
            cases[-1].params[key] = value
    return cases


def _hex(value: str) -> bytes:
    return bytes.fromhex(value.removeprefix("0x"))


def _key(value: str) -> SecretKey:
    return SecretKey(_hex(value))


def _expected_error(value: str) -> tuple[str, int | None] | None:
    m = re.fullmatch(r"ERROR \((\w+)(?: (\d+))?\)", value)
    if m is None:
        return None
    return m[1], (int(m[2]) if m[2] else None)


def _check_error(exc: HandshakeError | None, value: str) -> None:
    expected = _expected_error(value)
    assert expected is not None
    code, version = expected
    assert exc is not None, f"expected {value}, handshake went on"
    assert exc.code == code
    if version is not None:
        assert getattr(exc, "version", None) == version


def _check_keys(keys: SessionKeys | None, value: str, order: str) -> None:
    names, _, values = value.partition("=")
    assert names == order
    first, second = (_hex(v) for v in values.split(","))
    assert keys is not None
    if order == "sk,rk":
        assert (keys.sk, keys.rk) == (first, second)
    else:
        assert (keys.rk, keys.sk) == (first, second)


INITIATOR = _parse_section("Initiator Tests")
RESPONDER = _parse_section("Responder Tests")
MESSAGE = _parse_section("Message Encryption Tests")


def test_every_appendix_case_is_parsed() -> None:
    assert len(INITIATOR) == 5
    assert len(RESPONDER) == 10
    assert [c.name for c in MESSAGE] == ["transport-message test"]
    assert sum(1 for k, _ in MESSAGE[0].steps if k.startswith("output ")) == 6


@pytest.mark.parametrize("case", INITIATOR, ids=lambda c: c.name)
def test_initiator(case: Case) -> None:
    p = case.params
    ls, e = _key(p["ls.priv"]), _key(p["e.priv"])
    assert ls.public_key.data == _hex(p["ls.pub"])
    assert e.public_key.data == _hex(p["e.pub"])
    hs = Initiator(ls, PublicKey(_hex(p["rs.pub"])), ephemeral=e)
    produced = [hs.act_one()]
    error: HandshakeError | None = None
    keys: SessionKeys | None = None
    for kind, value in case.steps:
        if kind == "input":
            try:
                act3, keys = hs.receive_act_two(_hex(value))
                produced.append(act3)
            except HandshakeError as exc:
                error = exc
        elif value.startswith("ERROR"):
            _check_error(error, value)
        elif value.startswith("sk,rk"):
            _check_keys(keys, value, "sk,rk")
        else:
            assert produced.pop(0) == _hex(value)
    assert not produced


@pytest.mark.parametrize("case", RESPONDER, ids=lambda c: c.name)
def test_responder(case: Case) -> None:
    p = case.params
    ls, e = _key(p["ls.priv"]), _key(p["e.priv"])
    assert ls.public_key.data == _hex(p["ls.pub"])
    assert e.public_key.data == _hex(p["e.pub"])
    hs = Responder(ls, ephemeral=e)
    produced: list[bytes] = []
    error: HandshakeError | None = None
    keys: SessionKeys | None = None
    inputs = 0
    for kind, value in case.steps:
        if kind == "input":
            inputs += 1
            try:
                if inputs == 1:
                    produced.append(hs.receive_act_one(_hex(value)))
                else:
                    keys = hs.receive_act_three(_hex(value))
            except HandshakeError as exc:
                error = exc
        elif value.startswith("ERROR"):
            _check_error(error, value)
        elif value.startswith("rk,sk"):
            _check_keys(keys, value, "rk,sk")
            # The initiator's static key, recovered from act three.
            assert keys is not None
            assert keys.remote_static.hex() == (
                "034f355bdcb7cc0af728ef3cceb9615d90684bb5b2ca5f859ab0f0b704075871aa"
            )
        else:
            assert produced.pop(0) == _hex(value)
    assert not produced


def _message_transports() -> tuple[Transport, Transport]:
    p = MESSAGE[0].params
    ck, sk, rk = _hex(p["ck"]), _hex(p["sk"]), _hex(p["rk"])
    peer = SecretKey(b"\x01" * 32).public_key  # not part of the vector; any key will do
    sender = Transport(SessionKeys(sk=sk, rk=rk, ck=ck, remote_static=peer))
    receiver = Transport(SessionKeys(sk=rk, rk=sk, ck=ck, remote_static=peer))
    return sender, receiver


def test_message_encryption_and_key_rotation() -> None:
    expected = {
        int(kind.split()[1]): _hex(value)
        for kind, value in MESSAGE[0].steps
        if kind.startswith("output ")
    }
    sender, receiver = _message_transports()
    for i in range(max(expected) + 1):
        packet = sender.encrypt_message(b"hello")
        if i in expected:
            assert packet == expected[i], f"output {i}"
        # The responder decrypts every one, rotating its receive key in step.
        assert receiver.decrypt_message(packet) == b"hello"
