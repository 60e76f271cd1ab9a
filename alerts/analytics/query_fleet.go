package analytics

import (
	"context"
	"fmt"
	"sharpeye/ingest/event"
	"time"

	"sharpeye/console/auth"
)

// CamerasParams asks how the camera fleet did, from its per-minute health.
type CamerasParams struct {
	Range
	// By is region, vendor, grid or day.
	By string
	// RegionDepth cuts regions to that many segments (By "region").
	RegionDepth int
	// Region narrows the scope.
	Region string
	// Path forces the hourly rollup or the raw table (tests compare them).
	Path string
}

// healthSource is where the fleet questions read camera health from: the
// table, its time column, and the expressions of a group's minutes,
// online and window seconds and intact minutes (online, no fault).
type healthSource struct {
	table, timeCol                  string
	minutes, online, window, intact string
}

// healthFrom chooses camera_health_hourly when it answers rng exactly (the
// range begins and ends on the hour, and days in the zone begin on the
// hour), else camera_health; path forces one (tests compare them).
func (q *Questions) healthFrom(rng Range, path string) (healthSource, error) {
	raw := healthSource{table: "camera_health", timeCol: "minute", minutes: "count()",
		online: "sum(online_seconds)", window: "sum(window_seconds)",
		intact: "sum(CASE WHEN online_seconds > 0 AND " + q.d.noFaults() + " THEN 1 ELSE 0 END)"}
	hourly := healthSource{table: "camera_health_hourly", timeCol: "hour", minutes: "sum(minutes)",
		online: "sum(online_sum)", window: "sum(window_sum)", intact: "sum(intact)"}
	switch path {
	case PathAuto:
		if q.onTheHour(rng) {
			return hourly, nil
		}
		return raw, nil
	case PathRollup:
		if !q.onTheHour(rng) {
			return healthSource{}, paramErr("path", "the hourly rollup answers ranges on the hour only")
		}
		return hourly, nil
	case PathRaw:
		return raw, nil
	}
	return healthSource{}, paramErr("path", "must be rollup or raw, not %q", path)
}

func (q *Questions) healthWhere(src healthSource, rng Range, scope string) conds {
	var c conds
	c.add(src.timeCol + " >= " + q.d.ts(rng.From))
	c.add(src.timeCol + " < " + q.d.ts(rng.To))
	c.subtree(q.d, "region", scope)
	return c
}

// Cameras answers, per region, vendor, grid or day, within scope: the
// cameras reporting, their minutes, the online rate (online seconds over
// window seconds), the intact rate (minutes online with no fault over
// minutes) and whether each meets the targets (targets.online,
// targets.intact).
func (q *Questions) Cameras(ctx context.Context, p CamerasParams, scope string) (t Table, err error) {
	defer q.observe(qCameras, time.Now(), &err)
	return q.cameras(ctx, p, scope)
}

func (q *Questions) cameras(ctx context.Context, p CamerasParams, scope string) (Table, error) {
	p.Range = p.Range.whole()
	if err := p.Range.check(maxRange); err != nil {
		return Table{}, err
	}
	// The minutes are summed per camera and raw key first, and the key is
	// cut (region depth) on those sums, not on every minute.
	var key, inner string
	switch p.By {
	case "region":
		inner, key = "region", q.d.region("rk_", p.RegionDepth)
	case "vendor", "grid":
		inner, key = p.By, "rk_"
	case "day":
		inner, key = "", "rk_"
	default:
		return Table{}, paramErr("by", "must be region, vendor, grid or day, not %q", p.By)
	}
	if p.RegionDepth != 0 && (p.By != "region" || p.RegionDepth < 1 || p.RegionDepth > auth.MaxRegionDepth) {
		return Table{}, paramErr("region_depth", "applies with by=region, 1 to %d", auth.MaxRegionDepth)
	}
	scope, err := narrow(scope, p.Region)
	if err != nil {
		return Table{}, err
	}
	src, err := q.healthFrom(p.Range, p.Path)
	if err != nil {
		return Table{}, err
	}
	if p.By == "day" {
		inner = q.d.bucket(Day, src.timeCol)
	}
	w := q.healthWhere(src, p.Range, scope)
	query := fmt.Sprintf(`SELECT %s AS k_, count(DISTINCT camera) AS cameras_, sum(m_) AS minutes_, sum(o_) AS online_, sum(w_) AS window_, sum(i_) AS intact_
		FROM (SELECT %s AS rk_, camera, %s AS m_, %s AS o_, %s AS w_, %s AS i_
			FROM %s%s GROUP BY rk_, camera)
		GROUP BY k_ ORDER BY k_`, key, inner, src.minutes, src.online, src.window, src.intact, src.table, w.where())
	rows, truncated, err := q.rows(ctx, query, w.args...)
	if err != nil {
		return Table{}, err
	}
	t := Table{Columns: []string{p.By, "cameras", "minutes", "online_rate", "intact_rate", "online_ok", "intact_ok"}, Rows: [][]any{}, Truncated: truncated}
	for _, r := range rows {
		var k any = asString(r[0])
		if p.By == "day" {
			k = bucketTime(Day, asInt(r[0]), q.loc)
		}
		minutes := asInt(r[2])
		online, intact := ratio(asFloat(r[3]), asFloat(r[4])), ratio(float64(asInt(r[5])), float64(minutes))
		t.Rows = append(t.Rows, []any{k, asInt(r[1]), minutes, online, intact, meets(online, q.cfg.Targets.Online), meets(intact, q.cfg.Targets.Intact)})
	}
	return t, nil
}

