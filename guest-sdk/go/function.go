package agent

// Functions that SQL calls: `CREATE FUNCTION risk AS 'fx@1.0.0'` makes `risk(amount, country)`
// usable in a SQL pipeline, and `CREATE AGGREGATE median AS 'fx@1.0.0'` makes `median(amount)`
// an aggregate of windowed GROUP BYs. Each call site runs as an agent of the module, configured
// with {"function": NAME, "args": [COLUMN, …], "output": COLUMN}; it returns every row it got
// with the result appended as `output`, one crossing per batch. The SQL planner learns the
// result type by sending a batch with no rows, and a call whose argument types differ is refused
// then, with the signature in the message — the protocol of the Rust SDK's `sabot_sdk::function`.
// [RegisterFunctions] makes a module a function module.

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// Function is a scalar function SQL calls by Name (case-insensitively): Call gets the argument
// columns, already checked to have the Args types and the same length, and returns one value
// per row of type Returns. A NULL argument is Call's to handle.
type Function struct {
	Name    string
	Args    []arrow.DataType
	Returns arrow.DataType
	Call    func(args []arrow.Array) (arrow.Array, error)
}

type call struct {
	Function string   `json:"function"`
	Args     []string `json:"args"`
	Output   string   `json:"output"`
}

type functionAgent struct {
	function Function
	call     call
}

