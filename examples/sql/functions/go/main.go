// The functions of ../src/lib.rs in Go, with the same results:
// risk(amount Float64, country Utf8) -> Float64, tier(merchant_id Utf8) -> Utf8, and the
// aggregate median(Float64) -> Float64.
//
// Build:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o sql_functions_go.core.wasm .
//	sabot componentize sql_functions_go.core.wasm -o sql_functions_go.wasm
//
// Then in SQL: CREATE FUNCTION risk AS 'sql_functions_go.wasm';
package main

import (
	"slices"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	agent "github.com/sabot-dev/sabot/guest-sdk/go"
)

var highRisk = map[string]bool{"KP": true, "IR": true, "SY": true}

// risk: the amount in thousands, plus 2 in a high-risk country, plus 0.5 above 5 000; NULL
// when the amount or the country is NULL.
func risk(args []arrow.Array) (arrow.Array, error) {
	amount, country := args[0].(*array.Float64), args[1].(*array.String)
	b := array.NewFloat64Builder(memory.DefaultAllocator)
	defer b.Release()
	b.Reserve(amount.Len())
	for i := range amount.Len() {
		if amount.IsNull(i) || country.IsNull(i) {
			b.AppendNull()
			continue
		}
		a := amount.Value(i)
		score := a / 1000
		if highRisk[country.Value(i)] {
			score += 2
		}
		if a > 5000 {
			score += 0.5
		}
		b.Append(score)
	}
	return b.NewArray(), nil
}

// tierOf: a merchant's tier from its id (`m00042`): gold below 100, silver below 1 000, else
// bronze; unknown for an id that is not `m` and digits.
func tierOf(merchant string) string {
	digits, ok := strings.CutPrefix(merchant, "m")
	if !ok || digits == "" || strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		return "unknown"
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	switch {
	case err != nil:
		return "bronze" // past uint64: a very large number
	case n < 100:
		return "gold"
	case n < 1000:
		return "silver"
	}
	return "bronze"
}

func tier(args []arrow.Array) (arrow.Array, error) {
	merchant := args[0].(*array.String)
	b := array.NewStringBuilder(memory.DefaultAllocator)
	defer b.Release()
	for i := range merchant.Len() {
		if merchant.IsNull(i) {
			b.AppendNull()
		} else {
			b.Append(tierOf(merchant.Value(i)))
		}
	}
	return b.NewArray(), nil
}

// median: of a group's values (the mean of the two middle ones for an even count); NULL for a
// group without values.
func median(values []float64) (float64, bool) {
	n := len(values)
	if n == 0 {
		return 0, false
	}
	slices.Sort(values)
	if n%2 == 1 {
		return values[n/2], true
	}
	return (values[n/2-1] + values[n/2]) / 2, true
}

func init() {
	agent.RegisterFunctions(
		agent.Function{
			Name:    "risk",
			Args:    []arrow.DataType{arrow.PrimitiveTypes.Float64, arrow.BinaryTypes.String},
			Returns: arrow.PrimitiveTypes.Float64,
			Call:    risk,
		},
		agent.Function{
			Name:    "tier",
			Args:    []arrow.DataType{arrow.BinaryTypes.String},
			Returns: arrow.BinaryTypes.String,
			Call:    tier,
		},
		agent.Aggregate("median",
			func() []float64 { return nil },
			func(values []float64, v float64) []float64 { return append(values, v) },
			median),
	)
}

func main() {}
