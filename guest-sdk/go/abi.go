//go:build wasip1

package agent

// The canonical ABI of wit/worlds.wit (`timed-agent`), by hand: Go's wasip1 target exports and
// imports core functions (`go:wasmexport`, `go:wasmimport`), and `sabot componentize` wraps the
// core module into a component with the WIT and the WASI preview-1 adapter.
//
// Memory: every buffer handed to the host (results, arguments of imports) is kept reachable in
// `arena` until the export call after next begins: by then the host has read the results of the
// previous call. Go's collector does not move objects, so addresses stay put.

import (
	"unsafe"
)

var (
	arena []any
	mark  int
	// The return area of an export or import call (the largest result, packed-state.get-many's, is
	// 28 bytes).
	retArea [4]uint64
)

// adapterArena is the WASI adapter's memory: its state and stack. Go's runtime cannot serve the
// adapter (it calls WASI from its system stack, where Go cannot be re-entered, and it owns every
// page of memory it did not see grown), so `sabot componentize` finds this array through
// arenaMarker, a statically initialised variable in the data segment, and gives the adapter a
// plain-Wasm allocator over it.
var adapterArena [arenaSize]byte

const arenaSize = 256 << 10

type marker struct {
	magic [20]byte
	size  uint32
	arena *[arenaSize]byte
}

var arenaMarker = marker{
	magic: [20]byte{'S', 'A', 'B', 'O', 'T', ':', 'A', 'D', 'A', 'P', 'T', 'E', 'R', '-', 'A', 'R', 'E', 'N', 'A', ':'},
	size:  arenaSize,
	arena: &adapterArena,
}

// What the host writes into this module (the arguments of a call, the results of a state read)
// it allocates through cabi_realloc while it lowers them, and nothing may call a WASI function
// then; Go's allocator sometimes does (it reads the clock while it returns memory to the system).
// So cabi_realloc does not allocate: it hands out a scratch buffer, which leave() empties at the
// end of every call (what was written there has been read and copied by then) and grows when a
// call came near to filling it. Only a request larger than what is left falls back to Go's
// allocator.
var (
	scratch        = make([]uint64, 2<<20) // 16 MiB
	scratchUsed    uint32
	scratchOverrun uint32
	overrun        [][]uint64
)

func init() {
	// Reading the marker keeps it (and so the arena) linked in.
	if arenaMarker.arena == nil || arenaMarker.size != arenaSize {
		panic("sabot agent: the adapter arena marker is damaged")
	}
}

func ptrOf(b []byte) uint32 {
	if len(b) == 0 {
		return 0
	}
	return uint32(uintptr(unsafe.Pointer(&b[0])))
}

func bytesAt(p, n uint32) []byte {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(uintptr(p))), n)
}

func u32At(p uint32) uint32 { return *(*uint32)(unsafe.Pointer(uintptr(p))) }
func u8At(p uint32) uint8   { return *(*uint8)(unsafe.Pointer(uintptr(p))) }
func i64At(p uint32) int64  { return *(*int64)(unsafe.Pointer(uintptr(p))) }

func putU32(p, v uint32) { *(*uint32)(unsafe.Pointer(uintptr(p))) = v }
func putU8(p uint32, v uint8) {
	*(*uint8)(unsafe.Pointer(uintptr(p))) = v
}
func putI64(p uint32, v int64) { *(*int64)(unsafe.Pointer(uintptr(p))) = v }

// alloc returns n zeroed bytes, 8-aligned, kept alive for the host.
func alloc(n uint32) uint32 {
	if n == 0 {
		return 8
	}
	buf := make([]uint64, (n+7)/8)
	arena = append(arena, buf)
	return uint32(uintptr(unsafe.Pointer(&buf[0])))
}

// keep returns the address of b, which it keeps alive (not copied) until the host has read it.
func keep(b []byte) uint32 {
	if len(b) == 0 {
		return 0
	}
	arena = append(arena, b)
	return ptrOf(b)
}

