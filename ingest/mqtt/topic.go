package mqtt

import "strings"

// Message types: the last level of a topic.
const (
	MsgTelemetry  = "telemetry"
	MsgEvent      = "event"
	MsgStatus     = "status"
	MsgDetections = "detections"
)

// Topic roots.
const (
	DevicesRoot   = "sharpeye/devices/"
	AnalysersRoot = "sharpeye/analysers/"
)

// Topic is a parsed intake topic: sharpeye/devices/{id}/{kind} or
// sharpeye/analysers/{id}/{kind}.
type Topic struct {
	Analyser bool
	ID       string
	Type     string // telemetry, event, status or detections
}

// ParseTopic checks a topic against the scheme (see the package
// documentation).
func ParseTopic(t string) (Topic, *Rejection) {
	var out Topic
	rest, ok := strings.CutPrefix(t, DevicesRoot)
	if !ok {
		if rest, ok = strings.CutPrefix(t, AnalysersRoot); !ok {
			return Topic{}, reject(ClassTopic, "topic", "%s is outside the scheme: sharpeye/devices/{id}/{telemetry|event|status} or sharpeye/analysers/{id}/{detections|status|event|telemetry}", quote(t))
		}
		out.Analyser = true
	}
	id, kind, ok := strings.Cut(rest, "/")
	if !ok || !validID(id) {
		return Topic{}, reject(ClassTopic, "topic", "%s does not name a device id (1-64 characters of a-z, 0-9, _ and -) after %s", quote(t), strings.TrimSuffix(t[:len(t)-len(rest)], "/"))
	}
	out.ID, out.Type = id, kind
	switch kind {
	case MsgTelemetry, MsgEvent, MsgStatus:
	case MsgDetections:
		if !out.Analyser {
			return Topic{}, reject(ClassTopic, "topic", "%s: detections come from analysers, under sharpeye/analysers/{id}/detections", quote(t))
		}
	default:
		return Topic{}, reject(ClassTopic, "topic", "%s: unknown message type %s; one of telemetry, event, status (and detections for analysers)", quote(t), quote(kind))
	}
	return out, nil
}

// String returns the topic.
func (t Topic) String() string {
	root := DevicesRoot
	if t.Analyser {
		root = AnalysersRoot
	}
	return root + t.ID + "/" + t.Type
}

// subscriptions are the filters the intake subscribes to on an external
// broker: exactly the scheme, so that other traffic (commands to devices)
// is not taken for bad input.
var subscriptions = []string{
	DevicesRoot + "+/" + MsgTelemetry,
	DevicesRoot + "+/" + MsgEvent,
	DevicesRoot + "+/" + MsgStatus,
	AnalysersRoot + "+/" + MsgDetections,
	AnalysersRoot + "+/" + MsgTelemetry,
	AnalysersRoot + "+/" + MsgEvent,
	AnalysersRoot + "+/" + MsgStatus,
}