func meets(rate any, target float64) bool {
	f, ok := rate.(float64)
	return ok && f >= target
}

// WorstParams asks for the cameras with the lowest rates.
type WorstParams struct {
	Range
	// Limit is how many (default 10).
	Limit int
	// Region narrows the scope.
	Region string
	// Path forces the hourly rollup or the raw table (tests compare them).
	Path string
}

// WorstCameras answers the cameras with the lowest online rate, then
// intact rate, within scope, with their most frequent fault (the one on
// most minutes; ties by name) and its minutes.
func (q *Questions) WorstCameras(ctx context.Context, p WorstParams, scope string) (t Table, err error) {
	defer q.observe(qWorst, time.Now(), &err)
	return q.worstCameras(ctx, p, scope)
}

func (q *Questions) worstCameras(ctx context.Context, p WorstParams, scope string) (Table, error) {
	p.Range = p.Range.whole()
	if err := p.Range.check(maxRange); err != nil {
		return Table{}, err
	}
	if p.Limit == 0 {
		p.Limit = 10
	}
	if p.Limit < 1 || p.Limit > 1000 {
		return Table{}, paramErr("limit", "must be 1 to 1000")
	}
	scope, err := narrow(scope, p.Region)
	if err != nil {
		return Table{}, err
	}
	src, err := q.healthFrom(p.Range, p.Path)
	if err != nil {
		return Table{}, err
	}
	w := q.healthWhere(src, p.Range, scope)
	// Ranked and cut in SQL: cut after max_rows in Go, the worst could be
	// missing from what was read.
	query := fmt.Sprintf(`SELECT camera AS k_, max(region) AS region_, max(vendor) AS vendor_, %s AS minutes_,
		%s AS online_, %s AS window_, %s AS intact_ FROM %s%s GROUP BY k_
		ORDER BY CASE WHEN window_ > 0 THEN online_ / window_ ELSE 0 END,
			CASE WHEN minutes_ > 0 THEN 1.0 * intact_ / minutes_ ELSE 0 END, k_ LIMIT %d`,
		src.minutes, src.online, src.window, src.intact, src.table, w.where(), p.Limit)
	rows, truncated, err := q.rows(ctx, query, w.args...)
	if err != nil {
		return Table{}, err
	}
	type cam struct {
		id, region, vendor string
		minutes            int64
		online, intact     float64
	}
	cams := make([]cam, 0, len(rows))
	for _, r := range rows {
		c := cam{id: asString(r[0]), region: asString(r[1]), vendor: asString(r[2]), minutes: asInt(r[3])}
		if win := asFloat(r[5]); win > 0 {
			c.online = asFloat(r[4]) / win
		}
		if c.minutes > 0 {
			c.intact = float64(asInt(r[6])) / float64(c.minutes)
		}
		cams = append(cams, c)
	}
	t := Table{Columns: []string{"camera", "region", "vendor", "minutes", "online_rate", "intact_rate", "top_fault", "top_fault_minutes"}, Rows: [][]any{}, Truncated: truncated}
	if len(cams) == 0 {
		return t, nil
	}
	// Their faults: one row per camera and fault.
	ids := make([]string, len(cams))
	for i, c := range cams {
		ids[i] = c.id
	}
	// (from the raw minutes: the primary key finds these cameras' rows)
	raw, _ := q.healthFrom(p.Range, PathRaw)
	fw := q.healthWhere(raw, p.Range, scope)
	fw.in("camera", ids)
	from, fault := q.d.faultRows()
	query = fmt.Sprintf("SELECT camera AS k_, %s AS fault_name_, count() AS n_ FROM %s%s GROUP BY k_, fault_name_", fault, from, fw.where())
	frows, _, err := q.rows(ctx, query, fw.args...)
	if err != nil {
		return Table{}, err
	}
	type top struct {
		fault string
		n     int64
	}
	tops := map[string]top{}
	for _, r := range frows {
		id, f, n := asString(r[0]), asString(r[1]), asInt(r[2])
		if cur, ok := tops[id]; !ok || n > cur.n || n == cur.n && f < cur.fault {
			tops[id] = top{f, n}
		}
	}
	for _, c := range cams {
		tp := tops[c.id]
		var fault any
		if tp.fault != "" {
			fault = tp.fault
		}
		t.Rows = append(t.Rows, []any{c.id, c.region, c.vendor, c.minutes, c.online, c.intact, fault, tp.n})
	}
	return t, nil
}