// enter starts an export call: what the calls before the previous one allocated is released.
func enter() {
	arena = append(arena[:0], arena[mark:]...)
	mark = 0
}

// leave ends an export call: what it allocated stays until the next call's enter; the scratch
// buffer is emptied, and doubled when this call used more than half of it.
func leave() {
	mark = len(arena)
	need := uint64(scratchUsed) + uint64(scratchOverrun)
	if need > uint64(len(scratch))*8/2 {
		scratch = make([]uint64, need*2/8+1)
	}
	scratchUsed, scratchOverrun, overrun = 0, 0, nil
}

//go:wasmexport cabi_realloc
func cabiRealloc(oldPtr, oldSize, align, newSize uint32) uint32 {
	if newSize == 0 {
		return align
	}
	base := uint32(uintptr(unsafe.Pointer(&scratch[0])))
	start := (base + scratchUsed + align - 1) &^ (align - 1)
	var p uint32
	if end := start + newSize - base; uint64(end) <= uint64(len(scratch))*8 {
		scratchUsed = end
		p = start
	} else {
		buf := make([]uint64, (newSize+7)/8)
		overrun = append(overrun, buf)
		scratchOverrun += newSize
		p = uint32(uintptr(unsafe.Pointer(&buf[0])))
	}
	if oldSize > 0 {
		copy(bytesAt(p, newSize), bytesAt(oldPtr, min(oldSize, newSize)))
	}
	return p
}

// retPtr clears the return area and returns its address.
func retPtr() uint32 {
	retArea = [4]uint64{}
	return uint32(uintptr(unsafe.Pointer(&retArea[0])))
}

// ---- exports: handler and time-handler

// writeErr writes `err(agent-error)` at the return area.
func writeErr(e *AgentError) uint32 {
	r := retPtr()
	putU8(r, 1)
	putU8(r+4, uint8(e.Kind))
	msg := []byte(e.Message)
	putU32(r+8, keep(msg))
	putU32(r+12, uint32(len(msg)))
	if e.Row != nil {
		putU8(r+16, 1)
		putU32(r+20, *e.Row)
	}
	return r
}

// writeOutputs writes `ok(list<output>)` at the return area.
func writeOutputs(outs []wireOutput) uint32 {
	r := retPtr()
	list := alloc(uint32(12 * len(outs)))
	for i, o := range outs {
		at := list + uint32(12*i)
		putU32(at, o.port)
		putU32(at+4, keep(o.bytes))
		putU32(at+8, uint32(len(o.bytes)))
	}
	putU32(r+4, list)
	putU32(r+8, uint32(len(outs)))
	return r
}

func reply(outs []wireOutput, err *AgentError) uint32 {
	defer leave()
	if err != nil {
		return writeErr(err)
	}
	return writeOutputs(outs)
}

//go:wasmexport sabot:agent/handler@0.1.1#init
func exportInit(ptr, n uint32) uint32 {
	enter()
	err := runInit(string(bytesAt(ptr, n)))
	defer leave()
	if err != nil {
		return writeErr(err)
	}
	r := retPtr()
	return r
}

//go:wasmexport sabot:agent/handler@0.1.1#process
func exportProcess(port, ptr, n uint32) uint32 {
	enter()
	// A copy: the batch may outlive the call (an agent may keep it), the scratch buffer may not.
	return reply(runProcess(port, append([]byte(nil), bytesAt(ptr, n)...)))
}

//go:wasmexport sabot:agent/time-handler@0.1.1#on-watermark
func exportOnWatermark(watermark int64) uint32 {
	enter()
	return reply(runOnWatermark(watermark))
}

//go:wasmexport sabot:agent/time-handler@0.1.1#on-timers
func exportOnTimers(ptr, n uint32) uint32 {
	enter()
	timers := make([]Timer, n)
	for i := range timers {
		at := ptr + uint32(24*i)
		timers[i] = Timer{
			Domain: TimeDomain(u8At(at)),
			Key:    append([]byte(nil), bytesAt(u32At(at+4), u32At(at+8))...),
			Ts:     i64At(at + 16),
		}
	}
	return reply(runOnTimers(timers))
}

