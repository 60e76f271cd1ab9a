package bus

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// The embedded log keeps messages in record batches, as Kafka does: a row
// of the batches table holds consecutive messages of one partition written
// by one transaction, so that a transaction of a hundred messages over
// eight partitions writes eight rows, not a hundred: much of SQLite's cost
// is per row (the b-tree, the statement). The rows are found through
// partLog.rows, in memory, rather than an index, which cost each
// transaction a page written per partition.
//
// A batch row's data is batchFormat, then each message:
//
//	uvarint  offset - the row's first offset (increasing)
//	varint   time, Unix nanoseconds
//	uvarint  key length, key
//	uvarint  header count, then each: uvarint length, name, uvarint length, value
//	uvarint  value length, value
//
// Offsets within a row increase but need not be consecutive (a message
// that could not be carried over from schema 2 leaves a gap).
const batchFormat = 1

// A row holds at most maxRowMessages messages and stops growing past
// maxRowBytes: a consumer reading a few messages at a time decodes the
// row again for each of its batches.
const (
	maxRowMessages = 256
	maxRowBytes    = 256 << 10
)

// errCorruptBatch is what decoding a damaged batch row gives.
var errCorruptBatch = errors.New("corrupt batch")

// bodySize is at most the size of a message's encoding.
func bodySize(key string, headers map[string]string, value []byte) int {
	n := 4*binary.MaxVarintLen64 + len(key) + len(value)
	for k, v := range headers {
		n += 2*binary.MaxVarintLen64 + len(k) + len(v)
	}
	return n
}

// appendBody appends a message's encoding, without its offset.
func appendBody(dst []byte, t int64, key string, headers map[string]string, value []byte) []byte {
	dst = binary.AppendVarint(dst, t)
	dst = appendString(dst, key)
	dst = binary.AppendUvarint(dst, uint64(len(headers)))
	for k, v := range headers {
		dst = appendString(appendString(dst, k), v)
	}
	dst = binary.AppendUvarint(dst, uint64(len(value)))
	return append(dst, value...)
}

func appendString(dst []byte, s string) []byte {
	return append(binary.AppendUvarint(dst, uint64(len(s))), s...)
}

// rowBatch is a batch row being built.
type rowBatch struct {
	id        int64
	tp        topicPart
	off, last int64
	n         int
	size      int64
	ins       int64 // the latest of its messages' storage times
	data      []byte
}

// batchRows puts rows (in offset order within each partition) into batch
// rows, their data carved out of one allocation.
func batchRows(rows []row) []rowBatch {
	var out []rowBatch
	var need []int                  // the bytes each batch row needs at most
	open := make(map[topicPart]int) // the row being filled, per partition
	which := make([]int, len(rows))
	total := 0
	for i := range rows {
		r := &rows[i]
		j, ok := open[r.tp]
		if !ok || out[j].n >= maxRowMessages || need[j]+len(r.enc) > maxRowBytes {
			out = append(out, rowBatch{tp: r.tp, off: r.off})
			need = append(need, 1) // batchFormat
			j = len(out) - 1
			open[r.tp] = j
		}
		which[i] = j
		b := &out[j]
		need[j] += binary.MaxVarintLen64 + len(r.enc)
		b.last = r.off
		b.n++
		b.size += r.size
		b.ins = max(b.ins, r.ins)
	}
	for _, n := range need {
		total += n
	}
	arena := make([]byte, total)
	for j := range out {
		out[j].data = append(arena[:0:need[j]], batchFormat)
		arena = arena[need[j]:]
	}
	for i := range rows {
		r := &rows[i]
		b := &out[which[i]]
		b.data = binary.AppendUvarint(b.data, uint64(r.off-b.off))
		b.data = append(b.data, r.enc...)
	}
	return out
}

// batchReader decodes the messages of a batch row in order.
type batchReader struct {
	tp   topicPart
	base int64
	last int64 // the row's last offset
	data []byte
	prev int64 // the offset of the message read last
}

func newBatchReader(tp topicPart, off, last int64, data []byte) (*batchReader, error) {
	if len(data) == 0 || data[0] != batchFormat {
		return nil, fmt.Errorf("%w: unknown format", errCorruptBatch)
	}
	return &batchReader{tp: tp, base: off, last: last, data: data[1:], prev: off - 1}, nil
}

