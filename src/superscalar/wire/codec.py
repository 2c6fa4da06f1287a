"""Typed wire messages: frozen msgspec structs, JSON on the wire, strict decoding.

Why msgspec: one declaration gives the type, the JSON encoding and a strict,
fast validating decoder (unknown fields, wrong types, out-of-range numbers and
unknown message types are all refused). `decode` turns *every* failure into a
`WireDecodeError` with a reason, so a daemon answers bad input with an ERROR
and drops the peer without ever touching state.

Every message is a JSON object whose `"type"` field names it:

    {"type":"ping","nonce":7}

Bytes travel as lowercase hex (never base64): declare them as `Hex` (any
length) or a fixed-size `Hex32`/`Hex33`/`Hex64`/`Hex66` (add more by
subclassing `Hex` with a `SIZE`). A field typed `bytes` is refused when the
registry is built, so nothing silently goes out as base64. Public keys are
`PublicKeyHex` / `XOnlyHex`: hex on the wire, checked to be valid points when
decoded, `.to_key()` for the crypto type.

How to add a message (the lead's `wire/messages.py` is imported automatically
the first time anything is decoded, so a new message needs nothing else):

    from superscalar.wire.codec import Hex32, Message, PublicKeyHex, Record, U32, UInt

    class NodeSig(Record):                       # nested value: subclass Record
        node: U32
        psig: Hex32

    class FactoryPropose(Message, tag="factory_propose"):
        \"\"\"LSP → clients: the tree to sign (why it exists, who sends it).\"\"\"
        factory_id: Hex32
        clients: tuple[PublicKeyHex, ...]         # tuples, not lists: values are frozen
        amount_sat: UInt
        sigs: tuple[NodeSig, ...] = ()

        def __post_init__(self) -> None:          # optional extra invariants;
            if not self.clients:                   # ValueError here becomes a
                raise ValueError("no clients")     # WireDecodeError on decode

Rules the registry enforces (a `TypeError` at first use otherwise): the tag is
snake_case and unique; no `bytes`/`bytearray`/`memoryview` field anywhere;
no lists, sets or dicts (tuples of `Record`s instead: messages are hashable
values); nested structs subclass `Record`; `Hex` appears only as a field, an
optional field, or an element of a `tuple[..., ...]` field. Fields are
keyword-only and unknown fields are refused on decode, so adding a field is a
protocol change: bump
`PROTOCOL_VERSION` or give it a default and gate it on a feature from `Init`.
"""

from __future__ import annotations

import importlib
import re
import threading
import weakref
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Self, TypeAlias, TypeVar, Union, dataclass_transform

import msgspec
import msgspec.inspect as mi
from msgspec.structs import force_setattr

from superscalar.crypto.errors import InvalidKeyError
from superscalar.crypto.keys import PublicKey, XOnlyPublicKey

from .errors import DecodeFailure, WireDecodeError, WireError
from .framing import DEFAULT_MAX_MESSAGE_SIZE

__all__ = [
    "MESSAGES_MODULE",
    "MIN_PROTOCOL_VERSION",
    "PROTOCOL_VERSION",
    "U16",
    "U32",
    "Error",
    "ErrorCode",
    "FeatureName",
    "Hex",
    "Hex32",
    "Hex33",
    "Hex64",
    "Hex66",
    "Init",
    "Message",
    "Negotiated",
    "NegotiationError",
    "PeerWarning",
    "Ping",
    "Pong",
    "PublicKeyHex",
    "Record",
    "ShortText",
    "Text",
    "UInt",
    "WireDecodeError",
    "XOnlyHex",
    "decode",
    "decode_record",
    "encode",
    "encode_record",
    "message_types",
    "negotiate",
]

PROTOCOL_VERSION = 1
MIN_PROTOCOL_VERSION = 1
MESSAGES_MODULE = "superscalar.wire.messages"

U16 = Annotated[int, msgspec.Meta(ge=0, le=0xFFFF)]
U32 = Annotated[int, msgspec.Meta(ge=0, le=0xFFFF_FFFF)]
# Non-negative and within int64: SQLite's INTEGER, so whatever arrives can be stored
# (msgspec cannot bound a field beyond int64; unbounded ints would accept 2**100).
UInt = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Text = Annotated[str, msgspec.Meta(max_length=1000)]
ShortText = Annotated[str, msgspec.Meta(max_length=128)]
FeatureName = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
_ErrorCodeText = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,63}$")]

_HEX_RE = re.compile(r"(?:[0-9a-f]{2})*")
_TAG_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")


