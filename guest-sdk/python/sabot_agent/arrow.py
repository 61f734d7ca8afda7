"""A small Arrow IPC stream reader and writer for agents (there is no pyarrow for Wasm).

Supported column types: ``null``; signed and unsigned integers of 8, 16, 32 and 64 bits;
``float32`` and ``float64``; ``bool``; ``utf8`` and ``large_utf8``; ``binary`` and
``large_binary``; ``timestamp`` (any unit, with or without a time zone, as integers in that unit);
``date32`` (days) and ``date64`` (ms); ``list_`` of any of these (values as Python lists). Every
column may hold nulls (``None``). Other types (dictionaries, structs, decimals…) are refused with an error that names the column and its
type. Compressed buffers are refused too: the host never compresses.

Columns are decoded lazily: a batch keeps the received buffers and turns a column into a Python
list only when the agent reads it. ``RecordBatch.take`` copies the chosen rows' bytes straight
from those buffers, so an agent that reads a few columns and forwards a few rows never pays for
the rest.

The flatbuffer metadata (``Message.fbs``, ``Schema.fbs`` of the Arrow format) is read and written
with the ``flatbuffers`` runtime library.
"""

from __future__ import annotations

import struct
from array import array
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import flatbuffers
from flatbuffers import number_types as N
from flatbuffers.table import Table

__all__ = [
    "DataType",
    "Field",
    "Schema",
    "Column",
    "RecordBatch",
    "StreamDecoder",
    "encode_batch",
    "ArrowError",
    "null",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float32",
    "float64",
    "bool_",
    "utf8",
    "large_utf8",
    "binary",
    "large_binary",
    "timestamp",
    "date32",
    "date64",
    "list_",
]


class ArrowError(ValueError):
    """Bytes that are not an Arrow IPC stream this module reads, or a column it cannot hold."""


# Type ids of the `Type` union in Schema.fbs.
_NULL, _INT, _FLOAT, _BINARY, _UTF8, _BOOL = 1, 2, 3, 4, 5, 6
_DATE, _TIMESTAMP, _LIST, _LARGE_BINARY, _LARGE_UTF8 = 8, 10, 12, 19, 20
_TYPE_NAMES = {
    7: "decimal",
    9: "time",
    11: "interval",
    13: "struct",
    14: "union",
    15: "fixed_size_binary",
    16: "fixed_size_list",
    17: "map",
    18: "duration",
    21: "large_list",
    22: "run_end_encoded",
    23: "binary_view",
    24: "utf8_view",
}
_UNITS = ["s", "ms", "us", "ns"]

# Message header types and the metadata version written (V5).
_SCHEMA, _DICTIONARY, _RECORD_BATCH = 1, 2, 3
_V5 = 4
_CONTINUATION = 0xFFFFFFFF


class DataType:
    """A column type. Compare with ``==``; build with the module's constructors (``int64``…)."""

    __slots__ = ("kind", "bits", "signed", "unit", "tz", "child")

    def __init__(self, kind: int, bits: int = 0, signed: bool = False, unit: str = "", tz: Optional[str] = None,
                 child: Optional["Field"] = None):
        self.kind = kind
        self.bits = bits
        self.signed = signed
        self.unit = unit
        self.tz = tz
        # A list's element field.
        self.child = child

    def _key(self) -> tuple:
        child = self.child
        return (self.kind, self.bits, self.signed, self.unit, self.tz,
                None if child is None else (child.name, child.type._key(), child.nullable))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DataType) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        k = self.kind
        if k == _INT:
            return f"{'int' if self.signed else 'uint'}{self.bits}"
        if k == _FLOAT:
            return f"float{self.bits}"
        if k == _TIMESTAMP:
            return f"timestamp[{self.unit}{', ' + self.tz if self.tz else ''}]"
        if k == _DATE:
            return "date32" if self.unit == "day" else "date64"
        if k == _LIST:
            return f"list<{self.child.type!r}>"
        return {
            _NULL: "null",
            _BOOL: "bool",
            _UTF8: "utf8",
            _LARGE_UTF8: "large_utf8",
            _BINARY: "binary",
            _LARGE_BINARY: "large_binary",
        }[k]

    # Layout: the `array` typecode of the values of a fixed-width type, '' otherwise.
    @property
    def _code(self) -> str:
        if self.kind == _INT:
            code = {8: "b", 16: "h", 32: "i", 64: "q"}[self.bits]
            return code if self.signed else code.upper()
        if self.kind == _FLOAT:
            return "f" if self.bits == 32 else "d"
        if self.kind == _TIMESTAMP or (self.kind == _DATE and self.unit == "ms"):
            return "q"
        if self.kind == _DATE:
            return "i"
        return ""

    @property
    def _variable(self) -> bool:
        return self.kind in (_UTF8, _BINARY, _LARGE_UTF8, _LARGE_BINARY)

    @property
    def _large(self) -> bool:
        return self.kind in (_LARGE_UTF8, _LARGE_BINARY)


