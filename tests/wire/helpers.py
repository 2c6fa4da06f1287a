"""Shared wire-test helpers: fixed node keys and in-process BOLT-8 sessions."""

from __future__ import annotations

from superscalar.crypto.keys import SecretKey
from superscalar.wire.noise import Initiator, Responder, SessionKeys, Transport

ALICE = SecretKey(b"\x11" * 32)
BOB = SecretKey(b"\x21" * 32)
MALLORY = SecretKey(b"\x33" * 32)


def handshake(a: SecretKey = ALICE, b: SecretKey = BOB) -> tuple[SessionKeys, SessionKeys]:
    """Run acts 1-3 in memory; returns (initiator's keys, responder's keys)."""
    ini, res = Initiator(a, b.public_key), Responder(b)
    act3, ka = ini.receive_act_two(res.receive_act_one(ini.act_one()))
    return ka, res.receive_act_three(act3)


def transports() -> tuple[Transport, Transport]:
    """A connected (initiator, responder) transport pair."""
    ka, kb = handshake()
    return Transport(ka), Transport(kb)