# --- hex bytes --------------------------------------------------------------------------


class Hex(bytes):
    """Bytes that travel as lowercase hex in JSON; `SIZE` (if set) is the exact length."""

    SIZE: ClassVar[int | None] = None

    def __new__(cls, data: bytes | bytearray | memoryview = b"") -> Self:
        if isinstance(data, int | str):  # bytes(5) zero-fills, bytes("x") needs an encoding
            raise TypeError(f"{cls.__name__} takes bytes, not {type(data).__name__}")
        obj = super().__new__(cls, data)
        if cls.SIZE is not None and len(obj) != cls.SIZE:
            raise ValueError(f"{cls.__name__} must be {cls.SIZE} bytes, got {len(obj)}")
        return obj

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.hex()!r})"


class Hex32(Hex):
    """32 bytes: hashes, ids, secrets, x-only keys, partial signatures."""

    SIZE = 32


class Hex33(Hex):
    """33 bytes: compressed public keys."""

    SIZE = 33


class Hex64(Hex):
    """64 bytes: BIP340 signatures."""

    SIZE = 64


class Hex66(Hex):
    """66 bytes: MuSig2 public nonces."""

    SIZE = 66


class PublicKeyHex(Hex33):
    """A compressed public key, checked to be on the curve when decoded or built.

    (msgspec encodes dataclasses such as `PublicKey` natively, as objects, so
    keys travel as this Hex type and become `PublicKey`s with `to_key()`.)
    """

    def __new__(cls, data: bytes | bytearray | memoryview = b"") -> Self:
        obj = super().__new__(cls, data)
        try:
            PublicKey(bytes(obj))
        except InvalidKeyError as exc:
            raise ValueError(f"not a public key: {exc}") from None
        return obj

    @classmethod
    def of(cls, key: PublicKey) -> Self:
        return cls(key.data)

    def to_key(self) -> PublicKey:
        return PublicKey(bytes(self))


class XOnlyHex(Hex32):
    """A BIP340 x-only public key, checked when decoded or built; `to_key()` parses it."""

    def __new__(cls, data: bytes | bytearray | memoryview = b"") -> Self:
        obj = super().__new__(cls, data)
        try:
            XOnlyPublicKey(bytes(obj))
        except InvalidKeyError as exc:
            raise ValueError(f"not an x-only public key: {exc}") from None
        return obj

    @classmethod
    def of(cls, key: XOnlyPublicKey) -> Self:
        return cls(key.data)

    def to_key(self) -> XOnlyPublicKey:
        return XOnlyPublicKey(bytes(self))


def _parse_hex(text: object) -> bytes:
    if not isinstance(text, str) or not _HEX_RE.fullmatch(text):
        raise ValueError("expected lowercase hex with an even number of digits")
    return bytes.fromhex(text)


def _enc_hook(obj: object) -> Any:
    if isinstance(obj, Hex):
        return obj.hex()
    raise TypeError(f"cannot encode {type(obj).__name__} on the wire")


def _dec_hook(typ: type, obj: object) -> Any:
    if isinstance(typ, type) and issubclass(typ, Hex):
        return typ(_parse_hex(obj))
    raise TypeError(f"unsupported wire type {typ!r}")


# --- struct bases -----------------------------------------------------------------------

# Per-class plan of fields that must hold exact Hex instances: (name, hex type, is tuple).
_HexPlan: TypeAlias = tuple[tuple[str, type[Hex], bool], ...]
_PLANS: dict[type, _HexPlan] = {}


def _hex_target(t: mi.Type) -> tuple[type[Hex], bool] | None:
    """The Hex type a field holds directly / optionally / as tuple elements, if any."""
    if isinstance(t, mi.UnionType):
        # msgspec allows at most one custom type in a union, so at most one match.
        found = [r for m in t.types if (r := _hex_target(m)) is not None]
        return found[0] if found else None
    if isinstance(t, mi.CustomType) and issubclass(t.cls, Hex):
        return t.cls, False
    if (
        isinstance(t, mi.VarTupleType)
        and isinstance(t.item_type, mi.CustomType)
        and issubclass(t.item_type.cls, Hex)
    ):
        return t.item_type.cls, True
    return None


def _plan(cls: type) -> _HexPlan:
    plan = _PLANS.get(cls)
    if plan is None:
        info = mi.type_info(cls)
        assert isinstance(info, mi.StructType)
        plan = tuple(
            (f.name, target[0], target[1])
            for f in info.fields
            if (target := _hex_target(f.type)) is not None
        )
        _PLANS[cls] = plan
    return plan