null = DataType(_NULL)
int8, int16, int32, int64 = (DataType(_INT, b, True) for b in (8, 16, 32, 64))
uint8, uint16, uint32, uint64 = (DataType(_INT, b, False) for b in (8, 16, 32, 64))
float32, float64 = DataType(_FLOAT, 32), DataType(_FLOAT, 64)
bool_ = DataType(_BOOL)
utf8, large_utf8 = DataType(_UTF8), DataType(_LARGE_UTF8)
binary, large_binary = DataType(_BINARY), DataType(_LARGE_BINARY)
date32, date64 = DataType(_DATE, unit="day"), DataType(_DATE, unit="ms")


def list_(element: DataType, nullable: bool = True, name: str = "item") -> DataType:
    """A list type of ``element`` values (its field named ``name``, as Arrow names it)."""
    if element.kind == _LIST:
        raise ArrowError("a list of lists is not supported")
    return DataType(_LIST, child=Field(name, element, nullable))


def timestamp(unit: str = "ms", tz: Optional[str] = None) -> DataType:
    """A timestamp type: ``unit`` is ``"s"``, ``"ms"``, ``"us"`` or ``"ns"``."""
    if unit not in _UNITS:
        raise ArrowError(f"a timestamp unit is one of {_UNITS}, got {unit!r}")
    return DataType(_TIMESTAMP, unit=unit, tz=tz)


class Field:
    """A column's name, type and whether it may hold nulls."""

    __slots__ = ("name", "type", "nullable")

    def __init__(self, name: str, type: DataType, nullable: bool = True):
        self.name = name
        self.type = type
        self.nullable = nullable

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Field)
            and (self.name, self.type, self.nullable) == (other.name, other.type, other.nullable)
        )

    def __repr__(self) -> str:
        return f"Field({self.name!r}, {self.type!r}{'' if self.nullable else ', not null'})"


Schema = List[Field]

_BIT = [1 << i for i in range(8)]


def _bits(data: bytes, n: int) -> List[bool]:
    # Bitmap to booleans: a byte at a time through a table of the 256 byte values.
    out: List[bool] = []
    extend = out.extend
    table = _BYTE_BITS
    for byte in data[: (n + 7) >> 3]:
        extend(table[byte])
    del out[n:]
    return out


_BYTE_BITS = [tuple(bool(b >> i & 1) for i in range(8)) for b in range(256)]


def _pack_bits(flags: Iterable[bool], n: int) -> bytes:
    out = bytearray((n + 7) >> 3)
    for i, flag in enumerate(flags):
        if flag:
            out[i >> 3] |= _BIT[i & 7]
    return bytes(out)


