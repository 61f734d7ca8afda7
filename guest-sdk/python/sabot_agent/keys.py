"""State keys, encoded as the host encodes the agent's key column: integers as little-endian bytes
of their own width, strings as UTF-8, binary as is."""

from typing import Any, List, Union

from .arrow import RecordBatch, ArrowError, _INT, _UTF8, _LARGE_UTF8, _BINARY, _LARGE_BINARY

Key = Union[int, str, bytes]


def state_key(value: Key) -> bytes:
    """The key of one value: an ``int`` as an Int64 key (8 bytes), a ``str`` as UTF-8, bytes as is.
    Use :func:`keys_of` for key columns of other integer widths."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, int):
        return value.to_bytes(8, "little", signed=True)
    raise TypeError(f"a state key is an int (Int64), a str or bytes; got {type(value).__name__} {value!r}")


def keys_of(batch: RecordBatch, column: str) -> List[bytes]:
    """The state key of every row of ``column``, straight from its buffer."""
    col = batch.columns[batch._index(column)]
    t = col.type
    if t.kind == _INT:
        w = t.bits // 8
        d = bytes(col.data[: col.length * w])
        return [d[i:i + w] for i in range(0, len(d), w)]
    if t.kind in (_UTF8, _LARGE_UTF8):
        return [v.encode() for v in col.to_list()]
    if t.kind in (_BINARY, _LARGE_BINARY):
        return list(col.to_list())
    raise ArrowError(f"a key column is an integer, utf8 or binary column; `{column}` is {t!r}")