func newFunctionAgent(config []byte, functions []Function) (Agent, error) {
	names := make([]string, len(functions))
	for i, f := range functions {
		names[i] = f.Name
	}
	list := strings.Join(names, ", ")
	var c call
	dec := json.NewDecoder(strings.NewReader(string(config)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil || c.Function == "" || c.Args == nil || c.Output == "" {
		return nil, InvalidConfig("a function module is configured with {\"function\": NAME, \"args\": [COLUMN, …], \"output\": COLUMN}, got %s (functions: %s)", config, list)
	}
	for _, f := range functions {
		if !strings.EqualFold(f.Name, c.Function) {
			continue
		}
		if len(f.Args) != len(c.Args) {
			return nil, InvalidConfig("%s takes %d argument(s), %s; the call gives %d", c.Function, len(f.Args), describe(c.Function, f), len(c.Args))
		}
		return &functionAgent{function: f, call: c}, nil
	}
	return nil, InvalidConfig("this module has no function `%s` (functions: %s)", c.Function, list)
}

// typeName is how the host (arrow-rs) names a type, so that messages read alike from every SDK.
func typeName(t arrow.DataType) string {
	switch t.ID() {
	case arrow.FLOAT64:
		return "Float64"
	case arrow.FLOAT32:
		return "Float32"
	case arrow.INT64:
		return "Int64"
	case arrow.INT32:
		return "Int32"
	case arrow.STRING:
		return "Utf8"
	case arrow.BOOL:
		return "Boolean"
	case arrow.LIST:
		return "List<" + typeName(t.(*arrow.ListType).Elem()) + ">"
	}
	return t.String()
}

func describe(name string, f Function) string {
	args := make([]string, len(f.Args))
	for i, a := range f.Args {
		args[i] = typeName(a)
	}
	return fmt.Sprintf("%s(%s) -> %s", name, strings.Join(args, ", "), typeName(f.Returns))
}

// sameType compares types as the host does: a list by its element type, whatever its field.
func sameType(a, b arrow.DataType) bool {
	if la, ok := a.(*arrow.ListType); ok {
		lb, ok := b.(*arrow.ListType)
		return ok && sameType(la.Elem(), lb.Elem())
	}
	return arrow.TypeEqual(a, b)
}

func (a *functionAgent) Process(batch arrow.RecordBatch, port uint32) ([]Output, error) {
	f, name := a.function, a.call.Function
	schema := batch.Schema()
	args := make([]arrow.Array, len(a.call.Args))
	for i, column := range a.call.Args {
		idx := schema.FieldIndices(column)
		if len(idx) == 0 {
			return nil, InvalidInput(-1, "%s: no column `%s` for argument %d in the batch", name, column, i+1)
		}
		arg := batch.Column(idx[0])
		if !sameType(arg.DataType(), f.Args[i]) {
			return nil, InvalidInput(-1, "%s: argument %d (`%s`) is %s, expected %s (CAST it)", describe(name, f), i+1, column, typeName(arg.DataType()), typeName(f.Args[i]))
		}
		args[i] = arg
	}
	result, err := f.Call(args)
	if err != nil {
		return nil, err
	}
	defer result.Release()
	if int64(result.Len()) != batch.NumRows() || !sameType(result.DataType(), f.Returns) {
		return nil, Internalf("%s returned %d value(s) of type %s for %d row(s); its signature says %s", name, result.Len(), typeName(result.DataType()), batch.NumRows(), typeName(f.Returns))
	}
	fields := make([]arrow.Field, 0, len(schema.Fields())+1)
	cols := make([]arrow.Array, 0, len(schema.Fields())+1)
	for i, field := range schema.Fields() {
		if field.Name != a.call.Output {
			fields = append(fields, field)
			cols = append(cols, batch.Column(i))
		}
	}
	fields = append(fields, arrow.Field{Name: a.call.Output, Type: f.Returns, Nullable: true})
	cols = append(cols, result)
	// Kept even without rows: the planner's question is answered by the schema.
	return []Output{{Port: 0, Batch: array.NewRecordBatch(arrow.NewSchema(fields, nil), cols, batch.NumRows())}}, nil
}

// Value is a Go type an aggregate reads or returns: float64 (Float64), int64 (Int64), int32
// (Int32), string (Utf8) or bool (Boolean).
type Value interface {
	float64 | int64 | int32 | string | bool
}

func dataTypeOf[T Value]() arrow.DataType {
	var zero T
	switch any(zero).(type) {
	case float64:
		return arrow.PrimitiveTypes.Float64
	case int64:
		return arrow.PrimitiveTypes.Int64
	case int32:
		return arrow.PrimitiveTypes.Int32
	case string:
		return arrow.BinaryTypes.String
	default:
		return arrow.FixedWidthTypes.Boolean
	}
}

// valueAt is element i of values (an array of In's type, as the signature checked).
func valueAt[T Value](values arrow.Array, i int) T {
	var v any
	switch c := values.(type) {
	case *array.Float64:
		v = c.Value(i)
	case *array.Int64:
		v = c.Value(i)
	case *array.Int32:
		v = c.Value(i)
	case *array.String:
		v = c.Value(i)
	case *array.Boolean:
		v = c.Value(i)
	}
	return v.(T)
}

func appendValue(b array.Builder, v any) {
	switch x := v.(type) {
	case float64:
		b.(*array.Float64Builder).Append(x)
	case int64:
		b.(*array.Int64Builder).Append(x)
	case int32:
		b.(*array.Int32Builder).Append(x)
	case string:
		b.(*array.StringBuilder).Append(x)
	case bool:
		b.(*array.BooleanBuilder).Append(x)
	}
}

// Aggregate is a function SQL's `CREATE AGGREGATE` calls: the planner collects each group's
// values (of each window) into a list, and this folds each list — create, then add for every
// non-null value in arrival order, then result (false: NULL). Its argument is a List of In,
// its result an Out:
//
//	agent.Aggregate("median", func() []float64 { return nil },
//		func(acc []float64, v float64) []float64 { return append(acc, v) },
//		func(acc []float64) (float64, bool) { … })
func Aggregate[In Value, Acc any, Out Value](name string, create func() Acc, add func(Acc, In) Acc, result func(Acc) (Out, bool)) Function {
	return Function{
		Name:    name,
		Args:    []arrow.DataType{arrow.ListOf(dataTypeOf[In]())},
		Returns: dataTypeOf[Out](),
		Call: func(args []arrow.Array) (arrow.Array, error) {
			lists := args[0].(*array.List)
			values := lists.ListValues()
			offsets := lists.Offsets()
			b := array.NewBuilder(memory.DefaultAllocator, dataTypeOf[Out]())
			defer b.Release()
			b.Reserve(lists.Len())
			for row := range lists.Len() {
				if lists.IsNull(row) {
					b.AppendNull()
					continue
				}
				acc := create()
				for i := int(offsets[row]); i < int(offsets[row+1]); i++ {
					if !values.IsNull(i) {
						acc = add(acc, valueAt[In](values, i))
					}
				}
				if out, ok := result(acc); ok {
					appendValue(b, out)
				} else {
					b.AppendNull()
				}
			}
			return b.NewArray(), nil
		},
	}
}
