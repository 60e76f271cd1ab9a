// Package mqtt is the intake of sensors and video analysers: it takes
// their MQTT messages (from its embedded broker, or from an external one
// such as EMQX or Mosquitto) and their HTTP detections, checks every
// payload, turns it into events and publishes them to the bus. What it
// refuses goes to the dead-letter topic with the reason. It also tracks
// each device's liveness (online, offline) and answers for it in the device
// API.
//
// # Topics
//
// A device publishes under its own id (the id of its record in the device
// registry); an analyser (a device of kind analyser) under
// sharpeye/analysers/ instead of sharpeye/devices/:
//
//	sharpeye/devices/{id}/telemetry      readings
//	sharpeye/devices/{id}/event          something happened (a button, a forced door)
//	sharpeye/devices/{id}/status         online / offline (the device's last will)
//	sharpeye/analysers/{id}/detections   one detection or a batch
//	sharpeye/analysers/{id}/status       as for devices
//	sharpeye/analysers/{id}/telemetry    as for devices (box temperature, load)
//	sharpeye/analysers/{id}/event        as for devices (tamper)
//
// Publish with QoS 1. Payloads are UTF-8 JSON of at most max_payload bytes
// (64 KiB by default); unknown fields, wrong types and out-of-range values
// are refused. ts, wherever it appears, is optional: an RFC 3339 string or
// Unix milliseconds; without it the arrival time is used, and so it is when
// ts is more than 30 days old or 10 minutes ahead (a device clock reset
// after a power cut), the event then carrying clock_skew=true and
// device_time.
//
// Telemetry, event type "telemetry", one attribute per reading (numbers,
// true/false, or strings of up to 256 bytes; keys of a-z, 0-9, _ and .; up
// to 48 readings). Thresholds are not applied here: the alert rules do.
//
//	{"ts": "2026-11-21T14:40:00+08:00", "readings": {"smoke": 0.12, "battery": 87}}
//
// Event, event type "sensor.<type>". severity is optional (info, warning,
// minor, major, critical); by default alarm_button.pressed, smoke.alarm,
// fire.alarm, gas.alarm and gas.leak are critical, water_level.high,
// water_level.alarm, door.forced, gate.forced and tamper major, battery.low
// and fault minor, anything else a warning. attributes are as readings.
//
//	{"type": "alarm_button.pressed", "severity": "critical", "attributes": {"zone": "east"}}
//
// Status: the plain words online or offline, or {"state": "online",
// "reason": "...", "ts": ...}. A device should connect with a last will
// publishing offline to its status topic (QoS 1) and publish online once
// connected. A status that changes the device's state makes an event
// device.online or device.offline (attribute via: status, or will when the
// broker sent the last will).
//
// Detections (analysers), event type "detection.<class>", located at the
// camera when the camera is known, else at the analyser; bbox is x, y,
// width and height as fractions (0 to 1) of the frame; a batch holds up to
// 1,000 detections and is refused whole if one is wrong:
//
//	{"camera": "cam-0042", "class": "person", "confidence": 0.93, "bbox": [0.41, 0.22, 0.1, 0.3], "snapshot": "snap/0042/0640.jpg", "ts": 1763707200123}
//	{"detections": [{...}, {...}]}
//
// Every event carries the device's region, grid, coordinates and tags, its
// name, the attribute device_kind, and the source kind device (analyser for
// analysers) with the device id, which keys it on the bus: a device's events
// keep their order.
//
// # The embedded broker
//
// Without mqtt.url Sharpeye runs its own broker (mochi-mqtt) on mqtt.listen.
// A device logs in with the username of its record (by default its id) and
// its password; its client id must be its device id, or its id followed by
// ":" and anything ("smoke-1:fw2"), since whoever logs in with a client id
// takes that session over; its last will, if any, must lie under its own
// topics (sharpeye/analysers/{id}/status for an analyser). A device may
// publish and subscribe only under its own topics; the optional account
// mqtt.username reads sharpeye/# (monitoring, bridges). Changes to the
// device registry apply at once: a device removed, disabled or given a new
// credential loses its session.
//
// # Acknowledgement
//
// Nothing is acknowledged before it is durable on the bus. The embedded
// broker hands a device's QoS 0 and 1 messages to the intake's pipeline as
// they arrive and reads the device's next packets meanwhile; the PUBACKs
// are sent, in the order the messages came, only once their events (or
// dead letters) are published, and only then are accepted messages passed
// on to the broker's own subscribers. A crash loses nothing a device was
// told was received; a full pipeline stops the broker reading, so a slow
// or blocked bus slows the devices down instead of filling memory. QoS 2
// messages wait for the bus within the device's connection. Analysers
// should batch their detections. On an external broker the intake's client
// acknowledges each message (manual acknowledgement) once it is durable; its persistent
// session (fixed client id, clean session off) keeps what arrives while
// Sharpeye is away, and what was not acknowledged is delivered again.
// Delivery is at least once: consumers deduplicate by event id, and a
// message delivered twice makes two events with different ids.
//
// # Refused messages
//
// A refused message (bad topic, unknown or disabled device, too large, not
// JSON, wrong schema) is published to the dead-letter topic: its raw
// payload, with headers reason (the field and what is wrong with it) and
// source (topic and client); it is still acknowledged, since it is durably
// kept. The counter sharpeye_intake_messages_rejected_total counts them by
// reason class. On the embedded broker a device that publishes or
// subscribes outside its own topics is refused by the access control
// (counted in sharpeye_mqtt_acl_denied_total; MQTT 3.1.1 has no way to
// refuse a QoS 1 publish, so the broker closes the connection).
//
// # Liveness
//
// A device silent for one and a half of its reporting interval (interval in
// its record; 0 means no expectation) becomes offline, with one
// device.offline event (via silence); its next message makes it online
// again with a device.online event. A ticker (offline_check) looks for
// silent devices; there is no timer per device.
//
// # HTTP
//
// POST /api/v1/detections, with a service account's API token:
// {"analyser": "box-17", "detections": [...]} (analyser defaults to the
// account's username). Each detection is checked apart; the answer, once
// everything is durable, is 200 with {"accepted", "rejected", "results":
// [{"index": 0, "id": "<event id>"}, {"index": 1, "error": "..."}]}.
package mqtt
