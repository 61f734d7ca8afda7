package agent

import (
	"bytes"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

func sample(t *testing.T) arrow.RecordBatch {
	t.Helper()
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "amount", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "ok", Type: arrow.FixedWidthTypes.Boolean},
	}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	b.Field(0).(*array.Int64Builder).AppendValues([]int64{1, 2, 3, -4}, nil)
	b.Field(1).(*array.Float64Builder).AppendValues([]float64{1.5, 0, 3.5, 4.5}, []bool{true, false, true, true})
	b.Field(2).(*array.StringBuilder).AppendValues([]string{"a", "béé", "", "dddd"}, []bool{true, true, false, true})
	b.Field(3).(*array.BooleanBuilder).AppendValues([]bool{true, false, true, false}, nil)
	return b.NewRecordBatch()
}

func TestABatchWithoutItsSchemaIsDecodedWithThePortsSchema(t *testing.T) {
	rec := sample(t)
	defer rec.Release()
	enc := &portEncoder{}
	first, err := enc.encode(rec)
	if err != nil {
		t.Fatal(err)
	}
	second, err := enc.encode(rec)
	if err != nil {
		t.Fatal(err)
	}
	if k, _ := firstMessageType(first); k != headerSchema {
		t.Fatalf("the first batch starts with message type %d, want the schema", k)
	}
	if k, _ := firstMessageType(second); k != 3 {
		t.Fatalf("the second batch starts with message type %d, want a record batch", k)
	}
	dec := &portDecoder{}
	for i, b := range [][]byte{first, second} {
		got, err := dec.decode(b)
		if err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		if !array.RecordEqual(got, rec) {
			t.Fatalf("batch %d decoded as %v, want %v", i, got, rec)
		}
		got.Release()
	}
}

func TestABatchBeforeAnySchemaIsRefused(t *testing.T) {
	rec := sample(t)
	defer rec.Release()
	enc := &portEncoder{}
	_, _ = enc.encode(rec)
	second, _ := enc.encode(rec)
	if _, err := (&portDecoder{}).decode(second); err == nil || !bytes.Contains([]byte(err.Error()), []byte("before its schema")) {
		t.Fatalf("got %v, want an error about the missing schema", err)
	}
}

func TestTheHostsStreamReaderReadsWhatTheEncoderWrites(t *testing.T) {
	rec := sample(t)
	defer rec.Release()
	enc := &portEncoder{}
	a, _ := enc.encode(rec)
	b, _ := enc.encode(rec)
	r, err := ipc.NewReader(bytes.NewReader(append(append([]byte(nil), a...), b...)))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for r.Next() {
		n += int(r.RecordBatch().NumRows())
	}
	if n != 8 {
		t.Fatalf("read %d rows, want 8", n)
	}
}

func TestTakeKeepsTheChosenRowsOfEveryColumn(t *testing.T) {
	rec := sample(t)
	defer rec.Release()
	got := Take(rec, []int{3, 1, 2, 3})
	defer got.Release()
	ids := got.Column(0).(*array.Int64)
	if ids.Value(0) != -4 || ids.Value(1) != 2 || ids.Value(3) != -4 {
		t.Fatalf("ids %v", ids)
	}
	if !got.Column(1).IsNull(1) || !got.Column(2).IsNull(2) {
		t.Fatalf("nulls were not kept: %v", got)
	}
	if got.Column(2).(*array.String).Value(1) != "béé" || !got.Column(3).(*array.Boolean).Value(2) {
		t.Fatalf("values were not kept: %v", got)
	}
}

func TestWithColumnRefusesAColumnOfAnotherLength(t *testing.T) {
	rec := sample(t)
	defer rec.Release()
	if _, err := WithColumn(rec, "reason", Strings([]string{"x"})); err == nil {
		t.Fatal("a one-row column was added to a four-row batch")
	}
	out, err := WithColumn(rec, "reason", Strings([]string{"a", "b", "c", "d"}))
	if err != nil || out.Schema().Field(4).Name != "reason" {
		t.Fatalf("got %v, %v", out, err)
	}
}

func TestKeysAreEncodedAsTheHostEncodesTheKeyColumn(t *testing.T) {
	rec := sample(t)
	defer rec.Release()
	keys, err := KeysOf(rec.Column(0))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(keys[3], []byte{252, 255, 255, 255, 255, 255, 255, 255}) || !bytes.Equal(keys[3], Int64Key(-4)) {
		t.Fatalf("key of -4: %v", keys[3])
	}
	if _, err := KeysOf(rec.Column(1)); err == nil {
		t.Fatal("a float column was accepted as a key column")
	}
}
