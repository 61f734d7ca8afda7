package agent

// The `ipc` wire format of wit/types.wit with arrow-go: each port and direction is one Arrow IPC
// stream, whose schema message travels with the port's first batch only.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
)

const headerSchema = 1

// firstMessageType is the header type of the IPC message at the start of b (1 = schema,
// 2 = dictionary, 3 = record batch), read from its flatbuffer without decoding it.
func firstMessageType(b []byte) (byte, error) {
	if len(b) < 8 {
		return 0, fmt.Errorf("an Arrow IPC message needs at least 8 bytes, got %d", len(b))
	}
	meta := 4
	if binary.LittleEndian.Uint32(b) == 0xffffffff {
		meta = 8
	}
	at := func(i int) bool { return i >= 0 && i+4 <= len(b) }
	if !at(meta) {
		return 0, errors.New("truncated IPC message")
	}
	table := meta + int(binary.LittleEndian.Uint32(b[meta:]))
	if !at(table) {
		return 0, errors.New("truncated IPC message")
	}
	vtable := table - int(int32(binary.LittleEndian.Uint32(b[table:])))
	if !at(vtable) {
		return 0, errors.New("truncated IPC message")
	}
	if binary.LittleEndian.Uint16(b[vtable:]) <= 6 {
		return 0, nil
	}
	field := int(binary.LittleEndian.Uint16(b[vtable+6:]))
	if field == 0 {
		return 0, nil
	}
	if table+field >= len(b) {
		return 0, errors.New("truncated IPC message")
	}
	return b[table+field], nil
}

// feed is the byte stream under a port's reader: the bytes of one call at a time.
type feed struct{ r bytes.Reader }

func (f *feed) Read(p []byte) (int, error) { return f.r.Read(p) }

type portDecoder struct {
	in     feed
	reader *ipc.Reader
}

func (d *portDecoder) decode(b []byte) (arrow.RecordBatch, error) {
	kind, err := firstMessageType(b)
	if err != nil {
		return nil, err
	}
	d.in.r.Reset(b)
	if kind == headerSchema {
		if d.reader != nil {
			d.reader.Release()
		}
		d.reader, err = ipc.NewReader(&d.in)
		if err != nil {
			d.reader = nil
			return nil, err
		}
	} else if d.reader == nil {
		return nil, errors.New("a batch arrived before its schema (expected the schema message first)")
	}
	if !d.reader.Next() {
		err := d.reader.Err()
		d.reader.Release()
		d.reader = nil
		if err == nil {
			err = errors.New("no record batch in the IPC bytes")
		}
		return nil, err
	}
	batch := d.reader.RecordBatch()
	batch.Retain()
	return batch, nil
}

type portEncoder struct {
	out    bytes.Buffer
	schema *arrow.Schema
	writer *ipc.Writer
}

func (e *portEncoder) encode(batch arrow.RecordBatch) ([]byte, error) {
	if e.writer == nil || !e.schema.Equal(batch.Schema()) {
		// A new stream: its first write carries the schema.
		e.schema = batch.Schema()
		e.writer = ipc.NewWriter(&e.out, ipc.WithSchema(e.schema))
	}
	e.out.Reset()
	if err := e.writer.Write(batch); err != nil {
		e.writer = nil
		return nil, err
	}
	return bytes.Clone(e.out.Bytes()), nil
}
