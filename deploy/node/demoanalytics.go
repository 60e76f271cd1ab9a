package node

import (
	"context"
	"log/slog"
	"time"

	"sharpeye/alerts/analytics"
	"sharpeye/alerts/analytics/gen"
)

// demoHistoryDays is how much simulated history the demo's analytics start with.
const demoHistoryDays = 30

// demoHistory is the simulated past of the demo county (兰溪县, region
// "lanxi"): a small county's month of events, cases and a day of camera
// health, so that the analytics view has something to show at once. It
// ends at today's midnight; what the demo's cameras and sensors report
// today comes on top.
func demoHistory(now time.Time) gen.Config {
	c := gen.Defaults()
	c.Start = now.AddDate(0, 0, -demoHistoryDays)
	c.Days = demoHistoryDays
	c.Cameras, c.Devices = 200, 60
	c.EventsPerDay, c.CasesPerDay = 4000, 86
	c.HealthDays = 1
	c.Regions.County = "lanxi"
	c.Regions.Townships = 4
	c.Regions.Lat, c.Regions.Lon = 29.2, 119.46
	return c
}

// fillDemoHistory loads demoHistory into an empty store (a demo started
// again on the same data directory keeps what it has).
func fillDemoHistory(ctx context.Context, s analytics.Store, log *slog.Logger) {
	var n int
	if err := s.DB().QueryRowContext(ctx, "SELECT count(*) FROM events").Scan(&n); err != nil || n > 0 {
		return
	}
	start := time.Now()
	cfg := demoHistory(start)
	rows := 0
	err := gen.Generate(ctx, cfg, func(b *analytics.Batch) error {
		rows += b.Len()
		_, err := s.Insert(ctx, b, false)
		return err
	})
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("demo analytics history not loaded", "err", err)
		}
		return
	}
	log.Info("demo analytics history loaded", "days", cfg.Days, "rows", rows, "took", time.Since(start).Round(time.Millisecond))
}