class Column:
    """One column of a batch: its raw Arrow buffers, turned into a list on first use."""

    __slots__ = ("type", "length", "null_count", "validity", "offsets", "data", "child", "_list")

    def __init__(self, type: DataType, length: int, null_count: int, validity: Optional[bytes],
                 offsets: Optional[memoryview], data: Optional[memoryview], child: Optional["Column"] = None):
        self.type = type
        self.length = length
        self.null_count = null_count
        self.validity = validity
        self.offsets = offsets
        self.data = data
        # A list's values, which `offsets` slice.
        self.child = child
        self._list: Optional[List[Any]] = None

    @classmethod
    def from_values(cls, type: DataType, values: Sequence[Any], name: str = "?") -> "Column":
        """A column of ``type`` from Python values (``None`` for null)."""
        n = len(values)
        nulls = [v is None for v in values]
        null_count = sum(nulls)
        validity = _pack_bits((not x for x in nulls), n) if null_count else None
        try:
            if type.kind == _NULL:
                if null_count != n:
                    raise ArrowError("a null column holds only None")
                col = cls(type, n, n, None, None, None)
            elif type.kind == _BOOL:
                col = cls(type, n, null_count, validity, None,
                          memoryview(_pack_bits((bool(v) for v in values), n)))
            elif type.kind == _LIST:
                flat: List[Any] = []
                offs = array("i", [0]) * (n + 1)
                for i, v in enumerate(values):
                    if v is not None:
                        flat.extend(v)
                    offs[i + 1] = len(flat)
                child = cls.from_values(type.child.type, flat, f"{name}.{type.child.name}")
                col = cls(type, n, null_count, validity, memoryview(offs.tobytes()).cast("i"), None, child)
            elif type._variable:
                text = type.kind in (_UTF8, _LARGE_UTF8)
                parts = [b"" if v is None else (v.encode() if text else bytes(v)) for v in values]
                offs = array("q" if type._large else "i", [0]) * (n + 1)
                at = 0
                for i, p in enumerate(parts):
                    at += len(p)
                    offs[i + 1] = at
                col = cls(type, n, null_count, validity, memoryview(offs.tobytes()).cast(offs.typecode),
                          memoryview(b"".join(parts)))
            else:
                zero = 0.0 if type.kind == _FLOAT else 0
                raw = array(type._code, [zero if v is None else v for v in values])
                col = cls(type, n, null_count, validity, None, memoryview(raw.tobytes()))
        except (TypeError, OverflowError, AttributeError, UnicodeEncodeError) as e:
            raise ArrowError(f"column `{name}` of type {type!r}: a value does not fit: {e}") from None
        col._list = list(values)
        return col

    def to_list(self) -> List[Any]:
        """The column's values (``None`` for null). Computed once, then shared: do not mutate."""
        if self._list is None:
            self._list = self._decode()
        return self._list

    def _decode(self) -> List[Any]:
        t, n = self.type, self.length
        if t.kind == _NULL:
            return [None] * n
        if t.kind == _BOOL:
            values: List[Any] = _bits(self.data, n)
        elif t.kind == _LIST:
            items = self.child.to_list()
            o = self.offsets[: n + 1].tolist()
            values = [items[o[i]:o[i + 1]] for i in range(n)]
        elif t._variable:
            o = self.offsets
            d = bytes(self.data[o[0]:o[n]]) if n else b""
            base = o[0] if n else 0
            offs = [x - base for x in o[: n + 1].tolist()] if base else o[: n + 1].tolist()
            if t.kind in (_UTF8, _LARGE_UTF8):
                text = d.decode()
                if len(text) == len(d):
                    # ASCII: byte offsets are string offsets; one decode for the whole column.
                    values = [text[offs[i]:offs[i + 1]] for i in range(n)]
                else:
                    values = [d[offs[i]:offs[i + 1]].decode() for i in range(n)]
            else:
                values = [d[offs[i]:offs[i + 1]] for i in range(n)]
        else:
            values = self.data.cast(t._code)[:n].tolist()
        if self.null_count:
            valid = _bits(self.validity, n)
            values = [v if ok else None for v, ok in zip(values, valid)]
        return values

    def take(self, rows: Sequence[int]) -> "Column":
        """The values at ``rows``, copied from the buffers without decoding the others."""
        t, n = self.type, len(rows)
        if t.kind == _LIST:
            values = self.to_list()
            return Column.from_values(t, [values[i] for i in rows])
        if self._list is not None and not t._variable and t.kind != _BOOL:
            src = self._list
            return Column.from_values(t, [src[i] for i in rows])
        if t.kind == _NULL:
            return Column(t, n, n, None, None, None)
        validity = None
        null_count = 0
        if self.null_count:
            valid = _bits(self.validity, self.length)
            flags = [valid[i] for i in rows]
            null_count = n - sum(flags)
            validity = _pack_bits(flags, n) if null_count else None
        if t.kind == _BOOL:
            bits = _bits(self.data, self.length)
            return Column(t, n, null_count, validity, None, memoryview(_pack_bits((bits[i] for i in rows), n)))
        if t._variable:
            o = self.offsets
            d = self.data
            parts = [d[o[i]:o[i + 1]] for i in rows]
            offs = array("q" if t._large else "i", [0]) * (n + 1)
            at = 0
            for i, p in enumerate(parts):
                at += len(p)
                offs[i + 1] = at
            return Column(t, n, null_count, validity, memoryview(offs.tobytes()).cast(offs.typecode),
                          memoryview(b"".join(parts)))
        w = t.bits // 8 if t.kind in (_INT, _FLOAT) else (4 if t._code == "i" else 8)
        d = self.data
        return Column(t, n, null_count, validity, None, memoryview(b"".join([d[i * w:(i + 1) * w] for i in rows])))