// DevicesParams asks which devices went silent or flapped.
type DevicesParams struct {
	Range
	// Flapping is the offline count from which a device flaps (default 3).
	Flapping int
	// Region narrows the scope.
	Region string
}

// Devices answers the devices (source kind device) whose status events in
// the range within scope show them silent (the last one is
// device.offline) or flapping (device.offline at least Flapping times):
// offline and online counts, the last status event and its time, its
// region; most offline first.
func (q *Questions) Devices(ctx context.Context, p DevicesParams, scope string) (t Table, err error) {
	defer q.observe(qDevices, time.Now(), &err)
	return q.devices(ctx, p, scope)
}

func (q *Questions) devices(ctx context.Context, p DevicesParams, scope string) (Table, error) {
	p.Range = p.Range.whole()
	if err := p.Range.check(maxRange); err != nil {
		return Table{}, err
	}
	if p.Flapping == 0 {
		p.Flapping = 3
	}
	if p.Flapping < 1 || p.Flapping > 100000 {
		return Table{}, paramErr("flapping", "must be 1 to 100000")
	}
	scope, err := narrow(scope, p.Region)
	if err != nil {
		return Table{}, err
	}
	var w conds
	w.add("time >= " + q.d.ts(p.Range.From))
	w.add("time < " + q.d.ts(p.Range.To))
	w.add("source_kind = 'device'")
	w.in("type", []string{event.TypeDeviceOffline, event.TypeDeviceOnline})
	w.subtree(q.d, "region", scope)
	key := q.d.msKey()
	query := fmt.Sprintf(`SELECT source_id AS k_, %s AS region_,
		sum(CASE WHEN type = '%s' THEN 1 ELSE 0 END) AS offline_, sum(CASE WHEN type = '%s' THEN 1 ELSE 0 END) AS online_,
		%s AS last_, max(%s) AS last_ms_
		FROM events%s GROUP BY k_ ORDER BY offline_ DESC, k_`,
		q.d.argMax("region", key), event.TypeDeviceOffline, event.TypeDeviceOnline, q.d.argMax("type", key), key, w.where())
	rows, truncated, err := q.rows(ctx, query, w.args...)
	if err != nil {
		return Table{}, err
	}
	t := Table{Columns: []string{"device", "region", "offline", "online", "last", "last_time", "silent", "flapping"}, Rows: [][]any{}, Truncated: truncated}
	for _, r := range rows {
		off, last := asInt(r[2]), asString(r[4])
		silent, flapping := last == event.TypeDeviceOffline, off >= int64(p.Flapping)
		if !silent && !flapping {
			continue
		}
		t.Rows = append(t.Rows, []any{asString(r[0]), asString(r[1]), off, asInt(r[3]), last, time.UnixMilli(asInt(r[5])).In(q.loc), silent, flapping})
	}
	return t, nil
}
