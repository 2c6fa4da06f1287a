"""JSON encoding of the channel core's values: peer messages (for the wire) and states (for SQLite).

The channel core speaks frozen dataclasses (`ChannelState`, `CommitmentSigned`,
...) built from a handful of leaf types (bytes, ints, enums, parsed curve
values). This codec walks them generically, tagging every dataclass with its
class name, and decodes *only* classes on an explicit allow-list — anything
else is a `ValueError`, never an arbitrary constructor call. Fields that are
not init-parameters (parsed C objects, caches) are rebuilt by the classes'
own `__post_init__`; the two in-memory-only fields of a state are handled
explicitly: `ChannelState.funding_output` is recomputed from the funding keys
and a close negotiation's secret nonce is never written (a close restarts).
"""

from __future__ import annotations

import dataclasses
import json
from enum import Enum
from typing import Any

from superscalar.bitcoin.tx import OutPoint, Transaction, TxIn, TxOut
from superscalar.channel import htlc as _htlc
from superscalar.channel import keys as _keys
from superscalar.channel import messages as _messages
from superscalar.channel import state as _state
from superscalar.channel.config import ChannelConfig, Funding
from superscalar.channel.revocation import RevocationStore, RevokedCommitment
from superscalar.channel.scripts import funding_output
from superscalar.crypto.keys import PublicKey, XOnlyPublicKey
from superscalar.crypto.musig import PartialSignature, PublicNonce

__all__ = [
    "decode_message",
    "decode_state",
    "decode_value",
    "encode_message",
    "encode_state",
    "encode_value",
]

_CLASSES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        OutPoint,
        Transaction,
        TxIn,
        TxOut,
        PublicKey,
        XOnlyPublicKey,
        PublicNonce,
        PartialSignature,
        ChannelConfig,
        Funding,
        RevocationStore,
        RevokedCommitment,
        _keys.Basepoints,
        _htlc.Htlc,
        _htlc.SpecHtlc,
        _htlc.CommitmentSpec,
        _htlc.UpdateAddHtlc,
        _htlc.UpdateFulfillHtlc,
        _htlc.UpdateFailHtlc,
        _messages.ChannelOpen,
        _messages.FundingSigned,
        _messages.CommitmentSigned,
        _messages.RevokeAndAck,
        _messages.Shutdown,
        _messages.ClosingComplete,
        _messages.ClosingSig,
        _messages.ChannelReestablish,
        _state.LocalCommit,
        _state.RemoteCommit,
        _state.LocalChanges,
        _state.RemoteChanges,
        _state.CloseNegotiation,
        _state.ChannelState,
    )
}
_ENUMS: dict[str, type[Enum]] = {e.__name__: e for e in (_state.Status, _htlc.Direction)}
_MESSAGES = frozenset(
    {
        "ChannelOpen",
        "FundingSigned",
        "UpdateAddHtlc",
        "UpdateFulfillHtlc",
        "UpdateFailHtlc",
        "CommitmentSigned",
        "RevokeAndAck",
        "Shutdown",
        "ClosingComplete",
        "ClosingSig",
        "ChannelReestablish",
    }
)
_SKIP = {("ChannelState", "funding_output"), ("CloseNegotiation", "closee_secnonce")}


def encode_value(value: Any) -> Any:
    """A JSON-ready tree for `value` (see the module docstring)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, bytes):
        return {"b": value.hex()}
    if isinstance(value, tuple | list):
        return [encode_value(v) for v in value]
    if isinstance(value, Enum):
        return {"e": type(value).__name__, "v": value.value}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if _CLASSES.get(name) is not type(value):
            raise TypeError(f"cannot encode {name}")
        fields = {
            f.name: encode_value(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.init and (name, f.name) not in _SKIP
        }
        return {"d": name, "f": fields}
    raise TypeError(f"cannot encode {type(value).__name__}")


def decode_value(tree: Any) -> Any:
    """The inverse of `encode_value`; raises `ValueError` on anything it did not make."""
    if tree is None or isinstance(tree, bool | int | str):
        return tree
    if isinstance(tree, list):
        return tuple(decode_value(v) for v in tree)
    if not isinstance(tree, dict):
        raise ValueError(f"unexpected {type(tree).__name__}")
    try:
        if set(tree) == {"b"}:
            return bytes.fromhex(tree["b"])
        if set(tree) == {"e", "v"}:
            return _ENUMS[tree["e"]](tree["v"])
        if set(tree) == {"d", "f"} and isinstance(tree["f"], dict):
            name = tree["d"]
            cls = _CLASSES[name]
            fields = {str(k): decode_value(v) for k, v in tree["f"].items()}
            if name == "ChannelState":
                local, remote = fields["local"], fields["remote"]
                fields["funding_output"] = funding_output(local.funding, remote.funding)
            return cls(**fields)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"malformed value: {exc!r}") from exc
    raise ValueError("malformed value")


def encode_state(state: _state.ChannelState) -> str:
    return json.dumps(encode_value(state), separators=(",", ":"))


def decode_state(text: str) -> _state.ChannelState:
    value = decode_value(json.loads(text))
    if not isinstance(value, _state.ChannelState):
        raise ValueError("not a channel state")
    return value


def encode_message(msg: _messages.Message) -> str:
    return json.dumps(encode_value(msg), separators=(",", ":"))


def decode_message(text: str) -> _messages.Message:
    """A channel peer message; anything else (or garbage) raises `ValueError`."""
    try:
        tree = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"bad JSON: {exc}") from exc
    if not isinstance(tree, dict) or tree.get("d") not in _MESSAGES:
        raise ValueError("not a channel message")
    value = decode_value(tree)
    return value  # type: ignore[no-any-return]
