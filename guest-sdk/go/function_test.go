package agent

import (
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// double: amount × 2, NULL for NULL.
var double = Function{
	Name:    "double",
	Args:    []arrow.DataType{arrow.PrimitiveTypes.Float64},
	Returns: arrow.PrimitiveTypes.Float64,
	Call: func(args []arrow.Array) (arrow.Array, error) {
		in := args[0].(*array.Float64)
		b := array.NewFloat64Builder(memory.DefaultAllocator)
		defer b.Release()
		for i := range in.Len() {
			if in.IsNull(i) {
				b.AppendNull()
			} else {
				b.Append(2 * in.Value(i))
			}
		}
		return b.NewArray(), nil
	},
}

var total = Aggregate("total", func() float64 { return 0 },
	func(acc float64, v float64) float64 { return acc + v },
	func(acc float64) (float64, bool) { return acc, acc != 0 })

func configured(t *testing.T, config string) Agent {
	t.Helper()
	a, err := newFunctionAgent([]byte(config), []Function{double, total})
	if err != nil {
		t.Fatalf("%s: %v", config, err)
	}
	return a
}

func TestAFunctionAppendsItsResultToEveryRow(t *testing.T) {
	rec := sample(t)
	defer rec.Release()
	outs, err := configured(t, `{"function": "DOUBLE", "args": ["amount"], "output": "twice"}`).Process(rec, 0)
	if err != nil || len(outs) != 1 {
		t.Fatalf("%v %v", outs, err)
	}
	got := outs[0].Batch
	if got.NumCols() != 5 || got.Schema().Field(4).Name != "twice" {
		t.Fatalf("columns: %v", got.Schema())
	}
	twice := got.Column(4).(*array.Float64)
	if twice.Value(0) != 3 || !twice.IsNull(1) || twice.Value(3) != 9 {
		t.Fatalf("results: %v", twice)
	}
}

func TestABatchWithoutRowsIsAnsweredWithTheResultColumn(t *testing.T) {
	rec := sample(t)
	defer rec.Release()
	empty := rec.NewSlice(0, 0)
	defer empty.Release()
	outs, err := configured(t, `{"function": "double", "args": ["amount"], "output": "twice"}`).Process(empty, 0)
	if err != nil || len(outs) != 1 || outs[0].Batch.NumRows() != 0 {
		t.Fatalf("%v %v", outs, err)
	}
	if f := outs[0].Batch.Schema().Field(4); f.Name != "twice" || f.Type.ID() != arrow.FLOAT64 {
		t.Fatalf("answer: %v", outs[0].Batch.Schema())
	}
}

func TestMistakenCallsAreRefusedNamingTheSignature(t *testing.T) {
	cases := []struct{ config, want string }{
		{`{"function": "nope", "args": [], "output": "x"}`, "this module has no function `nope` (functions: double, total)"},
		{`{"function": "double", "args": ["amount", "id"], "output": "x"}`, "double takes 1 argument(s), double(Float64) -> Float64; the call gives 2"},
		{`{"fn": "double"}`, `a function module is configured with {"function": NAME, "args": [COLUMN, …], "output": COLUMN}`},
	}
	for _, c := range cases {
		_, err := newFunctionAgent([]byte(c.config), []Function{double, total})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.config, err, c.want)
		}
	}
	rec := sample(t)
	defer rec.Release()
	_, err := configured(t, `{"function": "double", "args": ["id"], "output": "x"}`).Process(rec, 0)
	want := "double(Float64) -> Float64: argument 1 (`id`) is Int64, expected Float64 (CAST it)"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
}

func TestAnAggregateFoldsEachListSkippingNulls(t *testing.T) {
	b := array.NewListBuilder(memory.DefaultAllocator, arrow.PrimitiveTypes.Float64)
	defer b.Release()
	values := b.ValueBuilder().(*array.Float64Builder)
	b.Append(true)
	values.AppendValues([]float64{1, 2, 3}, []bool{true, false, true})
	b.AppendNull()
	b.Append(true) // empty: the result says NULL
	lists := b.NewArray()
	defer lists.Release()
	schema := arrow.NewSchema([]arrow.Field{{Name: "values", Type: lists.DataType(), Nullable: true}}, nil)
	rec := array.NewRecordBatch(schema, []arrow.Array{lists}, 3)
	defer rec.Release()
	outs, err := configured(t, `{"function": "total", "args": ["values"], "output": "t"}`).Process(rec, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := outs[0].Batch.Column(1).(*array.Float64)
	if got.Value(0) != 4 || !got.IsNull(1) || !got.IsNull(2) {
		t.Fatalf("totals: %v", got)
	}
}
