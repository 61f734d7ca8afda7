"""The SDK's Arrow IPC codec against pyarrow, the reference implementation, both ways."""

import random

import pyarrow as pa
import pytest

from sabot_agent import arrow as A


def stream_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        for b in table.to_batches() or [pa.RecordBatch.from_pylist([], schema=table.schema)]:
            w.write_batch(b)
    return sink.getvalue().to_pybytes()


def read_back(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(data + b"\xff\xff\xff\xff\x00\x00\x00\x00").read_all()


def sample(n: int, seed: int) -> pa.Table:
    rng = random.Random(seed)

    def maybe(v):
        return None if rng.random() < 0.2 else v

    return pa.table(
        {
            "i8": pa.array([maybe(rng.randint(-128, 127)) for _ in range(n)], pa.int8()),
            "i16": pa.array([maybe(rng.randint(-(2**15), 2**15 - 1)) for _ in range(n)], pa.int16()),
            "i32": pa.array([maybe(rng.randint(-(2**31), 2**31 - 1)) for _ in range(n)], pa.int32()),
            "i64": pa.array([rng.randint(-(2**63), 2**63 - 1) for _ in range(n)], pa.int64()),
            "u8": pa.array([maybe(rng.randint(0, 255)) for _ in range(n)], pa.uint8()),
            "u64": pa.array([maybe(rng.randint(0, 2**64 - 1)) for _ in range(n)], pa.uint64()),
            "f32": pa.array([maybe(float(rng.randint(-1000, 1000)) / 4) for _ in range(n)], pa.float32()),
            "f64": pa.array([maybe(rng.random() * 1e6) for _ in range(n)], pa.float64()),
            "b": pa.array([maybe(rng.random() < 0.5) for _ in range(n)], pa.bool_()),
            "s": pa.array([maybe("".join(rng.choice("aé€😀z") for _ in range(rng.randint(0, 6)))) for _ in range(n)], pa.string()),
            "ls": pa.array([maybe("x" * rng.randint(0, 3)) for _ in range(n)], pa.large_string()),
            "bin": pa.array([maybe(bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 4)))) for _ in range(n)], pa.binary()),
            "ts": pa.array([maybe(rng.randint(0, 2**40)) for _ in range(n)], pa.timestamp("ms")),
            "tsz": pa.array([maybe(rng.randint(0, 2**50)) for _ in range(n)], pa.timestamp("us", tz="UTC")),
            "d32": pa.array([maybe(rng.randint(0, 20000)) for _ in range(n)], pa.date32()),
            "nul": pa.nulls(n),
            "lf": pa.array(
                [maybe([maybe(rng.random()) for _ in range(rng.randint(0, 4))]) for _ in range(n)],
                pa.list_(pa.float64()),
            ),
            "lstr": pa.array([maybe(["ab"[: rng.randint(0, 2)]] * rng.randint(0, 3)) for _ in range(n)], pa.list_(pa.string())),
        }
    )


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 1000])
def test_every_supported_type_reads_as_pyarrow_wrote_it(n):
    table = sample(n, n)
    batch = A.StreamDecoder().decode(stream_bytes(table)[:-8])
    assert batch.num_rows == n
    assert batch.column_names == table.column_names
    expected = table.to_pydict()
    for name in table.column_names:
        got = batch.column(name)
        want = expected[name]
        if name in ("ts", "tsz", "d32"):
            want = table.column(name).cast(pa.int64() if name != "d32" else pa.int32()).to_pylist()
        assert got == want, name


@pytest.mark.parametrize("n", [0, 1, 9, 1000])
def test_pyarrow_reads_what_the_sdk_writes(n):
    table = sample(n, 100 + n)
    batch = A.StreamDecoder().decode(stream_bytes(table)[:-8])
    again = read_back(A.encode_batch(batch))
    assert again.schema.names == table.schema.names
    assert again.equals(table), (again, table)


def test_take_copies_the_chosen_rows_of_every_type():
    table = sample(300, 5)
    batch = A.StreamDecoder().decode(stream_bytes(table)[:-8])
    rows = [299, 0, 17, 17, 150]
    got = read_back(A.encode_batch(batch.take(rows)))
    assert got.equals(table.take(pa.array(rows))), got


def test_take_after_a_column_was_read_agrees_with_the_buffers():
    table = sample(50, 6)
    batch = A.StreamDecoder().decode(stream_bytes(table)[:-8])
    batch.column("i64"), batch.column("f64"), batch.column("s")
    got = read_back(A.encode_batch(batch.take([3, 1])))
    assert got.equals(table.take(pa.array([3, 1])))


def test_a_batch_without_schema_uses_the_ports_earlier_schema():
    table = sample(20, 7)
    data = stream_bytes(table)[:-8]
    d = A.StreamDecoder()
    d.decode(data)
    schema_len = len(A._schema_message(d.schema))
    second = A.encode_batch(d.decode(data).take([1, 2]), with_schema=False)
    assert d.decode(second).num_rows == 2
    assert schema_len > 0


def test_built_columns_and_an_added_column_round_trip():
    batch = A.RecordBatch.from_columns(
        [("id", A.int64, [1, 2, None]), ("name", A.utf8, ["a", None, "ccc"]), ("ok", A.bool_, [True, False, None])]
    )
    batch = batch.with_column("score", A.float64, [0.5, None, 2.0])
    got = read_back(A.encode_batch(batch))
    assert got.to_pydict() == {
        "id": [1, 2, None],
        "name": ["a", None, "ccc"],
        "ok": [True, False, None],
        "score": [0.5, None, 2.0],
    }


def test_a_batch_before_any_schema_is_refused():
    table = sample(3, 8)
    d = A.StreamDecoder()
    batch = d.decode(stream_bytes(table)[:-8])
    with pytest.raises(A.ArrowError, match="before its schema"):
        A.StreamDecoder().decode(A.encode_batch(batch, with_schema=False))


@pytest.mark.parametrize("cut", [1, 7, 20, 100])
def test_truncated_bytes_are_refused_with_a_clear_error(cut):
    data = stream_bytes(sample(10, 9))[:-8]
    with pytest.raises(A.ArrowError):
        A.StreamDecoder().decode(data[: len(data) - cut])


def test_an_unsupported_type_names_the_column():
    table = pa.table({"ok": [1], "tags": pa.array([{"a": 1}], pa.struct([("a", pa.int64())]))})
    with pytest.raises(A.ArrowError, match="column `tags` has type struct"):
        A.StreamDecoder().decode(stream_bytes(table)[:-8])


def test_a_value_that_does_not_fit_names_the_column():
    with pytest.raises(A.ArrowError, match="column `small`"):
        A.RecordBatch.from_columns([("small", A.int8, [1000])])


def test_built_list_columns_round_trip():
    batch = A.RecordBatch.from_columns([("values", A.list_(A.float64), [[1.5, None], None, [], [2.0]])])
    got = read_back(A.encode_batch(batch))
    assert got.schema.field("values").type == pa.list_(pa.float64())
    assert got.to_pydict() == {"values": [[1.5, None], None, [], [2.0]]}


def test_a_list_whose_offsets_run_past_its_values_is_refused():
    batch = A.RecordBatch.from_columns([("values", A.list_(A.int64), [[1, 2], [3]])])
    col = batch.columns[0]
    col.child = A.Column.from_values(A.int64, [1])
    with pytest.raises(A.ArrowError, match="column `values`: offsets 0..3 outside its 1 values"):
        A.StreamDecoder().decode(A.encode_batch(batch))
