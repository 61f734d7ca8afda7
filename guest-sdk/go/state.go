//go:build wasip1

package agent

import "encoding/json"

// ValueState is one value per key, kept by the host (RocksDB by default) and checkpointed with
// the pipeline. Values are JSON (encoding/json). Keys are the agent's key column values as
// [KeysOf] encodes them. Every method is one host call for all its keys: use them per batch.
type ValueState[T any] struct{ name string }

// NewValueState is the store `name`.
func NewValueState[T any](name string) ValueState[T] { return ValueState[T]{name: name} }

// GetMany returns the values of keys, in order, and whether each was there.
func (s ValueState[T]) GetMany(keys [][]byte) ([]T, []bool, error) {
	raw, err := stateGetMany(s.name, keys, nil)
	if err != nil {
		return nil, nil, err
	}
	values := make([]T, len(raw))
	found := make([]bool, len(raw))
	for i, b := range raw {
		if b == nil {
			continue
		}
		if err := json.Unmarshal(b, &values[i]); err != nil {
			return nil, nil, Internalf("state `%s`: cannot decode a value: %v", s.name, err)
		}
		found[i] = true
	}
	return values, found, nil
}

// SetMany writes values[i] for keys[i].
func (s ValueState[T]) SetMany(keys [][]byte, values []T) error {
	encoded := make([][]byte, len(values))
	for i := range values {
		b, err := json.Marshal(values[i])
		if err != nil {
			return Internalf("state `%s`: cannot encode a value: %v", s.name, err)
		}
		encoded[i] = b
	}
	return statePutMany(s.name, keys, nil, encoded)
}

// DeleteMany deletes the values of keys.
func (s ValueState[T]) DeleteMany(keys [][]byte) error { return stateDeleteMany(s.name, keys, nil) }

// MapState is many fields per key.
type MapState[V any] struct{ name string }

// NewMapState is the store `name`.
func NewMapState[V any](name string) MapState[V] { return MapState[V]{name: name} }

// Put writes one field of a key.
func (s MapState[V]) Put(key []byte, field string, value V) error {
	b, err := json.Marshal(value)
	if err != nil {
		return Internalf("state `%s`: cannot encode a value: %v", s.name, err)
	}
	return statePutMany(s.name, [][]byte{key}, []byte(field), [][]byte{b})
}

// Get reads one field of a key, and whether it was there.
func (s MapState[V]) Get(key []byte, field string) (V, bool, error) {
	var v V
	raw, err := stateGetMany(s.name, [][]byte{key}, []byte(field))
	if err != nil || raw[0] == nil {
		return v, false, err
	}
	if err := json.Unmarshal(raw[0], &v); err != nil {
		return v, false, Internalf("state `%s`: cannot decode a value: %v", s.name, err)
	}
	return v, true, nil
}

// Remove deletes one field of a key.
func (s MapState[V]) Remove(key []byte, field string) error {
	return stateDeleteMany(s.name, [][]byte{key}, []byte(field))
}

// Entries is every field of key, in field order.
func (s MapState[V]) Entries(key []byte) (map[string]V, []string, error) {
	out := map[string]V{}
	var order []string
	var after []byte
	for {
		page, err := stateScan(s.name, key, nil, after, 1024)
		if err != nil {
			return nil, nil, err
		}
		for _, kv := range page {
			var v V
			if err := json.Unmarshal(kv[1], &v); err != nil {
				return nil, nil, Internalf("state `%s`: cannot decode a value: %v", s.name, err)
			}
			out[string(kv[0])] = v
			order = append(order, string(kv[0]))
		}
		if len(page) < 1024 {
			return out, order, nil
		}
		after = page[len(page)-1][0]
	}
}
