// Package kafka is Sharpeye's production bus on Apache Kafka, through
// kafka-go (github.com/segmentio/kafka-go). It implements bus.Bus and
// passes the conformance suite in package bus/bustest.
//
// # Publishing
//
// Publish sends each message to the partition of its key (murmur2, as
// Kafka's Java client, so other clients agree; round robin without a key)
// and returns once every in-sync replica has it (acks=all). Topics missing
// are created first with the configured partitions and replication.
//
// The produce path is a lane per partition written to, a goroutine owned
// by Run: it gathers the messages of concurrent Publish calls for
// batch_timeout (or until batch_size messages or 1 MiB), sends them in one
// produce request, and sends the next request only when the previous one
// is acknowledged. A request is retried a few times; when it still fails,
// every message queued behind it in the lane fails too. This is what keeps
// each key in order across failures: a later message of a key is never
// written ahead of an earlier one that failed. (kafka-go's Writer splits a
// partition's messages over several batches when they fill, and moves on to
// the next batch when one fails, so it is not used.)
//
// # The spool
//
// When Kafka fails the messages, or has not acknowledged them within
// spool_after, Publish appends the partitions that did not succeed to the
// spool and returns once they are synced to disk (fsync). From then until
// the spool is delivered, every Publish appends to the spool, behind the
// messages already there, so each key keeps its order. Run's drainer
// delivers the spool to Kafka in order, retrying with capped backoff, and
// deletes what it delivered; when it has caught up, Publish sends directly
// again. Messages that timed out may still reach Kafka and are then
// delivered twice: consumers deduplicate by event id, as they must anyway.
//
// The spool lives in spool_dir (by default <data_dir>/spool), locked
// against a second producer. It is a sequence of segment files named by
// their sequence number in hexadecimal (0000000000000001.seg), rolled at
// spool_max_bytes/8 (at most 64 MiB). A segment starts with the 8 bytes
// "SHEYSPL1" and holds records back to back:
//
//	length   4 bytes, big endian: the payload's length (at most 16 MiB)
//	crc      4 bytes, big endian: CRC-32C (Castagnoli) of the payload
//	payload  version (1 byte, 1)
//	         time (varint, Unix nanoseconds)
//	         topic, key, value (each a uvarint length and the bytes)
//	         header count (uvarint), then each header's key and value
//	         (uvarint length and bytes), in key order
//
// A file "checkpoint" ("<segment> <offset>") records how far the first
// segment was delivered, so that a restart sends less twice. Segments are
// only appended to by the process that created them: on start, a new
// segment is begun. A record cut short (a crash while writing, which was
// never acknowledged) or failing its checksum ends its segment: the rest of
// that segment is skipped, counted (sharpeye_kafka_spool_corrupt_total)
// and logged; the spool never stops for it. A spooled message Kafka refuses
// for good (too large for the broker, an invalid topic) is set aside in
// spool_dir/rejected.spool, in the same format, counted and logged.
//
// # Back-pressure
//
// Publish blocks, and never drops, when memory_buffer messages are being
// published already, or when the spool would pass spool_max_bytes (it
// waits for the drainer to delete delivered segments). Both end with the
// caller's context. An empty spool takes a Publish of any size.
//
// # Consuming
//
// Consume joins a consumer group with kafka-go's ConsumerGroup and, for
// each generation, reads the partitions it assigns with one partition
// reader each: it gathers up to maxBatch messages (those arriving within
// maxWait of the first), calls the handler, and commits the offsets
// synchronously only after the handler returned nil; meanwhile it gathers
// the next batch (and, for ConsumeStaged, prepares it). A handler error
// delivers the same batch again after a backoff, without committing;
// nothing is skipped. A generation ends at every rebalance: the batch in
// hand is abandoned unless handled, ConsumeRebalance's Revoked hook runs,
// and only then does the member rejoin, so the next owner starts from the
// committed offset. A new group starts at the oldest message. Lag is
// exported per partition.
//
// # Metrics
//
// sharpeye_kafka_produced_messages_total{path=direct|spool},
// sharpeye_kafka_publish_seconds{path}, sharpeye_kafka_spool_bytes,
// sharpeye_kafka_spool_messages, sharpeye_kafka_spool_writes_total,
// sharpeye_kafka_spooled_messages_total, sharpeye_kafka_spool_corrupt_total,
// sharpeye_kafka_spool_rejected_total, sharpeye_kafka_delivery_errors_total,
// sharpeye_kafka_publish_blocked_total{reason=memory|spool},
// sharpeye_kafka_consumed_messages_total{group},
// sharpeye_kafka_handler_errors_total{group},
// sharpeye_kafka_commit_errors_total{group},
// sharpeye_kafka_fetch_errors_total{group},
// sharpeye_kafka_consumer_lag{group,topic,partition}.
package kafka
