package outbox_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"sharpeye/alerts/casedb/casedbtest"
	"sharpeye/alerts/outbox"
	"sharpeye/ingest/bus"
)

// BenchmarkToBus measures records/s from commit to the bus: each
// iteration commits 1000 records (10 transactions of 100, as a busy case
// store would) and waits until a consumer has them all.
func BenchmarkToBus(b *testing.B) {
	const txs, perTx = 10, 100
	for _, driver := range casedbtest.Drivers() {
		b.Run(driver, func(b *testing.B) {
			db := casedbtest.Open(b, driver)
			bs := newBus(b, nil)
			msgs := consume(b, bs, "bench")
			d := newDispatcher(b, testConfig(), db, bs, nil)
			run(b, d)
			pad := strings.Repeat("x", 900)
			recs := make([]outbox.Record, perTx)
			size := 0
			for i := range recs {
				recs[i] = outbox.Record{
					Topic: bus.TopicCases, Key: fmt.Sprintf("case-%d", i%16), Type: "case.updated",
					Value: fmt.Appendf(nil, `{"case":"case-%d","n":%d,"pad":%q}`, i%16, i, pad),
				}
				size += len(recs[i].Value)
			}
			b.ReportAllocs()
			b.SetBytes(int64(txs * size))
			start := time.Now()
			n := 0
			for b.Loop() {
				for range txs {
					enqueue(b, db, recs...)
					d.Notify()
				}
				receive(b, msgs, txs*perTx)
				n += txs * perTx
			}
			b.ReportMetric(float64(n)/time.Since(start).Seconds(), "records/s")
		})
	}
}
