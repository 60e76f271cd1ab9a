// Package bus carries messages between Sharpeye's roles: events from
// ingest to the alerts role and the analytics sink, case changes, dead
// letters. Kafka in production (package bus/kafka); an embedded, durable
// bus by default (this package's Embedded). Both pass one conformance
// suite (package bus/bustest).
//
// # The contract
//
// Both implementations keep it:
//   - Publish returns only when every message is durable (acknowledged by
//     all in-sync replicas, or written to the local spool or log), so a
//     source may be acknowledged then; it applies back-pressure (blocks)
//     when the bus cannot keep up, and fails only when ctx ends (or the
//     bus is closed, a message is invalid, the disk fails).
//   - Messages with the same key keep their order, counting each
//     message's first delivery.
//   - A consumer group sees every message of its topics at least once; a
//     message's offset is committed only after the handler returned nil for
//     it, so handlers must be idempotent (by event id). A handler's error
//     delivers the same batch again after a backoff; nothing is skipped.
//   - A handler may come in two steps (StagedConsumer): a Prepare without
//     effects, which the Kafka bus runs for the next batch while the
//     previous batch's Write runs, and the Write, run in order and
//     committed when it returns nil (the embedded bus runs the two in
//     turn). The Kafka bus gathers the next batch while any handler runs.
//   - Several groups each see every message; the members of one group
//     (Consume calls with the same group) share the topics' partitions.
//   - Consume returns nil when its context ends, promptly, even while the
//     handler runs (the handler's context ends too).
//
// # The embedded bus
//
// Embedded keeps an append-only log in SQLite (modernc.org/sqlite, pure
// Go): the file bus.db in a directory the caller gives, in WAL mode. A
// Publish is committed (and, with synchronous: full, synced) before it
// returns, so a crash loses no acknowledged message; the Publish calls
// that wait while a transaction is written share the next one (group
// commit), so that many publishers of a message each pay one sync
// between them.
// The consumer groups' offsets are in the same database.
//
// Messages are stored in record batches, as Kafka stores them: a
// transaction writes one row per partition it touches, holding that
// partition's messages (at most 256, or 256 KiB). The bus lists the rows
// of each partition in memory (about 50 bytes a row), so the database
// needs no index, and each transaction writes little more than its
// messages' pages. A database of an earlier schema (a row per message) is
// converted when the bus opens.
//
// Each topic is split into partitions (partitions, 8 by default) by an
// FNV-1a hash of the key; messages without a key go round robin. Within a
// group, the partitions of each topic are divided among the members in the
// order they joined, and a partition changes hands only between batches,
// after its last batch was committed: each key keeps its order while the
// members' handlers run in parallel. Consumers wait for new messages on a
// signal from Publish, not by polling.
//
// ConsumeRebalance (both buses) tells a member which partitions it is
// given and gives up (Rebalance), so that state kept per partition has one
// owner at a time: a partition is revoked from one member, after its last
// batch was committed, before it is assigned to the next.
//
// A new group starts at the oldest message kept. Its offsets are recorded
// when it first subscribes, so that deletion waits for it from then on.
//
// # Back-pressure and retention
//
// The log is bounded by max_bytes (key, value and headers of each message,
// plus a fixed overhead). A Publish that would take it past the bound first
// deletes the messages every group has committed; when that is not enough
// because a group lags, Publish waits until the group commits more, or its
// context ends. It never drops a message a group has yet to read to make
// room. Messages of topics that no group has ever read are deleted to make
// room, counted (sharpeye_bus_deleted_unread_total) and logged. A group
// that will not come back holds the log (and Publish) until retention
// expires its messages, or until DeleteGroup forgets it.
//
// Messages older than retention are deleted when the bus starts and every
// minute, whether read or not; those a group had not committed are counted
// (sharpeye_bus_expired_unconsumed_total) and logged: retention is the
// operator's bound on how far a group may fall behind.
//
// A batch row that cannot be decoded (a damaged database) is skipped from
// where it is damaged, committed past and counted
// (sharpeye_bus_corrupt_total); damaged partition bounds are repaired from
// the rows present when the bus opens.
//
// # Memory
//
// NewMemory returns the same bus with its log in memory, for tests of
// other packages: the same semantics, without durability.
package bus