class RecordBatch:
    """Rows under a schema, column by column. Build one with ``RecordBatch.from_columns``."""

    __slots__ = ("schema", "columns", "num_rows")

    def __init__(self, schema: Schema, columns: List[Column], num_rows: int):
        self.schema = schema
        self.columns = columns
        self.num_rows = num_rows

    @classmethod
    def from_columns(cls, columns: Iterable[Tuple[str, DataType, Sequence[Any]]]) -> "RecordBatch":
        """A batch from ``(name, type, values)`` triples; every column must have as many values."""
        schema: Schema = []
        cols: List[Column] = []
        rows = None
        for name, type, values in columns:
            if rows is None:
                rows = len(values)
            elif len(values) != rows:
                raise ArrowError(f"column `{name}` has {len(values)} values; the columns before it have {rows}")
            col = Column.from_values(type, values, name)
            schema.append(Field(name, type, col.null_count > 0 or type.kind == _NULL))
            cols.append(col)
        return cls(schema, cols, rows or 0)

    @property
    def column_names(self) -> List[str]:
        return [f.name for f in self.schema]

    def _index(self, name: str) -> int:
        for i, f in enumerate(self.schema):
            if f.name == name:
                return i
        raise KeyError(f"no column `{name}`; the batch has {self.column_names}")

    def field(self, name: str) -> Field:
        return self.schema[self._index(name)]

    def column(self, name: str) -> List[Any]:
        """The values of column ``name`` as a list (``None`` for null)."""
        return self.columns[self._index(name)].to_list()

    def __getitem__(self, name: str) -> List[Any]:
        return self.column(name)

    def __len__(self) -> int:
        return self.num_rows

    def take(self, rows: Sequence[int]) -> "RecordBatch":
        """The rows at the given positions, in that order."""
        rows = list(rows)
        return RecordBatch(list(self.schema), [c.take(rows) for c in self.columns], len(rows))

    def with_column(self, name: str, type: DataType, values: Sequence[Any]) -> "RecordBatch":
        """This batch with one more column (or ``name`` replaced)."""
        if len(values) != self.num_rows:
            raise ArrowError(f"column `{name}` has {len(values)} values; the batch has {self.num_rows} rows")
        col = Column.from_values(type, values, name)
        field = Field(name, type, col.null_count > 0 or type.kind == _NULL)
        schema, columns = list(self.schema), list(self.columns)
        try:
            i = self._index(name)
            schema[i], columns[i] = field, col
        except KeyError:
            schema.append(field)
            columns.append(col)
        return RecordBatch(schema, columns, self.num_rows)

    def select(self, names: Sequence[str]) -> "RecordBatch":
        """Only the columns ``names``, in that order."""
        idx = [self._index(n) for n in names]
        return RecordBatch([self.schema[i] for i in idx], [self.columns[i] for i in idx], self.num_rows)

    def to_pydict(self) -> Dict[str, List[Any]]:
        return {f.name: c.to_list() for f, c in zip(self.schema, self.columns)}

    def rows(self) -> Iterator[Dict[str, Any]]:
        """Each row as a dict (the slow, convenient path)."""
        names = self.column_names
        for values in zip(*(c.to_list() for c in self.columns)):
            yield dict(zip(names, values))

    def __repr__(self) -> str:
        return f"RecordBatch({self.num_rows} rows, {self.schema})"


