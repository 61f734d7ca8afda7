// Timers, log and metrics from Go: a timer per card at the end of each 10 s event-time window it
// had a transaction in; when one fires, a row (card, fired_at).
package main

import (
	"encoding/binary"
	"errors"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	agent "github.com/sabot-dev/sabot/guest-sdk/go"
)

const window = 10_000

type timed struct{}

func (timed) Process(batch arrow.RecordBatch, port uint32) ([]agent.Output, error) {
	keys, err := agent.KeysOf(batch.Column(batch.Schema().FieldIndices("card_id")[0]))
	if err != nil {
		return nil, err
	}
	ts := batch.Column(batch.Schema().FieldIndices("ts")[0]).(*array.Timestamp)
	due := make([]agent.Timer, len(keys))
	for i, k := range keys {
		due[i] = agent.Timer{Domain: agent.EventTime, Key: k, Ts: (int64(ts.Value(i))/window + 1) * window}
	}
	if err := agent.RegisterTimers(due...); err != nil {
		return nil, err
	}
	agent.CounterAdd("rows", uint64(len(keys)))
	return nil, nil
}

var schema = arrow.NewSchema([]arrow.Field{
	{Name: "card", Type: arrow.PrimitiveTypes.Int64},
	{Name: "fired_at", Type: arrow.PrimitiveTypes.Int64},
}, nil)

func (timed) OnTimers(due []agent.Timer) ([]agent.Output, error) {
	if _, ok := agent.Watermark(); !ok {
		return nil, errors.New("a timer fired before any watermark")
	}
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	for _, t := range due {
		b.Field(0).(*array.Int64Builder).Append(int64(binary.LittleEndian.Uint64(t.Key)))
		b.Field(1).(*array.Int64Builder).Append(t.Ts)
	}
	return agent.Emit(b.NewRecordBatch()), nil
}

func init() {
	agent.Register(func(config []byte) (agent.Agent, error) {
		agent.Log(agent.LevelInfo, "timed agent starting")
		return timed{}, nil
	})
}

func main() {}