// ---- imports

//go:wasmimport sabot:agent/log@0.1.1 log
func hostLog(level uint32, ptr, n uint32)

//go:wasmimport sabot:agent/metrics@0.1.1 counter-add
func hostCounterAdd(ptr, n uint32, delta int64)

//go:wasmimport sabot:agent/metrics@0.1.1 gauge-set
func hostGaugeSet(ptr, n uint32, value float64)

//go:wasmimport sabot:agent/metrics@0.1.1 histogram-record
func hostHistogramRecord(ptr, n uint32, value float64)

//go:wasmimport sabot:agent/packed-state@0.1.1 get-many
func hostGetMany(storePtr, storeLen, bytesPtr, bytesLen, endsPtr, endsLen, ret uint32)

//go:wasmimport sabot:agent/packed-state@0.1.1 put-many
func hostPutMany(storePtr, storeLen, bytesPtr, bytesLen, endsPtr, endsLen, ret uint32)

//go:wasmimport sabot:agent/packed-state@0.1.1 delete-many
func hostDeleteMany(storePtr, storeLen, bytesPtr, bytesLen, endsPtr, endsLen, ret uint32)

//go:wasmimport sabot:agent/state@0.1.1 scan
func hostScan(storePtr, storeLen, keyPtr, keyLen, prefixPtr, prefixLen, afterSome, afterPtr, afterLen, limit, ret uint32)

//go:wasmimport sabot:agent/timers@0.1.1 register
func hostRegister(ptr, n, ret uint32)

//go:wasmimport sabot:agent/timers@0.1.1 delete
func hostDelete(ptr, n, ret uint32)

//go:wasmimport sabot:agent/timers@0.1.1 watermark
func hostWatermark(ret uint32)

func str(s string) (uint32, uint32) {
	b := []byte(s)
	return keep(b), uint32(len(b))
}

// packed lays out packed-state's `packed` record: the strings end to end, and where each ends.
type packed struct {
	bytes []byte
	ends  []uint32
}

func (p *packed) push(b []byte) {
	p.bytes = append(p.bytes, b...)
	p.ends = append(p.ends, uint32(len(p.bytes)))
}

// lower keeps the lists alive for the host and returns their addresses and lengths.
func (p *packed) lower() (uint32, uint32, uint32, uint32) {
	var ends uint32
	if len(p.ends) > 0 {
		arena = append(arena, p.ends)
		ends = uint32(uintptr(unsafe.Pointer(&p.ends[0])))
	}
	return keep(p.bytes), uint32(len(p.bytes)), ends, uint32(len(p.ends))
}

// packedKeys packs `(key, sub)` for every key: two strings per entry.
func packedKeys(keys [][]byte, sub []byte) *packed {
	size := len(sub) * len(keys)
	for _, k := range keys {
		size += len(k)
	}
	p := &packed{bytes: make([]byte, 0, size), ends: make([]uint32, 0, 2*len(keys))}
	for _, k := range keys {
		p.push(k)
		p.push(sub)
	}
	return p
}

// stateResult reads `result<_, state-error>` at r (its payload at r+4).
func stateResult(store string, r uint32) error {
	if u8At(r) == 0 {
		return nil
	}
	kinds := [...]string{"not-owned", "too-large", "backend"}
	kind := u8At(r + 4)
	msg := string(bytesAt(u32At(r+8), u32At(r+12)))
	name := "unknown"
	if int(kind) < len(kinds) {
		name = kinds[kind]
	}
	return Internalf("state `%s`: %s: %s", store, name, msg)
}

