"""Check a pickle's length fields against the file size before the unpickler allocates anything.

The C unpickler allocates the buffer of a counted opcode (``BINBYTES8``, ``BINUNICODE8``,
``BYTEARRAY8``, ``FRAME`` ...) from the length the file *claims* before it reads a byte of it,
and grows its memo table to whatever index a ``LONG_BINPUT`` names: a 60-byte file can thus ask
for a terabyte (``MemoryError``) or make the process touch 32 GiB of memo. :func:`check_claims`
walks the opcode stream once, without decoding any payload (it jumps over them), and raises
:class:`ClaimTooLarge` when

* a counted payload or a frame is longer than what is left of the file, or
* a memo index is larger than the number of opcodes read so far (a pickler numbers its memo
  entries in order, so a genuine index never exceeds that count).

Anything else unusual (an unknown opcode, a truncated stream) ends the walk quietly: the
unpickler itself then reports it. The walk costs one pass over the opcodes (payloads are
skipped), about a second for a million opcodes; dataset pickles hold few opcodes and large
payloads.
"""

from __future__ import annotations

import mmap
import pickletools
from pathlib import Path

_FIXED, _LINE, _LINE2, _COUNTED, _FRAME, _STOP = range(6)
_PUT_TEXT = ord("p")
_PUT_BIN = {ord("q"), ord("r")}  # BINPUT (uint1), LONG_BINPUT (uint4)


def _table() -> dict[int, tuple[int, int, bool]]:
    """opcode byte -> (kind, width, signed) from pickletools' descriptions of the opcodes."""
    out: dict[int, tuple[int, int, bool]] = {}
    widths = {pickletools.TAKEN_FROM_ARGUMENT1: (1, False),
              pickletools.TAKEN_FROM_ARGUMENT4: (4, True),
              pickletools.TAKEN_FROM_ARGUMENT4U: (4, False),
              pickletools.TAKEN_FROM_ARGUMENT8U: (8, False)}
    for op in pickletools.opcodes:
        code = ord(op.code)
        arg = op.arg
        if op.name == "STOP":
            out[code] = (_STOP, 0, False)
        elif op.name == "FRAME":
            out[code] = (_FRAME, 8, False)
        elif arg is None:
            out[code] = (_FIXED, 0, False)
        elif arg.n >= 0:
            out[code] = (_FIXED, arg.n, False)
        elif arg.n == pickletools.UP_TO_NEWLINE:
            two = arg.name == "stringnl_noescape_pair"  # GLOBAL, INST: module\nname\n
            out[code] = (_LINE2 if two else _LINE, 0, False)
        else:
            width, signed = widths[arg.n]
            # the C unpickler reads BINSTRING's length as UNSIGNED (pickletools says signed):
            # 0xffffff4a asks it for 4 GiB; only LONG4 treats a negative length as an error
            out[code] = (_COUNTED, width, signed and op.name == "LONG4")
    return out


_TABLE = _table()
_LIST = [_TABLE.get(code) for code in range(256)]  # faster than a dict lookup per opcode
_NAMES = {ord(op.code): op.name for op in pickletools.opcodes}


class ClaimTooLarge(Exception):
    """A length or memo index in the pickle exceeds what the file can hold."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def check_claims(path: Path) -> None:
    """Raise :class:`ClaimTooLarge` for a length/memo claim the file cannot back (docstring)."""
    size = path.stat().st_size
    if size == 0:
        return
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        _walk(mm, size)


def _walk(mm: mmap.mmap, size: int) -> None:
    from .problems import human_bytes

    pos = ops = 0
    table = _LIST
    while pos < size:
        code = mm[pos]
        entry = table[code]
        if entry is None:
            return
        at = pos
        pos += 1
        ops += 1
        kind, width, signed = entry
        if kind == _FIXED:
            if width:
                if pos + width > size:
                    return
                if code in _PUT_BIN:
                    _memo(int.from_bytes(mm[pos:pos + width], "little"), ops, at)
                pos += width
        elif kind == _COUNTED or kind == _FRAME:
            if pos + width > size:
                return
            length = int.from_bytes(mm[pos:pos + width], "little", signed=signed)
            pos += width
            if length < 0:
                return
            left = size - pos
            if length > left:
                what = "a frame" if kind == _FRAME else f"a {_NAMES[code]} payload"
                raise ClaimTooLarge(
                    f"at byte {at} the file claims {what} of {human_bytes(length)}, but only "
                    f"{human_bytes(left)} of the {human_bytes(size)} file follow")
            if kind == _COUNTED:
                pos += length
        elif kind == _LINE or kind == _LINE2:
            end = mm.find(b"\n", pos)
            if end < 0:
                return
            if code == _PUT_TEXT:  # parsed as the C unpickler does: " +4_294_967_280" counts
                try:
                    index = int(mm[pos:end])
                except ValueError:
                    index = None  # the unpickler refuses the line itself
                if index is not None:
                    _memo(index, ops, at)
            pos = end + 1
            if kind == _LINE2:
                end = mm.find(b"\n", pos)
                if end < 0:
                    return
                pos = end + 1
        else:  # STOP
            return


def _memo(index: int, ops: int, at: int) -> None:
    if index > ops:
        raise ClaimTooLarge(
            f"at byte {at} the file stores memo entry {index} after only {ops} opcodes; a "
            f"pickler numbers its memo entries in order, and honouring this index would make "
            f"the unpickler allocate a memo table of {index + 1} entries")
