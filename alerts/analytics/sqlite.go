package analytics

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // SQLite driver "sqlite", pure Go
)

//go:embed migrations/*.sql
var sqliteMigrations embed.FS

// LiteStore is the embedded store: one SQLite file. Every insert is
// idempotent by id (INSERT OR IGNORE), and the rollups are kept by
// triggers that fire only for rows actually inserted.
type LiteStore struct {
	cfg Config
	db  *sql.DB
	log *slog.Logger
}

// OpenSQLite opens (creating) the store's file and migrates it.
func OpenSQLite(ctx context.Context, cfg Config, dataDir string, log *slog.Logger) (*LiteStore, error) {
	path := cfg.SQLite
	if path == "" {
		path = filepath.Join(dataDir, "analytics.db")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("analytics: create directory: %w", err)
	}
	q := url.Values{}
	for _, p := range []string{"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(NORMAL)", "cache_size(-65536)", "temp_store(MEMORY)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("analytics: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(4)
	s := &LiteStore{cfg: cfg, db: db, log: log}
	fsys, err := fs.Sub(sqliteMigrations, "migrations")
	if err != nil {
		db.Close()
		return nil, err
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, fsys)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("analytics: load migrations: %w", err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("analytics: migrate %s: %w", path, err)
	}
	for _, r := range results {
		log.Info("analytics store migrated", "driver", SQLite, "version", r.Source.Version, "file", filepath.Base(r.Source.Path), "took", r.Duration)
	}
	return s, nil
}

// Driver implements Store.
func (s *LiteStore) Driver() string { return SQLite }

// DB implements Store.
func (s *LiteStore) DB() *sql.DB { return s.db }

// ReadOnly implements Store: raw SQL is ClickHouse's.
func (s *LiteStore) ReadOnly() *sql.DB { return nil }

// Close implements Store.
func (s *LiteStore) Close() error { return s.db.Close() }

// Insert implements Store; rows already stored are ignored whether or not
// check is set.
func (s *LiteStore) Insert(ctx context.Context, b *Batch, _ bool) (Inserted, error) {
	var n Inserted
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return n, err
	}
	defer tx.Rollback()
	count := func(res sql.Result) int {
		k, _ := res.RowsAffected()
		return int(k)
	}
	if len(b.Events) > 0 {
		st, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`)
		if err != nil {
			return n, err
		}
		for i := range b.Events {
			r := &b.Events[i]
			attrs, tags, ev := eventJSON(r)
			res, err := st.ExecContext(ctx, r.ID, r.Time.Unix(), r.Time.Nanosecond()/1e6, r.Received.Unix(), r.Schema, r.Type, r.Severity,
				r.SourceKind, r.SourceID, r.SourceName, r.Region, r.Grid, b2u(r.HasLocation), r.Lat, r.Lon, r.Camera, r.DeviceKind,
				attrs, tags, ev, r.Key, r.Partition, r.Offset)
			if err != nil {
				st.Close()
				return n, fmt.Errorf("insert event %s: %w", r.ID, err)
			}
			n.Events += count(res)
		}
		st.Close()
	}
	if len(b.Cases) > 0 {
		st, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO case_events VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`)
		if err != nil {
			return n, err
		}
		for i := range b.Cases {
			r := &b.Cases[i]
			co, _ := json.Marshal(nz(r.CoDepartments))
			res, err := st.ExecContext(ctx, r.ID, r.CaseID, r.Number, r.Seq, r.Time.Unix(), r.Time.Nanosecond()/1e6, r.Action, r.FromState, r.ToState, r.State,
				r.Actor, r.ActorRole, r.Category, r.Colour, r.Risk, r.Source, r.Rule, r.Region, r.Grid, r.Level,
				r.Department, string(co), r.AlertCount, r.UrgeCount, r.Escalations, r.Satisfaction, r.Outcome, r.MergedInto,
				unix(r.Created), unix(r.Dispatched), unix(r.Accepted), unix(r.Resolved), unix(r.Closed), unix(r.Deadline), unix(r.Due),
				b2u(r.Late), r.Version, r.Partition, r.Offset)
			if err != nil {
				st.Close()
				return n, fmt.Errorf("insert case event %s: %w", r.ID, err)
			}
			n.Cases += count(res)
		}
		st.Close()
	}
	if len(b.Health) > 0 {
		st, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO camera_health VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`)
		if err != nil {
			return n, err
		}
		for i := range b.Health {
			r := &b.Health[i]
			faults, _ := json.Marshal(nz(r.Faults))
			res, err := st.ExecContext(ctx, r.ID, r.Camera, r.Minute.Unix(), r.Region, r.Grid, r.Vendor, r.WindowSeconds, r.OnlineSeconds,
				r.BitrateKbps, r.FPS, int64(r.Packets), int64(r.PacketsLost), string(faults), r.State, r.EventID, r.Partition, r.Offset)
			if err != nil {
				st.Close()
				return n, fmt.Errorf("insert camera health %s: %w", r.ID, err)
			}
			n.Health += count(res)
		}
		st.Close()
	}
	if err := tx.Commit(); err != nil {
		return Inserted{}, err
	}
	n.Skipped = b.Len() - n.Events - n.Cases - n.Health
	return n, nil
}

func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// eventJSON encodes a row's attributes (an object), tags and evidence.
func eventJSON(r *EventRow) (attrs, tags, evidence string) {
	a := make(map[string]any, len(r.StrKeys)+len(r.NumKeys)+len(r.BoolKeys))
	for i, k := range r.StrKeys {
		a[k] = r.StrValues[i]
	}
	for i, k := range r.NumKeys {
		a[k] = r.NumValues[i]
	}
	for i, k := range r.BoolKeys {
		a[k] = r.BoolValues[i]
	}
	ab, _ := json.Marshal(a)
	tb, _ := json.Marshal(nz(r.Tags))
	type ev struct {
		Kind        string `json:"kind"`
		Ref         string `json:"ref"`
		ContentType string `json:"content_type,omitempty"`
		SHA256      string `json:"sha256,omitempty"`
		Time        int64  `json:"time_ms,omitempty"`
	}
	evs := make([]ev, len(r.EvKinds))
	for i := range r.EvKinds {
		evs[i] = ev{r.EvKinds[i], r.EvRefs[i], r.EvTypes[i], r.EvSHA256[i], r.EvTimes[i]}
	}
	eb, _ := json.Marshal(evs)
	return string(ab), string(tb), string(eb)
}

// Expire implements Store: rows older than their table's retention go,
// a day at a time as in ClickHouse.
func (s *LiteStore) Expire(ctx context.Context, now time.Time) error {
	for _, t := range tablesOf(SQLite) {
		days := t.days(s.cfg.Retention)
		if days == 0 {
			continue
		}
		// Whole UTC days, as ClickHouse drops its daily partitions.
		cut := now.AddDate(0, 0, -days).UTC().Truncate(24 * time.Hour)
		res, err := s.db.ExecContext(ctx, fmt.Sprintf("DELETE FROM %s WHERE %s < ?", t.name, t.timeCol), cut.Unix())
		if err != nil {
			return fmt.Errorf("expire %s: %w", t.name, err)
		}
		if k, _ := res.RowsAffected(); k > 0 {
			s.log.Info("analytics rows expired (retention)", "table", t.name, "rows", k, "retention_days", days)
		}
	}
	return nil
}
