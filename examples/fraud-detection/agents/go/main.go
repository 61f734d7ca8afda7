// The fraud rules of ../../agent (Rust) in Go: over_limit, blacklisted_merchant,
// high_risk_country, and velocity on the card's recent transactions, kept in keyed state.
// Port 0: the flagged transactions with a `reason` column. Same config, same output.
//
// Build:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o fraud_rules_go.core.wasm .
//	sabot componentize fraud_rules_go.core.wasm -o fraud_rules_go.wasm
package main

import (
	"encoding/json"
	"math"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	agent "github.com/sabot-dev/sabot/guest-sdk/go"
)

type velocity struct {
	MaxTransactions int   `json:"max_transactions"`
	WithinMs        int64 `json:"within_ms"`
}

type settings struct {
	OverLimitFactor      *float64  `json:"over_limit_factor"`
	BlacklistedMerchants []string  `json:"blacklisted_merchants"`
	HighRiskCountries    []string  `json:"high_risk_countries"`
	Velocity             *velocity `json:"velocity"`
}

type fraudRules struct {
	factor    float64
	blacklist map[string]bool
	highRisk  map[string]bool
	velocity  *velocity
	// The event times of each card's latest transactions, oldest first.
	recent agent.ValueState[[]int64]
}

func newFraudRules(config []byte) (agent.Agent, error) {
	var s settings
	dec := json.NewDecoder(strings.NewReader(string(config)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, agent.InvalidConfig("fraud-rules config: %v", err)
	}
	r := &fraudRules{factor: 1.5, blacklist: map[string]bool{}, highRisk: map[string]bool{}, velocity: s.Velocity,
		recent: agent.NewValueState[[]int64]("recent")}
	if s.OverLimitFactor != nil {
		r.factor = *s.OverLimitFactor
	}
	if math.IsNaN(r.factor) || math.IsInf(r.factor, 0) || r.factor <= 0 {
		return nil, agent.InvalidConfig("over_limit_factor must be a positive number, got %v", r.factor)
	}
	if r.velocity != nil && (r.velocity.MaxTransactions < 1 || r.velocity.WithinMs <= 0) {
		return nil, agent.InvalidConfig("velocity needs max_transactions ≥ 1 and within_ms > 0")
	}
	for _, m := range s.BlacklistedMerchants {
		r.blacklist[m] = true
	}
	for _, c := range s.HighRiskCountries {
		r.highRisk[c] = true
	}
	return r, nil
}

func column[T arrow.Array](batch arrow.RecordBatch, name, typeName string) (T, error) {
	var zero T
	idx := batch.Schema().FieldIndices(name)
	if len(idx) == 1 {
		if c, ok := batch.Column(idx[0]).(T); ok {
			return c, nil
		}
	}
	var have []string
	for _, f := range batch.Schema().Fields() {
		have = append(have, f.Name+": "+f.Type.String())
	}
	return zero, agent.InvalidInput(-1, "fraud-rules needs a column `%s` of type %s; the batch has %s", name, typeName, strings.Join(have, ", "))
}

func (r *fraudRules) Process(batch arrow.RecordBatch, port uint32) ([]agent.Output, error) {
	amount, err := column[*array.Float64](batch, "amount", "float64")
	if err != nil {
		return nil, err
	}
	limit, err := column[*array.Float64](batch, "card_limit", "float64")
	if err != nil {
		return nil, err
	}
	merchant, err := column[*array.String](batch, "merchant_id", "utf8")
	if err != nil {
		return nil, err
	}
	country, err := column[*array.String](batch, "country", "utf8")
	if err != nil {
		return nil, err
	}
	n := int(batch.NumRows())

	// One state read and one write per batch, for all its cards.
	var keys [][]byte
	var slots []int
	var recent [][]int64
	var times *array.Timestamp
	if r.velocity != nil {
		cards, err := column[*array.Int64](batch, "card_id", "int64")
		if err != nil {
			return nil, err
		}
		if times, err = column[*array.Timestamp](batch, "ts", "timestamp"); err != nil {
			return nil, err
		}
		cardKeys, err := agent.KeysOf(cards)
		if err != nil {
			return nil, err
		}
		slotOf := map[int64]int{}
		slots = make([]int, n)
		for i := range n {
			slot, ok := slotOf[cards.Value(i)]
			if !ok {
				slot = len(keys)
				slotOf[cards.Value(i)] = slot
				keys = append(keys, cardKeys[i])
			}
			slots[i] = slot
		}
		if recent, _, err = r.recent.GetMany(keys); err != nil {
			return nil, err
		}
	}

	var rows []int
	var reasons []string
	for i := range n {
		reason := ""
		switch {
		case amount.Value(i) > limit.Value(i)*r.factor:
			reason = "over_limit"
		case r.blacklist[merchant.Value(i)]:
			reason = "blacklisted_merchant"
		case r.highRisk[country.Value(i)]:
			reason = "high_risk_country"
		}
		if r.velocity != nil {
			ts := int64(times.Value(i))
			// Filtered in place: the slice is this batch's own copy of the card's times.
			seen := recent[slots[i]][:0]
			for _, t := range recent[slots[i]] {
				if t > ts-r.velocity.WithinMs {
					seen = append(seen, t)
				}
			}
			if reason == "" && len(seen) >= r.velocity.MaxTransactions {
				reason = "velocity"
			}
			if len(seen) >= r.velocity.MaxTransactions {
				seen = append(seen[:0], seen[1:]...)
			}
			recent[slots[i]] = append(seen, ts)
		}
		if reason != "" {
			rows = append(rows, i)
			reasons = append(reasons, reason)
		}
	}
	if r.velocity != nil {
		if err := r.recent.SetMany(keys, recent); err != nil {
			return nil, err
		}
	}
	if len(rows) == 0 {
		return nil, nil
	}
	flagged := agent.Take(batch, rows)
	defer flagged.Release()
	out, err := agent.WithColumn(flagged, "reason", agent.Strings(reasons))
	if err != nil {
		return nil, err
	}
	return agent.Emit(out), nil
}

func init() { agent.Register(newFraudRules) }

func main() {}
