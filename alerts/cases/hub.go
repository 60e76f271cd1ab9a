package cases

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sharpeye/alerts/casedb"
	"sharpeye/console/auth"
)

// Update is what a console is told of a change.
type Update struct {
	ID         string    `json:"id"`
	Number     string    `json:"number"`
	Title      string    `json:"title"`
	State      State     `json:"state"`
	Colour     Colour    `json:"colour,omitempty"`
	Category   string    `json:"category"`
	Region     string    `json:"region"`
	Department string    `json:"department,omitempty"`
	Version    int64     `json:"version"`
	Action     string    `json:"action"`
	Actor      string    `json:"actor"`
	At         time.Time `json:"at"`
}

func updateOf(c *Case, h HistoryEntry) Update {
	return Update{ID: c.ID, Number: c.Number, Title: c.Title, State: c.State, Colour: c.Colour, Category: c.Category,
		Region: c.Region, Department: c.Department, Version: c.Version, Action: h.Action, Actor: h.Actor, At: h.At}
}

// Hub pushes case changes to consoles as server-sent events: the changes
// committed by this node at once, and those of other nodes (sharing the
// case database) as its poll finds them in the case history.
type Hub struct {
	s    *Service
	log  *slog.Logger
	poll time.Duration

	mu   sync.Mutex
	subs map[*subscriber]struct{}
	seen map[string]time.Time // "case/seq" → when it happened

	dropped prometheus.Counter
	clients prometheus.Gauge
}

type subscriber struct {
	p  *auth.Principal
	ch chan Update
}

// NewHub returns a hub fed by s's commits; poll is how often other nodes'
// changes are looked for.
func NewHub(s *Service, poll time.Duration, reg prometheus.Registerer, log *slog.Logger) *Hub {
	h := &Hub{s: s, log: log, poll: poll, subs: map[*subscriber]struct{}{}, seen: map[string]time.Time{},
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_cases_stream_dropped_total",
			Help: "Live-update clients cut off because they did not keep up (their browser reconnects).",
		}),
		clients: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sharpeye_cases_stream_clients",
			Help: "Consoles receiving live case updates.",
		}),
	}
	if reg != nil {
		reg.MustRegister(h.dropped, h.clients)
	}
	s.OnCommit(func(ch Change) { h.push(ch.Case, ch.Entry) })
	return h
}

func (h *Hub) push(c *Case, e HistoryEntry) {
	key := c.ID + "/" + strconv.Itoa(e.Seq)
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.seen[key]; ok {
		return
	}
	h.seen[key] = e.At
	u := updateOf(c, e)
	for sub := range h.subs {
		if !visible(sub.p, c, nil) {
			continue
		}
		select {
		case sub.ch <- u:
		default:
			close(sub.ch)
			delete(h.subs, sub)
			h.dropped.Inc()
			h.clients.Dec()
		}
	}
}

// Run polls the case history for changes made by other nodes until ctx
// ends.
func (h *Hub) Run(ctx context.Context) error {
	since := h.s.now().Add(-time.Second)
	return casedb.Poll(ctx, h.poll, func(ctx context.Context) error {
		h.mu.Lock()
		idle := len(h.subs) == 0
		h.mu.Unlock()
		if idle { // nobody to tell: read nothing
			since = h.s.now()
			return nil
		}
		next, err := h.catchUp(ctx, since)
		if err != nil {
			h.log.Warn("case stream poll", "err", err)
			return nil
		}
		since = next
		return nil
	})
}

// catchUp pushes history entries from since on that the hub has not seen.
// Entries are looked for a few seconds back, since a transaction that
// committed late may carry an earlier time.
func (h *Hub) catchUp(ctx context.Context, since time.Time) (time.Time, error) {
	const slack = 5 * time.Second
	rows, err := h.s.db.Query(ctx, `SELECT case_id, seq, at, action, actor FROM case_history WHERE at >= ? ORDER BY at LIMIT 1000`,
		casedb.Millis(since.Add(-slack)))
	if err != nil {
		return since, err
	}
	type entry struct {
		caseID        string
		seq           int
		at            int64
		action, actor string
	}
	var es []entry
	for rows.Next() {
		var e entry
		if err := rows.Scan(&e.caseID, &e.seq, &e.at, &e.action, &e.actor); err != nil {
			rows.Close()
			return since, err
		}
		es = append(es, e)
	}
	rows.Close()
	next := since
	loaded := map[string]*Case{} // a case changed several times is read once
	for _, e := range es {
		at := casedb.FromMillis(e.at)
		if at.After(next) {
			next = at
		}
		h.mu.Lock()
		_, seen := h.seen[e.caseID+"/"+strconv.Itoa(e.seq)]
		h.mu.Unlock()
		if seen {
			continue
		}
		c, ok := loaded[e.caseID]
		if !ok {
			if c, err = getCase(ctx, dbq{h.s.db}, e.caseID); err != nil {
				return next, err
			}
			loaded[e.caseID] = c
		}
		h.push(c, HistoryEntry{Seq: e.seq, At: at, Action: e.action, Actor: e.actor})
	}
	h.mu.Lock()
	for k, at := range h.seen {
		if at.Before(next.Add(-2 * slack)) {
			delete(h.seen, k)
		}
	}
	h.mu.Unlock()
	return next, nil
}

func (h *Hub) subscribe(p *auth.Principal) *subscriber {
	sub := &subscriber{p: p, ch: make(chan Update, 256)}
	h.mu.Lock()
	h.subs[sub] = struct{}{}
	h.mu.Unlock()
	h.clients.Inc()
	return sub
}

func (h *Hub) unsubscribe(sub *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[sub]; ok {
		delete(h.subs, sub)
		close(sub.ch)
		h.clients.Dec()
	}
}

// handleStream answers GET /api/v1/cases/stream with server-sent events:
// "event: case" with an Update as data, and a comment every 15 s to keep
// proxies from closing the connection.
func (a *API) handleStream(w http.ResponseWriter, r *http.Request) error {
	p, _ := auth.FromContext(r.Context())
	rc := http.NewResponseController(w)
	sub := a.hub.subscribe(p)
	defer a.hub.unsubscribe(sub)
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 3000\n: connected\n\n")
	if err := rc.Flush(); err != nil {
		return nil
	}
	beat := time.NewTicker(15 * time.Second)
	defer beat.Stop()
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-beat.C:
			fmt.Fprint(w, ": keep-alive\n\n")
		case u, ok := <-sub.ch:
			if !ok {
				return nil // too slow: the browser reconnects
			}
			b, _ := json.Marshal(u)
			fmt.Fprintf(w, "id: %s/%d\nevent: case\ndata: %s\n\n", u.ID, u.Version, b)
		}
		rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if err := rc.Flush(); err != nil {
			return nil
		}
	}
}
