package agent

import (
	"encoding/binary"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// KeysOf is the state key of every row of a key column, encoded as the host encodes the agent's
// key column: integers as little-endian bytes of their own width, strings as UTF-8.
func KeysOf(column arrow.Array) ([][]byte, error) {
	n := column.Len()
	keys := make([][]byte, n)
	switch c := column.(type) {
	case *array.Int64:
		buf := make([]byte, 8*n)
		for i := range n {
			binary.LittleEndian.PutUint64(buf[8*i:], uint64(c.Value(i)))
			keys[i] = buf[8*i : 8*i+8 : 8*i+8]
		}
	case *array.Int32:
		buf := make([]byte, 4*n)
		for i := range n {
			binary.LittleEndian.PutUint32(buf[4*i:], uint32(c.Value(i)))
			keys[i] = buf[4*i : 4*i+4 : 4*i+4]
		}
	case *array.Uint64:
		buf := make([]byte, 8*n)
		for i := range n {
			binary.LittleEndian.PutUint64(buf[8*i:], c.Value(i))
			keys[i] = buf[8*i : 8*i+8 : 8*i+8]
		}
	case *array.String:
		for i := range n {
			keys[i] = []byte(c.Value(i))
		}
	case *array.Binary:
		for i := range n {
			keys[i] = c.Value(i)
		}
	default:
		return nil, fmt.Errorf("a state key column is int32, int64, uint64, utf8 or binary; this one is %s", column.DataType())
	}
	return keys, nil
}

// Int64Key is the state key of an Int64 key value.
func Int64Key(v int64) []byte {
	return binary.LittleEndian.AppendUint64(nil, uint64(v))
}

// Take is the rows of batch at indices, in that order.
func Take(batch arrow.RecordBatch, indices []int) arrow.RecordBatch {
	cols := make([]arrow.Array, batch.NumCols())
	for c := range cols {
		cols[c] = takeArray(batch.Column(c), indices)
	}
	out := array.NewRecordBatch(batch.Schema(), cols, int64(len(indices)))
	for _, c := range cols {
		c.Release()
	}
	return out
}

func takeArray(a arrow.Array, indices []int) arrow.Array {
	b := array.NewBuilder(memory.DefaultAllocator, a.DataType())
	defer b.Release()
	b.Reserve(len(indices))
	switch src := a.(type) {
	case *array.Int64:
		dst := b.(*array.Int64Builder)
		for _, i := range indices {
			if src.IsNull(i) {
				dst.AppendNull()
			} else {
				dst.Append(src.Value(i))
			}
		}
	case *array.Float64:
		dst := b.(*array.Float64Builder)
		for _, i := range indices {
			if src.IsNull(i) {
				dst.AppendNull()
			} else {
				dst.Append(src.Value(i))
			}
		}
	case *array.String:
		dst := b.(*array.StringBuilder)
		for _, i := range indices {
			if src.IsNull(i) {
				dst.AppendNull()
			} else {
				dst.Append(src.Value(i))
			}
		}
	case *array.Timestamp:
		dst := b.(*array.TimestampBuilder)
		for _, i := range indices {
			if src.IsNull(i) {
				dst.AppendNull()
			} else {
				dst.Append(src.Value(i))
			}
		}
	default:
		if len(indices) == 0 {
			break
		}
		// Any other type: one slice per row, concatenated (slower, exact).
		slices := make([]arrow.Array, len(indices))
		for k, i := range indices {
			slices[k] = array.NewSlice(a, int64(i), int64(i+1))
		}
		out, err := array.Concatenate(slices, memory.DefaultAllocator)
		for _, sl := range slices {
			sl.Release()
		}
		if err != nil {
			panic(fmt.Sprintf("cannot take rows of a %s column: %v", a.DataType(), err))
		}
		return out
	}
	return b.NewArray()
}

// WithColumn is batch with one more column.
func WithColumn(batch arrow.RecordBatch, name string, column arrow.Array) (arrow.RecordBatch, error) {
	if int64(column.Len()) != batch.NumRows() {
		return nil, fmt.Errorf("column `%s` has %d values; the batch has %d rows", name, column.Len(), batch.NumRows())
	}
	fields := append(append([]arrow.Field(nil), batch.Schema().Fields()...), arrow.Field{Name: name, Type: column.DataType(), Nullable: column.NullN() > 0})
	cols := append(append([]arrow.Array(nil), batch.Columns()...), column)
	return array.NewRecordBatch(arrow.NewSchema(fields, nil), cols, batch.NumRows()), nil
}

// Strings is a UTF-8 column of values.
func Strings(values []string) arrow.Array {
	b := array.NewStringBuilder(memory.DefaultAllocator)
	defer b.Release()
	b.AppendValues(values, nil)
	return b.NewArray()
}