# ---------------------------------------------------------------- reading


def _field_of(t: Table, column: str) -> Tuple[str, DataType, bool]:
    o = t.Offset(4)
    name = t.String(o + t.Pos).decode() if o else ""
    o = t.Offset(6)
    nullable = bool(t.Get(N.BoolFlags, o + t.Pos)) if o else False
    o = t.Offset(8)
    kind = t.Get(N.Uint8Flags, o + t.Pos) if o else 0
    if t.Offset(12):
        raise ArrowError(f"column `{name}` is dictionary-encoded, which this reader does not support")
    o = t.Offset(10)
    tt = Table(t.Bytes, 0)
    if o:
        t.Union(tt, o)

    def slot(i: int, flags, default):
        off = tt.Offset(4 + 2 * i) if o else 0
        return tt.Get(flags, off + tt.Pos) if off else default

    if kind == _INT:
        bits, signed = slot(0, N.Int32Flags, 0), bool(slot(1, N.BoolFlags, False))
        if bits not in (8, 16, 32, 64):
            raise ArrowError(f"column `{name}`: an integer of {bits} bits")
        return name, DataType(_INT, bits, signed), nullable
    if kind == _FLOAT:
        precision = slot(0, N.Int16Flags, 0)
        if precision == 0:
            raise ArrowError(f"column `{name}` is float16, which this reader does not support")
        return name, (float32 if precision == 1 else float64), nullable
    if kind == _TIMESTAMP:
        unit = _UNITS[slot(0, N.Int16Flags, 0)]
        tz_off = tt.Offset(6) if o else 0
        tz = tt.String(tz_off + tt.Pos).decode() if tz_off else None
        return name, DataType(_TIMESTAMP, unit=unit, tz=tz), nullable
    if kind == _DATE:
        return name, (date32 if slot(0, N.Int16Flags, 1) == 0 else date64), nullable
    if kind == _LIST:
        o = t.Offset(14)
        if not o or t.VectorLen(o) != 1:
            raise ArrowError(f"column `{name}`: a list needs one child field")
        child_name, child_type, child_nullable = _field_of(Table(t.Bytes, t.Indirect(t.Vector(o))), f"{name}.item")
        if child_type.kind == _LIST:
            raise ArrowError(f"column `{name}` is a list of lists, which this reader does not support")
        return name, DataType(_LIST, child=Field(child_name, child_type, child_nullable)), nullable
    simple = {_NULL: null, _BOOL: bool_, _UTF8: utf8, _LARGE_UTF8: large_utf8, _BINARY: binary,
              _LARGE_BINARY: large_binary}
    if kind in simple:
        return name, simple[kind], nullable
    raise ArrowError(
        f"column `{name}` has type {_TYPE_NAMES.get(kind, kind)}, which this reader does not support "
        f"(supported: integers, floats, bool, utf8, binary, timestamp, date, null, and lists of them)"
    )


