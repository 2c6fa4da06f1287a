"""Absolute (nLockTime, BIP65 CLTV) and relative (BIP68 nSequence, BIP112 CSV) locks.

SuperScalar's safety rests on timeouts: tree nodes expire at an absolute
height (CLTV) and Decker-Wattenhofer states are ordered by relative delays
(CSV). These helpers encode, decode and check both kinds exactly as consensus
does, so the rest of the code never handles raw flag bits.

BIP65: `<n> OP_CHECKLOCKTIMEVERIFY` fails unless the spending transaction's
nLockTime is of the same kind (height or time) as n and at least n, and the
input's nSequence is not 0xFFFFFFFF (which would disable nLockTime).

BIP68/BIP112: for version >= 2 transactions an input's nSequence, unless its
disable flag (bit 31) is set, is a relative lock: the low 16 bits count blocks,
or 512-second units if the type flag (bit 22) is set. `<n> OP_CHECKSEQUENCEVERIFY`
fails unless the input's nSequence encodes a lock of the same kind that is at
least as long as n's.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "LOCKTIME_THRESHOLD",
    "MAX_BIP125_RBF_SEQUENCE",
    "SEQUENCE_FINAL",
    "SEQUENCE_LOCKTIME_DISABLE_FLAG",
    "SEQUENCE_LOCKTIME_GRANULARITY",
    "SEQUENCE_LOCKTIME_MASK",
    "SEQUENCE_LOCKTIME_TYPE_FLAG",
    "LocktimeError",
    "RelativeLock",
    "absolute_lock_satisfied",
    "cltv_satisfied",
    "csv_satisfied",
    "decode_sequence",
    "locktime_for_height",
    "locktime_for_time",
    "locktime_is_height",
]

SEQUENCE_FINAL = 0xFFFFFFFF
MAX_BIP125_RBF_SEQUENCE = 0xFFFFFFFD
SEQUENCE_LOCKTIME_DISABLE_FLAG = 1 << 31
SEQUENCE_LOCKTIME_TYPE_FLAG = 1 << 22
SEQUENCE_LOCKTIME_MASK = 0x0000FFFF
SEQUENCE_LOCKTIME_GRANULARITY = 9
"""Time-based relative locks count units of 2^9 = 512 seconds."""
LOCKTIME_THRESHOLD = 500_000_000
"""nLockTime values below this are block heights, at or above it UNIX times."""

_U32 = 0xFFFFFFFF


class LocktimeError(ValueError):
    """A lock value that is out of range or of the wrong kind."""


def _check_int(value: int, lo: int, hi: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise LocktimeError(f"{what} must be an int, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise LocktimeError(f"{what} {value} is outside {lo}..{hi}")
    return value


# -- relative locks (BIP68) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RelativeLock:
    """A BIP68 relative lock: `value` blocks, or `value` x 512 seconds if `is_time`."""

    value: int
    is_time: bool = False

    def __post_init__(self) -> None:
        _check_int(self.value, 0, SEQUENCE_LOCKTIME_MASK, "relative lock value")

    @classmethod
    def blocks(cls, n: int) -> RelativeLock:
        return cls(n, False)

    @classmethod
    def from_seconds(cls, seconds: int, round_up: bool = True) -> RelativeLock:
        """A time lock of at least (or, without `round_up`, at most) `seconds`."""
        _check_int(seconds, 0, SEQUENCE_LOCKTIME_MASK << SEQUENCE_LOCKTIME_GRANULARITY, "seconds")
        unit = 1 << SEQUENCE_LOCKTIME_GRANULARITY
        return cls(-(-seconds // unit) if round_up else seconds // unit, True)

    @property
    def seconds(self) -> int:
        """The lock length in seconds (time locks only)."""
        if not self.is_time:
            raise LocktimeError("a block-based relative lock has no length in seconds")
        return self.value << SEQUENCE_LOCKTIME_GRANULARITY

    def to_sequence(self) -> int:
        """The nSequence (or CSV argument) encoding this lock."""
        return self.value | (SEQUENCE_LOCKTIME_TYPE_FLAG if self.is_time else 0)

    @classmethod
    def from_sequence(cls, sequence: int) -> RelativeLock | None:
        """The lock an nSequence encodes; None if its disable flag is set."""
        return decode_sequence(sequence)

    def is_satisfied(self, elapsed: int) -> bool:
        """True once `elapsed` blocks (or seconds, for a time lock) have passed."""
        if self.is_time:
            return elapsed >= self.seconds
        return elapsed >= self.value


def decode_sequence(sequence: int) -> RelativeLock | None:
    """Decode an nSequence per BIP68; None if the disable flag is set.

    Bits other than the disable flag, the type flag and the low 16 are ignored,
    as consensus ignores them.
    """
    _check_int(sequence, 0, _U32, "sequence")
    if sequence & SEQUENCE_LOCKTIME_DISABLE_FLAG:
        return None
    return RelativeLock(
        sequence & SEQUENCE_LOCKTIME_MASK, bool(sequence & SEQUENCE_LOCKTIME_TYPE_FLAG)
    )


def csv_satisfied(csv_arg: int, tx_version: int, input_sequence: int) -> bool:
    """Would `<csv_arg> OP_CHECKSEQUENCEVERIFY` pass for this input? (BIP112)

    A negative argument fails; one with the disable flag set behaves as a NOP.
    """
    if csv_arg < 0:
        return False
    if csv_arg & SEQUENCE_LOCKTIME_DISABLE_FLAG:
        return True
    if tx_version < 2 or input_sequence & SEQUENCE_LOCKTIME_DISABLE_FLAG:
        return False
    mask = SEQUENCE_LOCKTIME_TYPE_FLAG | SEQUENCE_LOCKTIME_MASK
    required, actual = csv_arg & mask, input_sequence & mask
    if (required & SEQUENCE_LOCKTIME_TYPE_FLAG) != (actual & SEQUENCE_LOCKTIME_TYPE_FLAG):
        return False
    return required <= actual


# -- absolute locks (nLockTime, BIP65) ----------------------------------------------


def locktime_is_height(locktime: int) -> bool:
    """True if `locktime` is a block height, False if it is a UNIX time."""
    return _check_int(locktime, 0, _U32, "locktime") < LOCKTIME_THRESHOLD


def locktime_for_height(height: int) -> int:
    """nLockTime that lets a transaction confirm in block `height` or later.

    Consensus requires nLockTime < the block's height, so this is `height - 1`.
    """
    return _check_int(height, 1, LOCKTIME_THRESHOLD, "lock height") - 1


def locktime_for_time(unix_time: int) -> int:
    """nLockTime that lets a transaction confirm once median-time-past exceeds it (BIP113)."""
    return _check_int(unix_time, LOCKTIME_THRESHOLD, _U32, "lock time")


def absolute_lock_satisfied(locktime: int, height: int, median_time_past: int) -> bool:
    """Is nLockTime `locktime` final for a block at `height` whose parent has this MTP?

    Consensus compares against the block being built (height, BIP113 MTP of the
    previous block), strictly: lock < height or lock < MTP. Zero is always final;
    so is any transaction whose inputs all have nSequence 0xFFFFFFFF (not checked here).
    """
    _check_int(locktime, 0, _U32, "locktime")
    if locktime == 0:
        return True
    if locktime < LOCKTIME_THRESHOLD:
        return locktime < height
    return locktime < median_time_past


def cltv_satisfied(cltv_arg: int, tx_locktime: int, input_sequence: int) -> bool:
    """Would `<cltv_arg> OP_CHECKLOCKTIMEVERIFY` pass for this input? (BIP65)"""
    if cltv_arg < 0 or cltv_arg > _U32:
        return False
    if (cltv_arg < LOCKTIME_THRESHOLD) != (tx_locktime < LOCKTIME_THRESHOLD):
        return False
    if cltv_arg > tx_locktime:
        return False
    return input_sequence != SEQUENCE_FINAL
