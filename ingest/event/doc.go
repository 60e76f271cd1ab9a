// Package event defines the event: the one versioned contract between Sharpeye's
// ingest role and everything after it (the Kafka bus, the rules engine, ClickHouse
// analytics). Cameras, sensors, AI boxes, people and Sharpeye itself all report what
// they know as events.
//
// # Wire format
//
// An event is one JSON object in UTF-8:
//
//	{
//	  "schema": 1,
//	  "id": "01a1fcd5-4e7b-7e5f-8a6b-7c8d9e0f1a2b",
//	  "time": "2026-11-21T06:40:00.123Z",
//	  "source": {"kind": "analyser", "id": "box-17", "name": "新庄村口"},
//	  "type": "detection.person",
//	  "severity": "warning",
//	  "location": {"region": "huangpi/wangjiahe/xinzhuang", "grid": "g-0412", "lat": 30.87, "lon": 114.38},
//	  "attributes": {"confidence": 0.93, "camera": "cam-0042", "night": true},
//	  "tags": ["perimeter"],
//	  "evidence": [{"kind": "snapshot", "ref": "snap/2026/11/21/0640.jpg", "content_type": "image/jpeg"}],
//	  "key": "camera:cam-0042"
//	}
//
// The fields are:
//
//   - schema: the schema version, 1 to [SchemaVersion]. Required.
//   - id: a UUIDv7 (RFC 9562) in canonical form; IDs sort by creation time. Required.
//   - time: when it happened, RFC 3339. Written in UTC with exactly three fractional
//     digits; read with any offset and fraction, then converted to UTC and truncated to
//     the millisecond. Between 1970 and the end of 9999. Required.
//   - source: what reported it. kind is camera, device, analyser, system or person; id
//     is 1 to 128 bytes without control characters; name is optional. Required.
//   - type: a dotted lowercase name matching ^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$, at most
//     64 bytes: camera.offline, video.frozen, motion, detection.person, sensor.smoke,
//     telemetry, device.offline. Required.
//   - severity: info, warning, minor, major or critical, in rising order. Required.
//   - location: optional; when present, region is a path of up to 8 segments and 256
//     bytes, such as huangpi/wangjiahe/xinzhuang or 黄陂区/王家河街道/新庄村, each
//     segment made of lowercase a-z, digits, '_', '-' and non-ASCII letters and digits;
//     grid is an optional grid ID; lat (-90 to 90) and lon (-180 to 180) come together.
//   - attributes: optional; up to 64 keys matching ^[a-z][a-z0-9_.]*$ (at most 64
//     bytes), each holding a string of at most 1024 bytes, a finite number or a
//     boolean. Numbers are 64-bit floats: integers beyond ±2^53 that would be rounded
//     are refused, so send those as strings.
//   - tags: optional; up to 32 non-empty strings of at most 64 bytes.
//   - evidence: optional; up to 16 entries, each with a kind (snapshot, clip, event,
//     reading or url), a ref of at most 1024 bytes (an event ID for kind event, an
//     absolute URL for kind url), and optionally content_type, time and sha256 (64
//     lowercase hex digits).
//   - key: optional bus partition key of at most 256 bytes; see [Event.PartitionKey].
//
// Empty optional fields are left out. All text must be valid UTF-8; identifiers (source
// id and name, grid, tags, refs, key) must not hold control characters.
//
// # Limits and strictness
//
// An encoded event is at most [MaxSize] (64 KiB). [Decode] refuses anything that is
// not exactly one event of a schema version it understands: larger input, unknown
// fields, values of the wrong type, data after the object. Its errors are *[Error]
// values naming the offending field, such as "event: evidence[2].ref: missing", so the
// sender of a dead-lettered event can see what to fix. [Event.Encode] validates before
// writing and its output is stable, so equal events encode to equal bytes.
//
// Decode reads the usual input (what Encode writes, in any spacing) with a
// decoder of its own, about three times faster than encoding/json, and
// hands anything unusual (escapes, nulls, repeated or differently cased
// names) to encoding/json, which accepts or refuses it and explains why; a
// fuzz test holds the two to the same result.
//
// # Versions
//
// Consumers refuse events with a schema newer than they understand and events with
// fields they do not know. A change that adds or alters a field therefore raises
// SchemaVersion, and consumers are upgraded before producers start writing it.
package event