// next decodes the next message; ok is false at the end of the row. The
// message's value shares the row's memory (capped, so that appending to it
// copies).
func (br *batchReader) next() (m Message, ok bool, err error) {
	if len(br.data) == 0 {
		return Message{}, false, nil
	}
	delta, err := br.uvarint()
	if err != nil {
		return Message{}, false, err
	}
	off := br.base + int64(delta)
	if delta > uint64(br.last-br.base) || off <= br.prev {
		return Message{}, false, fmt.Errorf("%w: offset %d out of order in [%d, %d]", errCorruptBatch, off, br.base, br.last)
	}
	br.prev = off
	t, n := binary.Varint(br.data)
	if n <= 0 {
		return Message{}, false, fmt.Errorf("%w: time at offset %d", errCorruptBatch, off)
	}
	br.data = br.data[n:]
	key, err := br.bytes()
	if err != nil {
		return Message{}, false, err
	}
	m = Message{Topic: br.tp.topic, Partition: br.tp.part, Offset: off, Key: string(key), Time: time.Unix(0, t)}
	nh, err := br.uvarint()
	if err != nil {
		return Message{}, false, err
	}
	if nh > uint64(len(br.data)) {
		return Message{}, false, fmt.Errorf("%w: %d headers at offset %d", errCorruptBatch, nh, off)
	}
	if nh > 0 {
		m.Headers = make(map[string]string, nh)
		for range nh {
			k, err := br.bytes()
			if err != nil {
				return Message{}, false, err
			}
			v, err := br.bytes()
			if err != nil {
				return Message{}, false, err
			}
			m.Headers[string(k)] = string(v)
		}
	}
	if m.Value, err = br.bytes(); err != nil {
		return Message{}, false, err
	}
	return m, true, nil
}

func (br *batchReader) uvarint() (uint64, error) {
	v, n := binary.Uvarint(br.data)
	if n <= 0 {
		return 0, fmt.Errorf("%w: bad length after offset %d", errCorruptBatch, br.prev)
	}
	br.data = br.data[n:]
	return v, nil
}

func (br *batchReader) bytes() ([]byte, error) {
	n, err := br.uvarint()
	if err != nil {
		return nil, err
	}
	if n > uint64(len(br.data)) {
		return nil, fmt.Errorf("%w: %d bytes past the end after offset %d", errCorruptBatch, n, br.prev)
	}
	b := br.data[:n:n]
	br.data = br.data[n:]
	return b, nil
}

// upgradeChunk is how many schema 1 or 2 rows upgradeLog reads at a time
// (a variable for the test that reads a few at a time). A partition's
// rows start anew at each read.
var upgradeChunk = 10000

// upgradeLog moves a schema 1 or 2 log (a row per message, headers as
// JSON) into batch rows, in one transaction: a crash in the middle leaves
// the old log to upgrade again. A message whose headers cannot be decoded
// is left out (its offset stays a gap), counted and logged. A row's
// storage time is the latest of its messages', so that retention never
// deletes a message earlier than schema 2 did.
func (e *Embedded) upgradeLog(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	after := topicPart{} // every topic name sorts after ""
	afterOff, id, skipped := int64(-1), int64(1), 0
	for {
		rows, err := tx.QueryContext(ctx, `SELECT topic, part, off, key, value, headers, time, ins FROM log
			WHERE (topic, part, off) > (?, ?, ?) ORDER BY topic, part, off LIMIT ?`, after.topic, after.part, afterOff, upgradeChunk)
		if err != nil {
			return err
		}
		var chunk []row
		read := 0
		for rows.Next() {
			read++
			var (
				r          row
				key        string
				value, hdr []byte
				t          int64
			)
			if err := rows.Scan(&r.tp.topic, &r.tp.part, &r.off, &key, &value, &hdr, &t, &r.ins); err != nil {
				rows.Close()
				return err
			}
			after, afterOff = r.tp, r.off
			var hs map[string]string
			if len(hdr) > 0 {
				if hs, err = decodeHeaders(hdr); err != nil {
					skipped++
					e.metrics.corrupt.Inc()
					e.log.Error("corrupt message left out of the upgraded bus log", "partition", r.tp.String(), "offset", r.off, "err", err)
					continue
				}
			}
			r.enc = appendBody(nil, t, key, hs, value)
			r.size = int64(len(r.enc)) + msgOverhead
			chunk = append(chunk, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if read == 0 {
			break
		}
		if id, err = insertBatchRows(ctx, tx, batchRows(chunk), id); err != nil {
			return err
		}
	}
	for _, stmt := range []string{
		`DROP TABLE log`,
		`UPDATE meta SET v = '` + schemaVersion + `' WHERE k = 'schema'`,
	} {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return err
		}
	}
	if skipped > 0 {
		e.log.Warn("bus log upgraded without its corrupt messages", "messages", skipped)
	}
	return tx.Commit()
}
