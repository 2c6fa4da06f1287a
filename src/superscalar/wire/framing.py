"""Messages larger than a BOLT-8 packet, split into frames and reassembled; sans-IO.

BOLT-8 caps one packet at 65535 bytes, but a factory proposal for a thousand
clients is far bigger. Each packet therefore carries one *frame*:

    frame = flags (1 byte) ‖ chunk (0..65534 bytes)
    flags = 0x01 ("more frames follow") or 0x00 (last frame of the message)

A message is the concatenation of its frames' chunks. The encoding is
canonical, so there is exactly one way to send a message: every frame but the
last carries a full `chunk_size` chunk, and other flag bits must be zero. This
also stops a peer from making us do one AEAD operation per byte of a huge
message. The total size is capped (`max_message_size`, default 16 MiB) and
checked as frames arrive, so an oversized message is refused before it is
buffered in full.

`MessageStream` joins this with `noise.Transport`: bytes from the socket go in
(`feed`) in arbitrary pieces and whole messages come out; `encode` turns a
message into the bytes to write. The asyncio shell (`connection.py`) does
nothing else with the data.
"""

from __future__ import annotations

from .errors import FramingError, NoiseStateError, WireError
from .noise import HEADER_SIZE, MAC_SIZE, MAX_MESSAGE_SIZE, Transport

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "FLAG_MORE",
    "MAX_CHUNK",
    "MessageStream",
    "Reassembler",
    "split_message",
]

FLAG_MORE = 0x01
MAX_CHUNK = MAX_MESSAGE_SIZE - 1  # one byte of every packet is the frame header
DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024


def _check_chunk_size(chunk_size: int) -> int:
    if not 1 <= chunk_size <= MAX_CHUNK:
        raise ValueError(f"chunk_size must be in 1..{MAX_CHUNK}, not {chunk_size}")
    return chunk_size


def split_message(message: bytes, chunk_size: int = MAX_CHUNK) -> list[bytes]:
    """The frames of `message`: full chunks flagged MORE, then a final (possibly empty) one.

    A message whose length is an exact multiple of `chunk_size` ends with an
    empty final frame, which keeps the rule "only the last frame is short" simple.
    """
    _check_chunk_size(chunk_size)
    view = memoryview(message)
    frames = []
    start = 0
    while len(message) - start >= chunk_size:
        frames.append(b"\x01" + view[start : start + chunk_size])
        start += chunk_size
    frames.append(b"\x00" + view[start:])
    return frames


class Reassembler:
    """Collects frames into messages, refusing anything non-canonical or over the limit."""

    __slots__ = ("_chunk_size", "_max", "_parts", "_size")

    def __init__(
        self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE, chunk_size: int = MAX_CHUNK
    ) -> None:
        if max_message_size < 0:
            raise ValueError("max_message_size must not be negative")
        self._max = max_message_size
        self._chunk_size = _check_chunk_size(chunk_size)
        self._parts: list[bytes] = []
        self._size = 0

    @property
    def pending(self) -> bool:
        """True while a message is half received (some MORE frames, no last frame yet)."""
        return bool(self._parts)

    def push(self, frame: bytes) -> bytes | None:
        """Add one frame; returns the message when `frame` completes one, else None."""
        if not frame:
            raise FramingError("empty frame (no header byte)")
        flags = frame[0]
        if flags & ~FLAG_MORE:
            raise FramingError(f"unknown frame flags 0x{flags:02x}")
        chunk = frame[1:]
        more = bool(flags & FLAG_MORE)
        if more and len(chunk) != self._chunk_size:
            raise FramingError(
                f"non-final frame carries {len(chunk)} bytes, must carry {self._chunk_size}"
            )
        if len(chunk) > self._chunk_size:
            raise FramingError(f"frame chunk of {len(chunk)} bytes exceeds {self._chunk_size}")
        self._size += len(chunk)
        if self._size > self._max:
            raise FramingError(f"message exceeds the {self._max}-byte limit")
        if more:
            self._parts.append(bytes(chunk))
            return None
        if not self._parts:
            self._size = 0
            return bytes(chunk)
        self._parts.append(bytes(chunk))
        message = b"".join(self._parts)
        self._parts.clear()
        self._size = 0
        return message


class MessageStream:
    """Sans-IO secure message stream: socket bytes ⇄ whole messages, over a BOLT-8 transport.

    After any error (bad MAC, bad frame, oversized message) the stream is
    poisoned: every later call raises, because the peer can no longer be trusted
    and the nonce streams are out of step. Drop the connection.
    """

    __slots__ = ("_buf", "_chunk_size", "_failed", "_max", "_need_body", "_reasm", "transport")

    def __init__(
        self,
        transport: Transport,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        chunk_size: int = MAX_CHUNK,
    ) -> None:
        self.transport = transport
        self._max = max_message_size
        self._chunk_size = _check_chunk_size(chunk_size)
        self._reasm = Reassembler(max_message_size, chunk_size)
        self._buf = bytearray()
        self._need_body: int | None = None  # body size (with MAC) once a header is decrypted
        self._failed = False

    @property
    def mid_message(self) -> bool:
        """True if bytes of an unfinished packet or message are buffered (EOF now = truncation)."""
        return bool(self._buf) or self._need_body is not None or self._reasm.pending

    def encode(self, message: bytes) -> bytes:
        """The bytes to write for `message`: its frames, each encrypted as one packet."""
        if len(message) > self._max:
            raise ValueError(f"message of {len(message)} bytes exceeds the {self._max}-byte limit")
        encrypt = self.transport.encrypt_message
        return b"".join(encrypt(frame) for frame in split_message(message, self._chunk_size))

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes read from the socket; returns the messages they complete (maybe none)."""
        if self._failed:
            raise NoiseStateError("message stream already failed; the connection must be dropped")
        self._buf += data
        buf = self._buf
        out: list[bytes] = []
        pos = 0  # consumed bytes; deleted once at the end, not per packet (no quadratic copy)
        try:
            while True:
                if self._need_body is None:
                    if len(buf) - pos < HEADER_SIZE:
                        break
                    length = self.transport.decrypt_length(bytes(buf[pos : pos + HEADER_SIZE]))
                    pos += HEADER_SIZE
                    self._need_body = length + MAC_SIZE
                if len(buf) - pos < self._need_body:
                    break
                end = pos + self._need_body
                frame = self.transport.decrypt_body(bytes(buf[pos:end]))
                pos = end
                self._need_body = None
                message = self._reasm.push(frame)
                if message is not None:
                    out.append(message)
        except WireError:
            self._failed = True
            buf.clear()
            raise
        del buf[:pos]
        return out