class StreamDecoder:
    """Decodes the batches arriving on one port, keeping the schema between them."""

    def __init__(self) -> None:
        self.schema: Optional[Schema] = None

    def decode(self, data: bytes) -> RecordBatch:
        """Exactly one record batch from ``data``: an optional schema message, then the batch."""
        buf = memoryview(data)
        at = 0
        while at < len(buf):
            meta_start, meta_len = _message_header(buf, at)
            meta = bytes(buf[meta_start:meta_start + meta_len])
            root = Table(meta, N.UOffsetTFlags.py_type(struct.unpack_from("<I", meta, 0)[0]))
            o = root.Offset(6)
            header_type = root.Get(N.Uint8Flags, o + root.Pos) if o else 0
            o = root.Offset(10)
            body_len = root.Get(N.Int64Flags, o + root.Pos) if o else 0
            body_start = meta_start + meta_len
            if body_len < 0 or body_start + body_len > len(buf):
                raise ArrowError(f"a message body of {body_len} bytes runs past the end of the {len(buf)} bytes given")
            header = Table(meta, 0)
            o = root.Offset(8)
            if o:
                root.Union(header, o)
            body = buf[body_start:body_start + body_len]
            at = body_start + body_len
            if header_type == _SCHEMA:
                self.schema = self._schema(header)
            elif header_type == _RECORD_BATCH:
                if self.schema is None:
                    raise ArrowError("a batch arrived before its schema (expected the schema message first)")
                if at != len(buf) and bytes(buf[at:at + 8]) != b"\xff\xff\xff\xff\x00\x00\x00\x00":
                    raise ArrowError(f"{len(buf) - at} unexpected bytes after the record batch")
                return self._batch(header, body)
            elif header_type == _DICTIONARY:
                raise ArrowError("dictionary batches are not supported by this reader")
            else:
                raise ArrowError(f"unexpected IPC message type {header_type} (expected schema or record batch)")
        raise ArrowError(f"IPC bytes ended before a complete record batch ({len(buf)} bytes given)")

    @staticmethod
    def _schema(t: Table) -> Schema:
        o = t.Offset(6)
        fields: Schema = []
        if o:
            start, count = t.Vector(o), t.VectorLen(o)
            for i in range(count):
                ft = Table(t.Bytes, t.Indirect(start + 4 * i))
                name, type, nullable = _field_of(ft, str(i))
                fields.append(Field(name, type, nullable))
        return fields

    def _batch(self, t: Table, body: memoryview) -> RecordBatch:
        o = t.Offset(4)
        length = t.Get(N.Int64Flags, o + t.Pos) if o else 0
        if t.Offset(10):
            raise ArrowError("compressed record batches are not supported")
        o = t.Offset(6)
        nodes = []
        if o:
            start = t.Vector(o)
            for i in range(t.VectorLen(o)):
                nodes.append(struct.unpack_from("<qq", t.Bytes, start + 16 * i))
        o = t.Offset(8)
        buffers = []
        if o:
            start = t.Vector(o)
            for i in range(t.VectorLen(o)):
                off, ln = struct.unpack_from("<qq", t.Bytes, start + 16 * i)
                if off < 0 or ln < 0 or off + ln > len(body):
                    raise ArrowError(f"buffer {i} ({off}+{ln}) runs past the message body of {len(body)} bytes")
                buffers.append(body[off:off + ln])
        schema = self.schema
        node_at, b = 0, 0

        def read(field: Field) -> Column:
            nonlocal node_at, b
            if node_at >= len(nodes):
                raise ArrowError(f"column `{field.name}`: the batch has too few field nodes")
            n, nulls = nodes[node_at]
            node_at += 1
            t_ = field.type
            if t_.kind == _NULL:
                return Column(t_, n, n, None, None, None)
            need = 3 if t_._variable else 2
            if b + need > len(buffers):
                raise ArrowError(f"column `{field.name}`: the batch has too few buffers")
            validity = bytes(buffers[b]) if nulls and len(buffers[b]) else None
            if nulls and validity is None:
                raise ArrowError(f"column `{field.name}` has {nulls} nulls but no validity bitmap")
            if t_._variable or t_.kind == _LIST:
                offsets = buffers[b + 1].cast("q" if t_._large else "i")
                if len(offsets) < n + 1:
                    raise ArrowError(f"column `{field.name}`: {len(offsets)} offsets for {n} values")
            if t_.kind == _LIST:
                b += 2
                child = read(t_.child)
                if n and (offsets[0] < 0 or offsets[n] > child.length or offsets[0] > offsets[n]):
                    raise ArrowError(f"column `{field.name}`: offsets {offsets[0]}..{offsets[n]} outside its {child.length} values")
                return Column(t_, n, nulls, validity, offsets, None, child)
            col = (Column(t_, n, nulls, validity, offsets, buffers[b + 2]) if t_._variable
                   else Column(t_, n, nulls, validity, None, buffers[b + 1]))
            b += need
            return col

        columns = [read(field) for field in schema]
        if node_at != len(nodes):
            raise ArrowError(f"the batch has {len(nodes)} field nodes; the schema has {node_at}")
        return RecordBatch(schema, columns, length)


