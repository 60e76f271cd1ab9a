// Package outbox delivers every change of a governance case exactly once in
// effect, across crashes: onto the bus (topic sharpeye.cases, for
// analytics) and to each configured webhook subscriber (provincial
// governance platforms).
//
// # Writing
//
// The case store calls [Enqueue] inside the transaction that changes the
// case, so the change and its outbox records commit or roll back together,
// then [Dispatcher.Notify] after the commit. Nothing is sent from inside
// the transaction.
//
// # Ids in commit order
//
// Each sink reads the records after its cursor, in id order, so a record
// that commits after a reader has passed its id would be skipped for ever.
// An identity column (SQLite AUTOINCREMENT, PostgreSQL BIGSERIAL) hands ids
// out when a row is inserted, not when it commits: a transaction holding
// id 7 may commit after another has committed id 8 and a reader has moved
// past 8. The ids are therefore allocated from a counter row (table
// outbox_seq) that Enqueue increments in the caller's transaction. On
// PostgreSQL the row stays locked until that transaction ends, so the
// transactions that enqueue are serialised from that point to their
// commit: the next one gets its ids only after the previous committed (or
// rolled back, which also rolls the counter back). Ids are thus gap-free
// and committed in order, and a reader that sees id n has already been
// able to see every id below it. SQLite has a single writer anyway (the
// case database opens transactions IMMEDIATE). The cost is that case
// writes queue on the counter from Enqueue to commit: the store enqueues
// last in its transaction, and keeps that transaction short. The same
// counter is what lets pending counts be read as head minus cursor.
//
// # Delivering
//
// A [Dispatcher] runs one goroutine per sink: the bus ("bus") and each
// webhook subscriber ("webhook:<name>"). Each reads up to batch records
// after its cursor, delivers them in id order and only then advances its
// cursor in table outbox_cursors; a crash delivers the records in flight
// again (at least once), and nothing is lost. The sinks are independent:
// a failing subscriber holds up nobody else. Records become bus messages
// with the record's topic, key (the case id: a case's changes keep their
// order), value and headers, plus "outbox-id" (the record's unique id, for
// consumers to drop a duplicate) and "type"; a batch is one Publish.
//
// A new sink (a subscriber added to the configuration) starts from the
// oldest record kept; a subscriber renamed is a new one.
//
// # Webhooks
//
// Each record whose type matches one of the subscriber's globs (types,
// "case.*" by default) is POSTed alone, in id order, as JSON ([Body]):
//
//	{"id": "4ZC6...", "seq": 1042, "type": "case.dispatched", "key": "case-id",
//	 "time": "2026-03-01T08:00:00.123Z", "data": {...the record's value...}}
//
// with the headers Content-Type: application/json, Idempotency-Key (the
// id: the same on every attempt and after a restart), X-Sharpeye-Event
// (the type), X-Sharpeye-Timestamp (Unix seconds of the attempt) and
// X-Sharpeye-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." +
// body)>; receivers check it with [VerifySignature]. A record the
// subscriber does not want only advances its cursor.
//
// A 2xx answer delivers the record. A 4xx other than 408 and 429 refuses
// it for good: it is kept in outbox_dead_letters with the status and the
// first KiB of the answer, counted, logged, and the subscriber gets the
// next one (see Dead letters). Anything else (5xx, 408, 429, a timeout, no
// connection, a redirect) is retried for ever, after the Retry-After the
// subscriber asked for (at most an hour) or a backoff doubling from 1s to
// max_backoff with jitter; the failure is logged once when a streak of
// them starts and once when it ends, and shows in
// sharpeye_outbox_pending_records{sink="webhook:<name>"} and
// sharpeye_outbox_lag_seconds.
//
// # Dead letters
//
// Admins see and act on dead letters through the [API], under
// /api/v1/outbox/dead-letters: list them newest first (by subscriber and
// type, cursor-paged), read one with the record's value, discard one
// (logged with the admin's name), or ask for one to be sent again. Neither
// a secret nor a URL is shown, only the subscriber's name.
// sharpeye_outbox_dead_letters{sink="webhook:<name>"} is how many each
// subscriber holds, read from the database at scrape time: every node
// reports the same figure (aggregate with max, not sum).
//
// A retry is data, not a goroutine: the API records it in the dead
// letter's row (retry_at, retry_by), answers 202 Accepted and wakes the
// subscriber's sink in case this node delivers. The sink of the node
// holding the lease, wherever the request was made, looks for retries on
// every pass (after each batch, on a wake-up, at least every poll), before
// the records after its cursor, and posts each like a record: the same
// body (id, seq, time, data) and Idempotency-Key, signed afresh, retried
// with backoff until the subscriber takes or refuses it. Taken, the dead
// letter is deleted (GET answers 404 from then on); refused again, it keeps
// its id with the new status, response and time, and no retry pending.
// Only that subscriber gets it again: the bus and the other subscribers
// have long passed it. A request outlives a restart or a change of leader
// (the next holder of the lease finds it), and a crash between delivery
// and deletion sends it once more under the same Idempotency-Key. The
// subscriber receives it out of order (a seq below those it has seen),
// whatever its types are now. Discarding a dead letter while its retry is
// in flight does not recall the request; refused, it comes back as a new
// dead letter.
//
// A subscriber no longer in the configuration cannot be sent anything: a
// retry is refused with 409 Conflict, but its dead letters are still
// listed and counted until discarded. The API consults its own node's
// configuration; while nodes disagree (a rolling change), a retry waits
// until the holder of the lease has the subscriber too.
//
// # One dispatcher at a time
//
// Nodes sharing a PostgreSQL database all run a dispatcher, but only the
// holder of the lease (table outbox_lease: holder, expires_at) delivers. It
// renews the lease every third of lease; another node takes it once it has
// expired, and a holder that cannot renew stops delivering before it could
// expire. Should two deliver at once all the same (clocks far apart, a
// stalled process), records are delivered twice, never lost: cursors only
// move forward. A dispatcher that stops gives its lease up.
//
// # Pruning
//
// Every minute the holder deletes, in batches of 500, the records every
// configured sink has delivered that are older than retention. Cursors of
// sinks no longer configured do not hold records back.
package outbox
