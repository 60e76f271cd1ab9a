package analytics

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"sharpeye/alerts/cases"
)

// Readings answers the case workflow's question for an alert's evidence:
// the sensor readings (telemetry events) of some devices and of every
// device in a grid around a time, from the events table of either store.
type Readings struct {
	store Store
	d     dialect
}

// NewReadings returns the readings of store.
func NewReadings(store Store) *Readings {
	return &Readings{store: store, d: dialect{ch: store.Driver() == ClickHouse}}
}

// Readings implements cases.Readings: the telemetry events of devices and
// analysers q.Sources, and of those in q.Grid, timed q.From to q.To
// (inclusive, to the millisecond), earliest first, at most q.Limit.
func (r *Readings) Readings(ctx context.Context, q cases.ReadingsQuery) ([]cases.Reading, error) {
	if len(q.Sources) == 0 && q.Grid == "" {
		return nil, nil
	}
	if q.Limit <= 0 {
		return nil, fmt.Errorf("readings: limit must be positive, not %d", q.Limit)
	}
	var who []string
	var args []any
	if len(q.Sources) > 0 {
		who = append(who, "source_id IN (?"+strings.Repeat(", ?", len(q.Sources)-1)+")")
		for _, s := range q.Sources {
			args = append(args, s)
		}
	}
	if q.Grid != "" {
		who = append(who, "grid = ?")
		args = append(args, q.Grid)
	}
	attrs := "attributes"
	if r.d.ch {
		attrs = "str_keys, str_values, num_keys, num_values, bool_keys, bool_values"
	}
	// The time column (whole seconds) picks the partitions and index
	// range; the millisecond key the exact bounds.
	query := fmt.Sprintf(`SELECT id, %s AS t, ms, source_kind, source_id, source_name, grid, device_kind, %s
		FROM events
		WHERE type = 'telemetry' AND source_kind IN ('device', 'analyser')
			AND time >= %s AND time <= %s AND %s >= %d AND %s <= %d AND (%s)
		ORDER BY t, ms, id LIMIT %d`,
		r.d.unix("time"), attrs, r.d.ts(q.From.Truncate(time.Second)), r.d.ts(q.To),
		r.d.msKey(), q.From.UnixMilli(), r.d.msKey(), q.To.UnixMilli(), strings.Join(who, " OR "), q.Limit)
	rows, err := r.store.DB().QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("query readings: %w", err)
	}
	defer rows.Close()
	var out []cases.Reading
	seen := map[string]bool{} // ClickHouse may hold a replayed event twice until it merges
	for rows.Next() {
		var (
			x      cases.Reading
			t, ms  int64
			scan   = []any{&x.EventID, &t, &ms, &x.SourceKind, &x.Source, &x.Name, &x.Grid, &x.DeviceKind}
			blob   string
			sk, sv []string
			nk, bk []string
			nv     []float64
			bv     []uint8
		)
		if r.d.ch {
			scan = append(scan, &sk, &sv, &nk, &nv, &bk, &bv)
		} else {
			scan = append(scan, &blob)
		}
		if err := rows.Scan(scan...); err != nil {
			return nil, fmt.Errorf("read readings: %w", err)
		}
		x.Time = time.UnixMilli(t*1000 + ms).UTC()
		if seen[x.EventID] || x.Time.Before(q.From) || x.Time.After(q.To) {
			continue
		}
		seen[x.EventID] = true
		x.Values = map[string]any{}
		if r.d.ch {
			for i := range min(len(sk), len(sv)) {
				x.Values[sk[i]] = sv[i]
			}
			for i := range min(len(nk), len(nv)) {
				x.Values[nk[i]] = nv[i]
			}
			for i := range min(len(bk), len(bv)) {
				x.Values[bk[i]] = bv[i] != 0
			}
		} else if err := json.Unmarshal([]byte(blob), &x.Values); err != nil {
			return nil, fmt.Errorf("event %s: corrupt attributes: %w", x.EventID, err)
		}
		delete(x.Values, "device_kind") // the device's kind, not a reading
		out = append(out, x)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read readings: %w", err)
	}
	return out, nil
}

var _ cases.Readings = (*Readings)(nil)