def _coerce_hex(obj: Record) -> None:
    """Turn plain bytes handed to Hex fields into the declared Hex type (checking its size).

    Without this, `Ping(x=b"...")`-style construction with plain bytes would be
    encoded by msgspec as base64 and fail to decode on the other side.
    """
    for name, hex_type, is_tuple in _plan(type(obj)):
        value = getattr(obj, name)
        if value is None:
            continue
        if is_tuple:
            if any(type(v) is not hex_type for v in value):
                force_setattr(obj, name, tuple(hex_type(v) for v in value))
        elif type(value) is not hex_type:
            force_setattr(obj, name, hex_type(value))


_COERCING_POST_INITS: weakref.WeakSet[Any] = weakref.WeakSet()
"""The `__post_init__` wrappers `Record` made, so a subclass that inherits one is not
wrapped twice."""


# dataclass_transform tells type checkers that subclasses inherit frozen/kw_only
# (msgspec applies that at runtime; without this mypy calls every message non-frozen).
@dataclass_transform(frozen_default=True, kw_only_default=True, field_specifiers=(msgspec.field,))
class Record(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base for values nested inside messages: frozen, keyword-only, strict.

    A subclass may define `__post_init__` for invariants (raise ValueError);
    it is wrapped so the Hex coercion always runs first.
    """

    def __post_init__(self) -> None:
        _coerce_hex(self)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("__post_init__")
        if own is not None and own not in _COERCING_POST_INITS:

            def post_init(self: Record, _own: Any = own) -> None:
                _coerce_hex(self)
                _own(self)

            _COERCING_POST_INITS.add(post_init)
            cls.__post_init__ = post_init  # type: ignore[method-assign]


# Message classes in definition order. msgspec sets a class's tag only after
# `__init_subclass__` returns, so tags are read (and checked) when the decoder is built.
_CLASSES: list[type[Message]] = []
_LOCK = threading.Lock()
_decoder: msgspec.json.Decoder[Any] | None = None
_registry: dict[str, type[Message]] = {}
_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)


class Message(Record, tag_field="type"):
    """Base of every wire message; `class X(Message, tag="x")` registers it for `decode`."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        global _decoder
        with _LOCK:
            _CLASSES.append(cls)
            _decoder = None

    @property
    def type_tag(self) -> str:
        """The message's wire tag (its `"type"` field)."""
        tag = self.__struct_config__.tag
        assert isinstance(tag, str)
        return tag


def _check_schema(cls: type[Message]) -> None:
    """Refuse field types that would not round-trip as hex JSON or frozen values."""

    # `level`: 0 = a field (or an optional field), 1 = an item of a field's tuple, 2 = deeper.
    # Hex is allowed at levels 0 and 1 only: that is where `_coerce_hex` reaches.
    def walk(t: mi.Type, where: str, level: int) -> None:
        if isinstance(t, mi.BytesType | mi.ByteArrayType | mi.MemoryViewType):
            raise TypeError(f"{where}: declare bytes as Hex/HexNN (hex on the wire), not bytes")
        if isinstance(t, mi.CustomType):
            if not issubclass(t.cls, Hex):
                raise TypeError(f"{where}: unsupported type {t.cls.__name__}")
            if level > 1:
                raise TypeError(f"{where}: Hex may only be a field, optional, or tuple item")
        elif isinstance(t, mi.DataclassType):
            hint = " (use PublicKeyHex / XOnlyHex)" if t.cls in (PublicKey, XOnlyPublicKey) else ""
            raise TypeError(f"{where}: dataclass {t.cls.__name__} cannot be a wire field{hint}")
        elif isinstance(t, mi.StructType):
            if not issubclass(t.cls, Record):
                raise TypeError(f"{where}: nested struct {t.cls.__name__} must subclass Record")
            for f in t.fields:
                walk(f.type, f"{t.cls.__name__}.{f.name}", 0)
        elif isinstance(t, mi.UnionType):
            for m in t.types:
                walk(m, where, level)
        elif isinstance(t, mi.VarTupleType):
            walk(t.item_type, where, level + 1)
        elif isinstance(t, mi.TupleType):
            for item in t.item_types:
                walk(item, where, 2)  # fixed-size tuples: use a Record instead
        elif isinstance(t, mi.FrozenSetType):
            walk(t.item_type, where, 2)
        elif isinstance(t, mi.ListType | mi.SetType | mi.DictType):
            raise TypeError(
                f"{where}: messages are frozen values; use a tuple (of Records), not a "
                f"{type(t).__name__.removesuffix('Type').lower()}"
            )

    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    for f in info.fields:
        walk(f.type, f"{cls.__name__}.{f.name}", 0)


def _load_messages_module() -> None:
    """Import the protocol's message module so its structs are registered before decoding."""
    try:
        importlib.import_module(MESSAGES_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != MESSAGES_MODULE:
            raise


def message_types() -> dict[str, type[Message]]:
    """Every registered message type by wire tag (loads `wire/messages.py` if present)."""
    _get_decoder()
    return dict(_registry)


def _get_decoder() -> msgspec.json.Decoder[Any]:
    """The decoder for the union of all messages, rebuilt (and re-checked) after a new one."""
    global _decoder, _registry
    decoder = _decoder
    if decoder is not None:
        return decoder
    _load_messages_module()
    with _LOCK:
        classes = tuple(_CLASSES)
    registry: dict[str, type[Message]] = {}
    for cls in classes:
        tag = cls.__struct_config__.tag
        if not isinstance(tag, str) or not _TAG_RE.fullmatch(tag):
            raise TypeError(
                f"{cls.__module__}.{cls.__name__} needs an explicit snake_case wire tag: "
                f"class {cls.__name__}(Message, tag='...')"
            )
        if tag in registry:
            raise TypeError(f"wire tag {tag!r} is used by both {registry[tag]} and {cls}")
        _check_schema(cls)
        registry[tag] = cls
    decoder = msgspec.json.Decoder(Union[classes], dec_hook=_dec_hook)  # noqa: UP007
    with _LOCK:
        if len(_CLASSES) == len(classes):
            _decoder, _registry = decoder, registry
    return decoder


# --- encode / decode --------------------------------------------------------------------


def encode(message: Message) -> bytes:
    """The JSON bytes of a registered message."""
    if not isinstance(message, Message):
        raise TypeError(f"can only encode a Message, not {type(message).__name__}")
    _get_decoder()  # validates the schema once, so a bad struct fails loudly at first use
    return _encoder.encode(message)


R = TypeVar("R", bound=Record)


def encode_record(record: Record) -> bytes:
    """The JSON bytes of a record kept on disk rather than sent (same hex rules as messages)."""
    return _encoder.encode(record)


def decode_record(data: bytes | str, kind: type[R]) -> R:
    """Strict inverse of `encode_record`: a malformed record raises `WireDecodeError`."""
    try:
        return msgspec.json.decode(data, type=kind, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        raise WireDecodeError(DecodeFailure.INVALID, str(exc)) from None
    except msgspec.DecodeError as exc:
        raise WireDecodeError(DecodeFailure.NOT_JSON, str(exc)) from None


def _classify(exc: msgspec.ValidationError) -> DecodeFailure:
    text = str(exc)
    if text.endswith("`$.type`") or "missing required field `type`" in text:
        return DecodeFailure.UNKNOWN_TYPE
    return DecodeFailure.INVALID


def decode(data: bytes | bytearray | memoryview | str, *, max_size: int | None = None) -> Message:
    """Exactly one message from JSON bytes; any other input raises `WireDecodeError`.

    `max_size` (default: the framing limit) is checked before parsing, so an
    oversized input costs nothing.
    """
    limit = DEFAULT_MAX_MESSAGE_SIZE if max_size is None else max_size
    if isinstance(data, str):
        try:
            data = data.encode("utf-8")
        except UnicodeEncodeError:
            raise WireDecodeError(DecodeFailure.NOT_JSON, "text is not valid UTF-8") from None
    elif not isinstance(data, bytes | bytearray | memoryview):
        raise WireDecodeError(DecodeFailure.INVALID, f"expected bytes, got {type(data).__name__}")
    size = memoryview(data).nbytes
    if size > limit:
        raise WireDecodeError(DecodeFailure.TOO_LARGE, f"{size} bytes exceeds the {limit} limit")
    decoder = _get_decoder()
    try:
        message = decoder.decode(data)
    except msgspec.ValidationError as exc:
        failure = _classify(exc)
        if failure is DecodeFailure.UNKNOWN_TYPE:
            raise WireDecodeError(failure, f"unknown or missing message type ({exc})") from None
        raise WireDecodeError(failure, str(exc)) from None
    except msgspec.DecodeError as exc:
        raise WireDecodeError(DecodeFailure.NOT_JSON, str(exc)) from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # pragma: no cover
        # msgspec wraps hook and __post_init__ errors itself; this is a safety net.
        raise WireDecodeError(DecodeFailure.INVALID, str(exc) or type(exc).__name__) from None
    if not isinstance(message, Message):  # pragma: no cover - the Union only holds Messages
        raise WireDecodeError(DecodeFailure.INVALID, "not a message")
    return message


# --- generic messages -------------------------------------------------------------------


class ErrorCode(StrEnum):
    """Well-known `Error.code` values (the field is open: newer peers may send others)."""

    DECODE = "decode_error"
    PROTOCOL = "protocol_violation"
    UNSUPPORTED_VERSION = "unsupported_version"
    MISSING_FEATURE = "missing_feature"
    UNEXPECTED_MESSAGE = "unexpected_message"
    UNAUTHORIZED = "unauthorized"
    INTERNAL = "internal_error"


class Init(Message, tag="init"):
    """First message each side sends after the BOLT-8 handshake: versions and features.

    A peer speaks `version` and everything down to `min_version`; the session
    uses the highest version both speak. `required` lists features the other
    side must also support, or the connection is refused.
    """

    version: Annotated[int, msgspec.Meta(ge=1, le=0xFFFF)] = PROTOCOL_VERSION
    min_version: Annotated[int, msgspec.Meta(ge=1, le=0xFFFF)] = MIN_PROTOCOL_VERSION
    features: tuple[FeatureName, ...] = ()
    required: tuple[FeatureName, ...] = ()
    user_agent: ShortText = ""

    def __post_init__(self) -> None:
        if self.min_version > self.version:
            raise ValueError("min_version exceeds version")
        if len(self.features) > 256:
            raise ValueError("too many features")
        if len(set(self.features)) != len(self.features):
            raise ValueError("duplicate feature")
        if not set(self.required) <= set(self.features):
            raise ValueError("a required feature is not listed in features")


class Error(Message, tag="error"):
    """Fatal: the sender is giving up on this connection (or on `subject`, if given).

    `code` is machine-readable (see `ErrorCode`), `message` is for humans and
    logs. The receiver must not change any state because of an Error beyond
    abandoning what it names.
    """

    code: _ErrorCodeText = ErrorCode.PROTOCOL.value
    message: Text = ""
    subject: ShortText | None = None

    @classmethod
    def from_exception(cls, exc: WireError, code: ErrorCode = ErrorCode.PROTOCOL) -> Error:
        """An Error that tells the peer why we are dropping it (text truncated to fit)."""
        if isinstance(exc, WireDecodeError):
            code = ErrorCode.DECODE
        return cls(code=code.value, message=str(exc)[:1000])


class PeerWarning(Message, tag="warning"):
    """Non-fatal complaint: logged by the receiver, the connection stays up."""

    code: _ErrorCodeText = ErrorCode.PROTOCOL.value
    message: Text = ""
    subject: ShortText | None = None


class Ping(Message, tag="ping"):
    """Liveness probe; the peer answers with a Pong carrying the same nonce."""

    nonce: UInt = 0


class Pong(Message, tag="pong"):
    """Answer to a Ping (same nonce), so the sender can match it and time the round trip."""

    nonce: UInt = 0


class NegotiationError(WireError):
    """The two Init messages have no common version, or a required feature is missing."""

    def __init__(self, code: ErrorCode, reason: str) -> None:
        self.code = code
        super().__init__(reason)


@dataclass(frozen=True)
class Negotiated:
    """The outcome of exchanging Init: the version to speak and the features both support."""

    version: int
    features: frozenset[str]
    remote: Init


def negotiate(ours: Init, theirs: Init) -> Negotiated:
    """Pick the highest common version and the shared features, or raise NegotiationError."""
    version = min(ours.version, theirs.version)
    if version < max(ours.min_version, theirs.min_version):
        raise NegotiationError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"no common protocol version: we speak {ours.min_version}..{ours.version}, "
            f"peer speaks {theirs.min_version}..{theirs.version}",
        )
    for who, needs, has in (("peer", theirs.required, ours), ("we", ours.required, theirs)):
        missing = sorted(set(needs) - set(has.features))
        if missing:
            raise NegotiationError(
                ErrorCode.MISSING_FEATURE,
                f"{who} require{'s' if who == 'peer' else ''} unsupported features: "
                + ", ".join(missing),
            )
    return Negotiated(
        version=version,
        features=frozenset(ours.features) & frozenset(theirs.features),
        remote=theirs,
    )
