// The `state` mode of the Rust `misbehave` guest (tests/guests/misbehave), in Go, over the same
// stores with the same values: a swap between them keeps each card's state.
//
// Per card: `seen` (a count), `sum` (of amounts), `mean` ([sum, count]), `amounts` (the list of
// amounts), `last` (the card itself) and the map `merchants` (merchant → count). Per batch, one
// row per card in order of first appearance: the card and its values after the batch.
package main

import (
	"encoding/json"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	agent "github.com/sabot-dev/sabot/guest-sdk/go"
)

type keepState struct {
	seen      agent.ValueState[uint64]
	sum       agent.ValueState[float64]
	mean      agent.ValueState[[2]float64]
	amounts   agent.ValueState[[]float64]
	last      agent.ValueState[int64]
	merchants agent.MapState[uint64]
}

var schema = arrow.NewSchema([]arrow.Field{
	{Name: "card_id", Type: arrow.PrimitiveTypes.Int64},
	{Name: "seen", Type: arrow.PrimitiveTypes.Uint64},
	{Name: "sum", Type: arrow.PrimitiveTypes.Float64},
	{Name: "mean", Type: arrow.PrimitiveTypes.Float64},
	{Name: "merchants", Type: arrow.PrimitiveTypes.Uint64},
	{Name: "amounts", Type: arrow.PrimitiveTypes.Uint64},
}, nil)

func column[T arrow.Array](batch arrow.RecordBatch, name string) (T, error) {
	var zero T
	idx := batch.Schema().FieldIndices(name)
	if len(idx) == 0 {
		return zero, agent.InvalidInput(-1, "state mode needs a column %s", name)
	}
	c, ok := batch.Column(idx[0]).(T)
	if !ok {
		return zero, agent.InvalidInput(-1, "state mode: column %s has the wrong type", name)
	}
	return c, nil
}

func (k *keepState) Process(batch arrow.RecordBatch, port uint32) ([]agent.Output, error) {
	cards, err := column[*array.Int64](batch, "card_id")
	if err != nil {
		return nil, err
	}
	amounts, err := column[*array.Float64](batch, "amount")
	if err != nil {
		return nil, err
	}
	merchants, err := column[*array.String](batch, "merchant_id")
	if err != nil {
		return nil, err
	}

	// The batch folded per card, cards in order of first appearance.
	slotOf := map[int64]int{}
	var order []int64
	var added [][]float64
	type pair struct {
		card     int64
		merchant string
	}
	pairs := map[pair]uint64{}
	var pairOrder []pair
	for i := 0; i < int(batch.NumRows()); i++ {
		card := cards.Value(i)
		slot, ok := slotOf[card]
		if !ok {
			slot = len(order)
			slotOf[card] = slot
			order = append(order, card)
			added = append(added, nil)
		}
		added[slot] = append(added[slot], amounts.Value(i))
		p := pair{card, merchants.Value(i)}
		if _, ok := pairs[p]; !ok {
			pairOrder = append(pairOrder, p)
		}
		pairs[p]++
	}
	keys := make([][]byte, len(order))
	for s, c := range order {
		keys[s] = agent.Int64Key(c)
	}

	seen, _, err := k.seen.GetMany(keys)
	if err != nil {
		return nil, err
	}
	sum, _, err := k.sum.GetMany(keys)
	if err != nil {
		return nil, err
	}
	mean, _, err := k.mean.GetMany(keys)
	if err != nil {
		return nil, err
	}
	lists, _, err := k.amounts.GetMany(keys)
	if err != nil {
		return nil, err
	}
	for s := range order {
		partial := 0.0
		for _, a := range added[s] {
			partial += a
		}
		seen[s] += uint64(len(added[s]))
		sum[s] += partial
		mean[s] = [2]float64{mean[s][0] + partial, mean[s][1] + float64(len(added[s]))}
		lists[s] = append(lists[s], added[s]...)
	}
	if err := k.seen.SetMany(keys, seen); err != nil {
		return nil, err
	}
	if err := k.sum.SetMany(keys, sum); err != nil {
		return nil, err
	}
	if err := k.mean.SetMany(keys, mean); err != nil {
		return nil, err
	}
	if err := k.amounts.SetMany(keys, lists); err != nil {
		return nil, err
	}
	if err := k.last.SetMany(keys, order); err != nil {
		return nil, err
	}
	for _, p := range pairOrder {
		key := agent.Int64Key(p.card)
		n, _, err := k.merchants.Get(key, p.merchant)
		if err != nil {
			return nil, err
		}
		if err := k.merchants.Put(key, p.merchant, n+pairs[p]); err != nil {
			return nil, err
		}
	}

	last, found, err := k.last.GetMany(keys)
	if err != nil {
		return nil, err
	}
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	for s, card := range order {
		if !found[s] || last[s] != card {
			return nil, agent.Internalf("ValueState lost a write")
		}
		fields, _, err := k.merchants.Entries(keys[s])
		if err != nil {
			return nil, err
		}
		b.Field(0).(*array.Int64Builder).Append(card)
		b.Field(1).(*array.Uint64Builder).Append(seen[s])
		b.Field(2).(*array.Float64Builder).Append(sum[s])
		b.Field(3).(*array.Float64Builder).Append(mean[s][0] / mean[s][1])
		b.Field(4).(*array.Uint64Builder).Append(uint64(len(fields)))
		b.Field(5).(*array.Uint64Builder).Append(uint64(len(lists[s])))
	}
	return agent.Emit(b.NewRecordBatch()), nil
}

func init() {
	agent.Register(func(config []byte) (agent.Agent, error) {
		var c struct {
			Mode string `json:"mode"`
		}
		if err := json.Unmarshal(config, &c); err != nil || c.Mode != "state" {
			return nil, agent.InvalidConfig("go-keep-state runs the mode \"state\" only, got %s", config)
		}
		return &keepState{
			seen:      agent.NewValueState[uint64]("seen"),
			sum:       agent.NewValueState[float64]("sum"),
			mean:      agent.NewValueState[[2]float64]("mean"),
			amounts:   agent.NewValueState[[]float64]("amounts"),
			last:      agent.NewValueState[int64]("last"),
			merchants: agent.NewMapState[uint64]("merchants"),
		}, nil
	})
}

func main() {}
