"""Our own libsecp256k1 context with callbacks that raise instead of aborting.

libsecp256k1's default illegal-argument callback calls abort(); a daemon must
never die because one peer sent garbage, so every call in the crypto core goes
through this context and `check()`, which turns a failure into a typed error.
"""

from __future__ import annotations

import os
import threading
from typing import Any, NoReturn

from coincurve._libsecp256k1 import ffi, lib

from .errors import CryptoError

__all__ = ["CTX", "ParsedValue", "check", "ffi", "lib", "raise_last"]

_SECP256K1_CONTEXT_NONE = 1
_last = threading.local()


def _record(kind: str) -> Any:
    def callback(message: Any, _data: Any) -> None:
        _last.message = f"libsecp256k1 {kind}: {ffi.string(message).decode(errors='replace')}"

    return ffi.callback("void(char *, void *)", callback)


# Keep references: the C side holds raw pointers to these closures.
_ILLEGAL_CB = _record("illegal argument")
_ERROR_CB = _record("internal error")

CTX: Any = lib.secp256k1_context_create(_SECP256K1_CONTEXT_NONE)
lib.secp256k1_context_set_illegal_callback(CTX, _ILLEGAL_CB, ffi.NULL)
lib.secp256k1_context_set_error_callback(CTX, _ERROR_CB, ffi.NULL)
if not lib.secp256k1_context_randomize(CTX, os.urandom(32)):  # pragma: no cover
    raise RuntimeError("secp256k1_context_randomize failed")


def raise_last(error: type[CryptoError], what: str) -> NoReturn:
    """Raise `error` with the illegal-callback message, if the library gave one."""
    detail = getattr(_last, "message", None)
    _last.message = None
    raise error(f"{what} ({detail})" if detail else what)


def check(result: int, error: type[CryptoError], what: str) -> None:
    """libsecp256k1 returns 1 on success; anything else becomes `error`."""
    if result != 1:
        raise_last(error, what)


class ParsedValue:
    """Mixin for immutable values that carry a parsed C object beside their bytes.

    The C object cannot be pickled or copied, but it need not be: the value is
    rebuilt from its canonical `data` bytes, and copies can share the original.
    """

    data: bytes

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return (type(self), (self.data,))

    def __copy__(self) -> Any:
        return self

    def __deepcopy__(self, memo: Any) -> Any:
        return self
