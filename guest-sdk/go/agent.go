// Package agent lets you write Sabot agents in Go over Apache Arrow record batches.
//
// An agent implements [Agent]; register its constructor in an init function:
//
//	func init() {
//		agent.Register(func(config []byte) (agent.Agent, error) { return &Big{}, nil })
//	}
//
//	func (b *Big) Process(batch arrow.RecordBatch, port uint32) ([]agent.Output, error) {
//		...
//		return agent.Emit(agent.Take(batch, rows)), nil
//	}
//
// An agent may also implement [WatermarkHandler] and [TimerHandler]. Build with Go's wasip1
// target as a reactor, then wrap the core module into a component:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o agent.core.wasm .
//	sabot componentize agent.core.wasm -o agent.wasm
//
// Return an [*AgentError] (see [InvalidInput], [InvalidConfig]) for bad input or configuration;
// any other error is reported as an internal error of the agent, and a panic as well: the host
// sees an error, never a trap.
package agent

import (
	"errors"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
)

// Agent handles the batches that reach one instance.
type Agent interface {
	// Process handles one batch that arrived on input `port` and returns what to emit.
	Process(batch arrow.RecordBatch, port uint32) ([]Output, error)
}

// WatermarkHandler is an agent that wants to know when the watermark advances.
type WatermarkHandler interface {
	OnWatermark(watermark int64) ([]Output, error)
}

// TimerHandler is an agent whose event-time timers fire.
type TimerHandler interface {
	OnTimers(timers []Timer) ([]Output, error)
}

// Output is a batch to emit on one of the agent's output ports (0 is the main output).
type Output struct {
	Port  uint32
	Batch arrow.RecordBatch
}

// Emit is the outputs for batches on port 0 (nil batches are skipped). Batches without rows
// are dropped when sent, except in answer to a batch without rows: that is how the host asks
// what an agent returns (SQL types an agent called as a table function by the columns of the
// batch it returns on port 0).
func Emit(batches ...arrow.RecordBatch) []Output {
	out := make([]Output, 0, len(batches))
	for _, b := range batches {
		if b != nil {
			out = append(out, Output{Port: 0, Batch: b})
		}
	}
	return out
}

// ErrorKind says whose fault an error is.
type ErrorKind uint8

const (
	// KindInvalidInput: the batch, or a row of it, is not what the agent accepts.
	KindInvalidInput ErrorKind = iota
	// KindInvalidConfig: the agent's configuration is not valid; the pipeline cannot start.
	KindInvalidConfig
	// KindInternal: a bug in the agent.
	KindInternal
)

// AgentError is the error an agent reports instead of trapping.
type AgentError struct {
	Kind    ErrorKind
	Message string
	// Row is the input row that caused the error, when one did.
	Row *uint32
}

func (e *AgentError) Error() string { return e.Message }

// InvalidInput reports a bad batch (row < 0: no particular row).
func InvalidInput(row int, format string, args ...any) *AgentError {
	e := &AgentError{Kind: KindInvalidInput, Message: fmt.Sprintf(format, args...)}
	if row >= 0 {
		r := uint32(row)
		e.Row = &r
	}
	return e
}

// InvalidConfig reports a bad configuration.
func InvalidConfig(format string, args ...any) *AgentError {
	return &AgentError{Kind: KindInvalidConfig, Message: fmt.Sprintf(format, args...)}
}

// Internalf reports a bug in the agent.
func Internalf(format string, args ...any) *AgentError {
	return &AgentError{Kind: KindInternal, Message: fmt.Sprintf(format, args...)}
}

func asAgentError(err error, kind ErrorKind) *AgentError {
	var e *AgentError
	if errors.As(err, &e) {
		return e
	}
	return &AgentError{Kind: kind, Message: err.Error()}
}

// TimeDomain is the clock a timer follows.
type TimeDomain uint8

const (
	EventTime TimeDomain = iota
	ProcessingTime
)

// Timer is a timer for a key (encoded as for state) at a time in ms since the epoch.
type Timer struct {
	Domain TimeDomain
	Key    []byte
	Ts     int64
}

// Level is a log level.
type Level uint8

const (
	LevelTrace Level = iota
	LevelDebug
	LevelInfo
	LevelWarn
	LevelError
)
