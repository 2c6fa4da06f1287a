"""Exact BTC <-> satoshi conversion and the JSON codec bitcoind's RPC speaks.

bitcoind writes amounts as bare JSON numbers with eight decimals
(`"value": 50.00000000`). Read through a binary float, 0.1 BTC becomes
0.1000000000000000055..., and a sum of a few such values can round to the
wrong satoshi. So amounts never touch `float` here: JSON numbers with a
fraction decode to `Decimal`, amounts convert to integer satoshis with an
exact check that nothing is lost, and `Decimal` encodes back as a bare number
(not a quoted string, which bitcoind would read as a different type).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from superscalar.bitcoin import tx as _tx
from superscalar.bitcoin.tx import COIN, MAX_MONEY

__all__ = [
    "COIN",
    "MAX_MONEY",
    "AmountError",
    "btc_to_sat",
    "decode_json",
    "encode_json",
    "sat_to_btc",
]

_MAX_BTC = Decimal(21_000_000)

# A plain decimal, as bitcoind's ParseFixedPoint accepts it: no sign (that is
# checked separately for a clearer error), no whitespace, no underscores.
_DECIMAL_TEXT = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


class AmountError(_tx.AmountError):
    """A BTC amount that is not an exact, non-negative number of satoshis
    <= 21e6 BTC. A `ValueError`, and the bitcoin layer's `AmountError`, so one
    `except` covers amounts from the wire and amounts built locally."""


def btc_to_sat(value: Decimal | int | str) -> int:
    """Convert a BTC amount to integer satoshis, exactly, or raise `AmountError`.

    `int` means whole bitcoins (a JSON `50` is 50 BTC). `str` is decimal text
    such as `"0.00012345"`. `float` is refused: a float cannot carry 0.1 BTC
    exactly, and silently rounding money is the bug this module exists to
    prevent. More than eight decimals is refused rather than rounded, for the
    same reason.
    """
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        if isinstance(value, float):
            raise AmountError(
                f"float amount {value!r} refused: floats are not exact; "
                "pass a Decimal, an int (whole BTC) or decimal text"
            )
        raise AmountError(f"amount must be Decimal, int or str, not {type(value).__name__}")
    if isinstance(value, str):
        if not _DECIMAL_TEXT.fullmatch(value):
            raise AmountError(f"invalid amount {value!r}: not a decimal number")
        try:
            value = Decimal(value)
        except InvalidOperation as exc:  # pragma: no cover - the regex already filtered
            raise AmountError(f"invalid amount {value!r}") from exc
    if isinstance(value, int):
        value = Decimal(value)
    if not value.is_finite():
        raise AmountError(f"invalid amount {value}: not a finite number")
    if value < 0:
        raise AmountError(f"negative amount {value} BTC refused")
    # Decimal comparison is exact, so this bound holds before any arithmetic,
    # which keeps the exponent below small.
    if value > _MAX_BTC:
        raise AmountError(f"amount {value} BTC exceeds the 21,000,000 BTC supply")
    _sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite
    text = "".join(map(str, digits)).lstrip("0")
    if not text:
        return 0
    shift = exponent + 8  # satoshis = int(text) * 10**shift
    if shift < 0:
        # Only trailing zeros may be dropped; counting them first keeps the
        # work bounded by the input's own length whatever its exponent.
        significant = text.rstrip("0")
        if len(text) - len(significant) < -shift:
            raise AmountError(f"amount {value} BTC has more than 8 decimal places")
        text = text[:shift]
        shift = 0
    sat = int(text + "0" * shift)
    if sat > MAX_MONEY:  # pragma: no cover - the Decimal bound above is equivalent
        raise AmountError(f"amount {value} BTC exceeds the 21,000,000 BTC supply")
    return sat


def sat_to_btc(sat: int) -> Decimal:
    """Satoshis as a BTC `Decimal` with exactly eight places (`50.00000000`).

    Negative values are allowed (bitcoind reports fees and wallet deltas as
    negative amounts); the magnitude must not exceed `MAX_MONEY`.
    """
    if isinstance(sat, bool) or not isinstance(sat, int):
        raise AmountError(f"satoshi amount must be an int, not {type(sat).__name__}")
    if abs(sat) > MAX_MONEY:
        raise AmountError(f"{sat} sat exceeds the 21,000,000 BTC supply")
    whole, frac = divmod(abs(sat), COIN)
    return Decimal(f"{'-' if sat < 0 else ''}{whole}.{frac:08d}")


# -- JSON ---------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode_json(data: str | bytes) -> Any:
    """Parse JSON the way bitcoind means it: numbers with a fraction or exponent
    become `Decimal` (exact amounts), integers stay `int`, and the non-standard
    `NaN`/`Infinity` that Python would otherwise accept are refused.

    Raises `ValueError` (including `json.JSONDecodeError` and
    `UnicodeDecodeError`) on anything that is not strict JSON.
    """
    if isinstance(data, bytes | bytearray):
        data = bytes(data).decode("utf-8")
    return json.loads(data, parse_float=Decimal, parse_constant=_reject_constant)


_encode_str = json.encoder.encode_basestring_ascii


def encode_json(obj: Any) -> str:
    """Compact JSON text in which `Decimal` is a bare number in fixed notation.

    `Decimal("50.00000000")` is written `50.00000000`, as bitcoind writes
    amounts (never `"50.00000000"`, never `5E+1`). Accepts dict (str keys),
    list/tuple, str, int, bool, None, finite float and finite Decimal; anything
    else raises `TypeError`, so a handler that returns a non-JSON value fails
    loudly instead of being stringified.
    """
    parts: list[str] = []
    try:
        _encode_into(obj, parts, 0)
    except RecursionError:
        raise ValueError("JSON value nested too deeply") from None
    return "".join(parts)


_MAX_DEPTH = 512


def _encode_into(obj: Any, out: list[str], depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise ValueError("JSON value nested too deeply")
    if obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, str):
        out.append(_encode_str(obj))
    elif isinstance(obj, int):
        out.append(int.__repr__(obj))
    elif isinstance(obj, Decimal):
        if not obj.is_finite():
            raise ValueError(f"cannot encode non-finite Decimal {obj} as JSON")
        out.append(format(obj, "f"))
    elif isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"cannot encode non-finite float {obj} as JSON")
        out.append(float.__repr__(obj))
    elif isinstance(obj, Mapping):
        out.append("{")
        first = True
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be str, not {type(key).__name__}")
            if not first:
                out.append(",")
            first = False
            out.append(_encode_str(key))
            out.append(":")
            _encode_into(value, out, depth + 1)
        out.append("}")
    elif isinstance(obj, list | tuple):
        out.append("[")
        for index, value in enumerate(obj):
            if index:
                out.append(",")
            _encode_into(value, out, depth + 1)
        out.append("]")
    else:
        raise TypeError(f"{type(obj).__name__} is not JSON serializable")
