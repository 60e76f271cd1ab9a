package mqtt

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"sharpeye/ingest/bus"
)

// errStopped is what waiting for a job gives once the pipeline has
// stopped: the job may or may not be durable, so its source is not
// acknowledged and will send it again.
var errStopped = errors.New("intake stopped")

// job is one inbound message (or HTTP request) turned into bus messages:
// its events, or its dead letter.
type job struct {
	msgs     []bus.Message
	received time.Time
	// rejected is set when msgs is a dead letter.
	rejected bool
	// done, when set, is called once the messages are durable (err nil)
	// or can no longer be (the pipeline stopped), in submission order.
	done func(err error)
	// result, when set, receives the outcome instead of done.
	result chan error
}

func (j *job) finish(err error) {
	if j.done != nil {
		j.done(err)
	}
	if j.result != nil {
		j.result <- err
	}
}

// pipeline publishes jobs to the bus in batches, one publish at a time, in
// the order they were submitted: since a device's messages are submitted in
// the order they arrive, they reach the bus (keyed by device) in that order.
// A batch is published as soon as the previous publish returns, with what
// arrived meanwhile (up to max messages), after waiting up to wait for more
// if wait is set. It is bounded: submit blocks while the queue is full, and
// that back-pressure reaches the devices (their messages are not
// acknowledged).
type pipeline struct {
	prod    bus.Producer
	max     int
	wait    time.Duration
	in      chan *job
	stopped chan struct{}
	m       *metrics
	log     *slog.Logger
	errs    *problemLog
}

func newPipeline(prod bus.Producer, max int, wait time.Duration, queue int, m *metrics, log *slog.Logger) *pipeline {
	return &pipeline{
		prod:    prod,
		max:     max,
		wait:    wait,
		in:      make(chan *job, queue),
		stopped: make(chan struct{}),
		m:       m,
		log:     log,
		errs:    newProblemLog(log, time.Second),
	}
}

// submit queues j, blocking while the queue is full. It fails when ctx ends
// or the pipeline has stopped; j is then not finished.
func (p *pipeline) submit(ctx context.Context, j *job) error {
	select {
	case <-p.stopped:
		return errStopped
	default:
	}
	select {
	case p.in <- j:
		return nil
	case <-p.stopped:
		return errStopped
	case <-ctx.Done():
		return ctx.Err()
	}
}

// publish submits j and waits until its messages are durable.
func (p *pipeline) publish(ctx context.Context, j *job) error {
	j.result = make(chan error, 1)
	if err := p.submit(ctx, j); err != nil {
		return err
	}
	select {
	case err := <-j.result:
		return err
	case <-p.stopped:
		// The job may have been finished just before; prefer its result.
		select {
		case err := <-j.result:
			return err
		default:
			return errStopped
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run publishes batches until ctx ends; jobs left then are finished with
// errStopped (their sources are not acknowledged).
func (p *pipeline) run(ctx context.Context) {
	defer func() {
		close(p.stopped)
		for {
			select {
			case j := <-p.in:
				j.finish(errStopped)
			default:
				return
			}
		}
	}()
	var (
		batch []*job
		msgs  []bus.Message
		timer *time.Timer
	)
	if p.wait > 0 {
		timer = time.NewTimer(time.Hour)
		timer.Stop()
		defer timer.Stop()
	}
	for {
		// A fresh slice each time: the producer may keep what it was given.
		batch, msgs = batch[:0], make([]bus.Message, 0, len(msgs))
		select {
		case <-ctx.Done():
			return
		case j := <-p.in:
			batch, msgs = append(batch, j), append(msgs, j.msgs...)
		}
		// Take what is queued, without waiting.
	drain:
		for len(msgs) < p.max {
			select {
			case j := <-p.in:
				batch, msgs = append(batch, j), append(msgs, j.msgs...)
			default:
				break drain
			}
		}
		if timer != nil && len(msgs) < p.max {
			timer.Reset(p.wait)
		linger:
			for len(msgs) < p.max {
				select {
				case j := <-p.in:
					batch, msgs = append(batch, j), append(msgs, j.msgs...)
				case <-timer.C:
					break linger
				case <-ctx.Done():
					break linger
				}
			}
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		}
		err := p.publishBatch(ctx, msgs)
		now := time.Now()
		for _, j := range batch {
			if err == nil && (j.done != nil || j.result != nil) {
				// A source waits for this job: it is acknowledged now.
				p.m.ackLatency.Observe(now.Sub(j.received).Seconds())
			}
			j.finish(err)
		}
		clear(batch) // let the jobs go
		if err != nil {
			return
		}
	}
}

// publishBatch publishes msgs, retrying (with backoff) until it succeeds or
// ctx ends: the bus's Publish fails only when it cannot make the messages
// durable, and nothing may be acknowledged before they are.
func (p *pipeline) publishBatch(ctx context.Context, msgs []bus.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	backoff := 100 * time.Millisecond
	for {
		err := p.prod.Publish(ctx, msgs...)
		if err == nil {
			p.m.batchSize.Observe(float64(len(msgs)))
			for i := range msgs {
				if msgs[i].Topic == bus.TopicDeadLetter {
					p.m.deadLetters.Inc()
				} else {
					p.m.published.Inc()
				}
			}
			return nil
		}
		if ctx.Err() != nil {
			return errStopped
		}
		p.m.busErrors.Inc()
		p.errs.report("publish to the bus failed; retrying", "messages", len(msgs), "err", err)
		select {
		case <-ctx.Done():
			return errStopped
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}
