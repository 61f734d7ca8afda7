//go:build wasip1

package agent

import (
	"fmt"
	"runtime/debug"
)

var (
	constructor func(config []byte) (Agent, error)
	instance    Agent
	decoders    = map[uint32]*portDecoder{}
	encoders    = map[uint32]*portEncoder{}
)

// Register sets the constructor of the module's agent. Call it once, from an init function.
func Register(newAgent func(config []byte) (Agent, error)) {
	if constructor != nil {
		panic("sabot agent: Register called twice; a module has one agent")
	}
	constructor = newAgent
}

// RegisterFunctions makes the module a function module of these functions (in place of
// [Register]: a module holds an agent or functions):
//
//	func init() {
//		agent.RegisterFunctions(
//			agent.Function{Name: "risk", Args: []arrow.DataType{arrow.PrimitiveTypes.Float64, arrow.BinaryTypes.String},
//				Returns: arrow.PrimitiveTypes.Float64, Call: risk},
//			agent.Aggregate("median", func() []float64 { return nil }, addValue, median),
//		)
//	}
func RegisterFunctions(functions ...Function) {
	Register(func(config []byte) (Agent, error) { return newFunctionAgent(config, functions) })
}

type wireOutput struct {
	port  uint32
	bytes []byte
}

// guard turns a panic into an internal error.
func guard(err **AgentError) {
	if p := recover(); p != nil {
		*err = Internalf("the agent panicked: %v\n%s", p, debug.Stack())
	}
}

func runInit(config string) (err *AgentError) {
	defer guard(&err)
	if constructor == nil {
		return InvalidConfig("the module registered no agent: call agent.Register in an init function")
	}
	decoders = map[uint32]*portDecoder{}
	encoders = map[uint32]*portEncoder{}
	a, e := constructor([]byte(config))
	if e != nil {
		return asAgentError(e, KindInvalidConfig)
	}
	if a == nil {
		return InvalidConfig("the agent's constructor returned no agent")
	}
	instance = a
	return nil
}

// encodeOutputs encodes what an agent returned; batches without rows are dropped unless
// `answering` (the call was a batch without rows: the host's question of what the agent returns,
// which an empty batch answers with its columns).
func encodeOutputs(outs []Output, answering bool) ([]wireOutput, *AgentError) {
	wire := make([]wireOutput, 0, len(outs))
	for _, o := range outs {
		if o.Batch == nil || (o.Batch.NumRows() == 0 && !answering) {
			continue
		}
		enc := encoders[o.Port]
		if enc == nil {
			enc = &portEncoder{}
			encoders[o.Port] = enc
		}
		b, err := enc.encode(o.Batch)
		if err != nil {
			return nil, Internalf("cannot encode a batch for port %d: %v", o.Port, err)
		}
		wire = append(wire, wireOutput{port: o.Port, bytes: b})
	}
	return wire, nil
}

func runProcess(port uint32, data []byte) (wire []wireOutput, err *AgentError) {
	defer guard(&err)
	if instance == nil {
		return nil, Internalf("process called before init")
	}
	dec := decoders[port]
	if dec == nil {
		dec = &portDecoder{}
		decoders[port] = dec
	}
	batch, e := dec.decode(data)
	if e != nil {
		return nil, InvalidInput(-1, "port %d: not an Arrow IPC batch: %v", port, e)
	}
	defer batch.Release()
	outs, e := instance.Process(batch, port)
	if e != nil {
		return nil, asAgentError(e, KindInternal)
	}
	return encodeOutputs(outs, batch.NumRows() == 0)
}

func runOnWatermark(watermark int64) (wire []wireOutput, err *AgentError) {
	defer guard(&err)
	h, ok := instance.(WatermarkHandler)
	if !ok {
		return nil, nil
	}
	outs, e := h.OnWatermark(watermark)
	if e != nil {
		return nil, asAgentError(e, KindInternal)
	}
	return encodeOutputs(outs, false)
}

func runOnTimers(timers []Timer) (wire []wireOutput, err *AgentError) {
	defer guard(&err)
	h, ok := instance.(TimerHandler)
	if !ok {
		return nil, nil
	}
	outs, e := h.OnTimers(timers)
	if e != nil {
		return nil, asAgentError(e, KindInternal)
	}
	return encodeOutputs(outs, false)
}

// Log writes a structured log line, tagged by the host with the pipeline, agent and instance.
func Log(level Level, format string, args ...any) {
	logLine(level, fmt.Sprintf(format, args...))
}

// CounterAdd adds delta to the agent-defined counter `name`.
func CounterAdd(name string, delta uint64) { metricCounterAdd(name, delta) }

// GaugeSet sets the agent-defined gauge `name`.
func GaugeSet(name string, value float64) { metricGaugeSet(name, value) }

// HistogramRecord records one observation in the agent-defined histogram `name`.
func HistogramRecord(name string, value float64) { metricHistogramRecord(name, value) }

// RegisterTimers registers timers (keys must belong to this instance, as for state).
func RegisterTimers(timers ...Timer) error { return timersRegister(timers) }

// DeleteTimers deletes timers (absent ones are fine).
func DeleteTimers(timers ...Timer) error { return timersDelete(timers) }

// Watermark is the instance's current watermark in ms, and whether there is one yet.
func Watermark() (int64, bool) { return timersWatermark() }