def _message_header(buf: memoryview, at: int) -> Tuple[int, int]:
    if at + 4 > len(buf):
        raise ArrowError(f"IPC bytes truncated at byte {at} of {len(buf)}")
    (word,) = struct.unpack_from("<I", buf, at)
    if word == _CONTINUATION:
        if at + 8 > len(buf):
            raise ArrowError(f"IPC bytes truncated at byte {at} of {len(buf)}")
        (length,) = struct.unpack_from("<i", buf, at + 4)
        start = at + 8
    else:
        length, start = word, at + 4
    if length <= 0:
        raise ArrowError("an end-of-stream marker where a message was expected")
    if start + length > len(buf):
        raise ArrowError(f"a message of {length} bytes at byte {at} runs past the end of the {len(buf)} bytes given")
    return start, length


# ---------------------------------------------------------------- writing


def _type_table(b: flatbuffers.Builder, t: DataType) -> int:
    if t.kind == _INT:
        b.StartObject(2)
        b.PrependInt32Slot(0, t.bits, 0)
        b.PrependBoolSlot(1, t.signed, False)
    elif t.kind == _FLOAT:
        b.StartObject(1)
        b.PrependInt16Slot(0, 1 if t.bits == 32 else 2, 0)
    elif t.kind == _TIMESTAMP:
        tz = b.CreateString(t.tz) if t.tz else 0
        b.StartObject(2)
        b.PrependInt16Slot(0, _UNITS.index(t.unit), 0)
        if tz:
            b.PrependUOffsetTRelativeSlot(1, tz, 0)
    elif t.kind == _DATE:
        b.StartObject(1)
        b.PrependInt16Slot(0, 0 if t.unit == "day" else 1, 1)
    else:
        b.StartObject(0)
    return b.EndObject()


def _message(b: flatbuffers.Builder, header_type: int, header: int, body_len: int) -> bytes:
    b.StartObject(5)
    b.PrependInt16Slot(0, _V5, 0)
    b.PrependUint8Slot(1, header_type, 0)
    b.PrependUOffsetTRelativeSlot(2, header, 0)
    b.PrependInt64Slot(3, body_len, 0)
    b.Finish(b.EndObject())
    meta = bytes(b.Output())
    meta += b"\x00" * (-(len(meta) + 8) % 8)
    return struct.pack("<Ii", _CONTINUATION, len(meta)) + meta