func stateGetMany(store string, keys [][]byte, sub []byte) ([][]byte, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	sp, sl := str(store)
	bp, bl, ep, el := packedKeys(keys, sub).lower()
	r := retPtr()
	hostGetMany(sp, sl, bp, bl, ep, el, r)
	if err := stateResult(store, r); err != nil {
		return nil, err
	}
	// values: packed (bytes, ends), then found: list<bool>.
	values := bytesAt(u32At(r+4), u32At(r+8))
	ends := unsafe.Slice((*uint32)(unsafe.Pointer(uintptr(u32At(r+12)))), u32At(r+16))
	found := bytesAt(u32At(r+20), u32At(r+24))
	// One copy of every value found, sliced per entry.
	own := append([]byte(nil), values...)
	out := make([][]byte, len(found))
	start := uint32(0)
	for i := range out {
		end := ends[i]
		if found[i] == 1 {
			out[i] = own[start:end:end]
		}
		start = end
	}
	return out, nil
}

func statePutMany(store string, keys [][]byte, sub []byte, values [][]byte) error {
	if len(keys) == 0 {
		return nil
	}
	sp, sl := str(store)
	size := len(sub) * len(keys)
	for i, k := range keys {
		size += len(k) + len(values[i])
	}
	p := &packed{bytes: make([]byte, 0, size), ends: make([]uint32, 0, 3*len(keys))}
	for i, k := range keys {
		p.push(k)
		p.push(sub)
		p.push(values[i])
	}
	bp, bl, ep, el := p.lower()
	r := retPtr()
	hostPutMany(sp, sl, bp, bl, ep, el, r)
	return stateResult(store, r)
}

func stateDeleteMany(store string, keys [][]byte, sub []byte) error {
	if len(keys) == 0 {
		return nil
	}
	sp, sl := str(store)
	bp, bl, ep, el := packedKeys(keys, sub).lower()
	r := retPtr()
	hostDeleteMany(sp, sl, bp, bl, ep, el, r)
	return stateResult(store, r)
}

func stateScan(store string, key, prefix, after []byte, limit uint32) ([][2][]byte, error) {
	sp, sl := str(store)
	var some uint32
	if after != nil {
		some = 1
	}
	r := retPtr()
	hostScan(sp, sl, keep(key), uint32(len(key)), keep(prefix), uint32(len(prefix)), some, keep(after), uint32(len(after)), limit, r)
	if err := stateResult(store, r); err != nil {
		return nil, err
	}
	list, n := u32At(r+4), u32At(r+8)
	out := make([][2][]byte, n)
	for i := range out {
		at := list + uint32(16*i)
		out[i][0] = append([]byte(nil), bytesAt(u32At(at), u32At(at+4))...)
		out[i][1] = append([]byte(nil), bytesAt(u32At(at+8), u32At(at+12))...)
	}
	return out, nil
}

func timerList(timers []Timer) (uint32, uint32) {
	list := alloc(uint32(24 * len(timers)))
	for i, t := range timers {
		at := list + uint32(24*i)
		putU8(at, uint8(t.Domain))
		putU32(at+4, keep(t.Key))
		putU32(at+8, uint32(len(t.Key)))
		putI64(at+16, t.Ts)
	}
	return list, uint32(len(timers))
}

func timersRegister(timers []Timer) error {
	p, n := timerList(timers)
	r := retPtr()
	hostRegister(p, n, r)
	return stateResult("timers", r)
}

func timersDelete(timers []Timer) error {
	p, n := timerList(timers)
	r := retPtr()
	hostDelete(p, n, r)
	return stateResult("timers", r)
}

func timersWatermark() (int64, bool) {
	r := retPtr()
	hostWatermark(r)
	if u8At(r) == 0 {
		return 0, false
	}
	return i64At(r + 8), true
}

func logLine(level Level, message string) {
	p, n := str(message)
	hostLog(uint32(level), p, n)
}

func metricCounterAdd(name string, delta uint64) {
	p, n := str(name)
	hostCounterAdd(p, n, int64(delta))
}

func metricGaugeSet(name string, value float64) {
	p, n := str(name)
	hostGaugeSet(p, n, value)
}

func metricHistogramRecord(name string, value float64) {
	p, n := str(name)
	hostHistogramRecord(p, n, value)
}