def _field_table(b: flatbuffers.Builder, f: Field) -> int:
    # Children first: a flatbuffer object is built after the objects it points to.
    child = _field_table(b, f.type.child) if f.type.kind == _LIST else None
    name = b.CreateString(f.name)
    type_table = _type_table(b, f.type)
    b.StartVector(4, 0 if child is None else 1, 4)
    if child is not None:
        b.PrependUOffsetTRelative(child)
    children = b.EndVector()
    b.StartObject(7)
    b.PrependUOffsetTRelativeSlot(0, name, 0)
    b.PrependBoolSlot(1, f.nullable, False)
    b.PrependUint8Slot(2, f.type.kind, 0)
    b.PrependUOffsetTRelativeSlot(3, type_table, 0)
    b.PrependUOffsetTRelativeSlot(5, children, 0)
    return b.EndObject()


def _schema_message(schema: Schema) -> bytes:
    b = flatbuffers.Builder(256)
    fields = [_field_table(b, f) for f in schema]
    b.StartVector(4, len(fields), 4)
    for f in reversed(fields):
        b.PrependUOffsetTRelative(f)
    vec = b.EndVector()
    b.StartObject(4)
    b.PrependUOffsetTRelativeSlot(1, vec, 0)
    return _message(b, _SCHEMA, b.EndObject(), 0)


def _pad(n: int) -> int:
    return -n % 8


def _pairs_vector(b: flatbuffers.Builder, pairs: List[Tuple[int, int]]) -> int:
    """A vector of structs of two int64 fields (``Buffer``: offset, length; ``FieldNode``:
    length, null_count), in order."""
    b.StartVector(16, len(pairs), 8)
    for first, second in reversed(pairs):
        b.Prep(8, 16)
        b.PrependInt64(second)
        b.PrependInt64(first)
    return b.EndVector()


def encode_batch(batch: RecordBatch, with_schema: bool = True) -> bytes:
    """``batch`` as IPC stream messages: its schema (unless ``with_schema`` is false), then the batch."""
    parts: List[bytes] = []
    buffers: List[Tuple[int, int]] = []
    nodes: List[Tuple[int, int]] = []
    at = 0

    def add(data: Optional[bytes]) -> None:
        nonlocal at
        if data is None or len(data) == 0:
            buffers.append((at, 0))
            return
        data = bytes(data)
        buffers.append((at, len(data)))
        parts.append(data)
        pad = _pad(len(data))
        if pad:
            parts.append(b"\x00" * pad)
        at += len(data) + pad

    def write(col: Column) -> None:
        t, n = col.type, col.length
        nodes.append((n, col.null_count))
        if t.kind == _NULL:
            return
        add(col.validity if col.null_count else None)
        if t.kind == _LIST:
            # The offsets as they are (they may start past 0), and the whole child.
            add(col.offsets[: n + 1].tobytes() if n else array("i", [0]).tobytes())
            write(col.child)
        elif t._variable:
            o = col.offsets
            base = o[0] if n else 0
            if base:
                shifted = array(o.format, [x - base for x in o[: n + 1].tolist()])
                add(shifted.tobytes())
            else:
                add(o[: n + 1].tobytes() if n else array(o.format if o is not None else "i", [0]).tobytes())
            add(col.data[base:o[n]] if n else b"")
        elif t.kind == _BOOL:
            add(col.data[: (n + 7) >> 3])
        else:
            add(col.data[: n * array(t._code).itemsize])

    for col in batch.columns:
        write(col)

    b = flatbuffers.Builder(256)
    buf_vec = _pairs_vector(b, buffers)
    node_vec = _pairs_vector(b, nodes)
    b.StartObject(5)
    b.PrependInt64Slot(0, batch.num_rows, 0)
    b.PrependUOffsetTRelativeSlot(1, node_vec, 0)
    b.PrependUOffsetTRelativeSlot(2, buf_vec, 0)
    header = b.EndObject()
    message = _message(b, _RECORD_BATCH, header, at)
    head = _schema_message(batch.schema) if with_schema else b""
    return head + message + b"".join(parts)
