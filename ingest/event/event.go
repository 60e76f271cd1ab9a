package event

import "math"

// SchemaVersion is the newest schema version this package reads and writes.
const SchemaVersion = 1

// MaxSize is the largest encoded event, in bytes, that Decode accepts and Encode
// produces.
const MaxSize = 64 << 10

// Limits on the parts of an event.
const (
	MaxTypeLen        = 64   // bytes in Type
	MaxSourceIDLen    = 128  // bytes in Source.ID
	MaxSourceNameLen  = 256  // bytes in Source.Name
	MaxRegionLen      = 256  // bytes in Location.Region
	MaxRegionSegments = 8    // segments in Location.Region
	MaxGridLen        = 128  // bytes in Location.Grid
	MaxAttributes     = 64   // keys in Attributes
	MaxAttributeKey   = 64   // bytes in an attribute key
	MaxAttributeText  = 1024 // bytes in a string attribute value
	MaxTags           = 32   // entries in Tags
	MaxTagLen         = 64   // bytes in one tag
	MaxEvidence       = 16   // entries in Evidence
	MaxRefLen         = 1024 // bytes in Evidence.Ref
	MaxContentTypeLen = 128  // bytes in Evidence.ContentType
	MaxKeyLen         = 256  // bytes in Key
)

// Event is one thing the platform learned: a camera went offline, an AI box saw a
// person, a smoke sensor fired. See the package documentation for the wire format.
type Event struct {
	// Schema is the schema version the event was written in, 1 to SchemaVersion.
	Schema int `json:"schema"`
	// ID identifies the event and orders events by creation time.
	ID ID `json:"id"`
	// Time is when the event happened, as reported by its source.
	Time Time `json:"time"`
	// Source is what reported the event.
	Source Source `json:"source"`
	// Type is a dotted lowercase name such as "camera.offline" or "detection.person".
	Type string `json:"type"`
	// Severity says how urgent the event is.
	Severity Severity `json:"severity"`
	// Location is where the event happened; zero when unknown.
	Location Location `json:"location,omitzero"`
	// Attributes carries type-specific values: strings, float64 numbers and bools.
	Attributes map[string]any `json:"attributes,omitempty"`
	// Tags are free-form labels.
	Tags []string `json:"tags,omitempty"`
	// Evidence points to what backs the event: snapshots, clips, other events.
	Evidence []Evidence `json:"evidence,omitempty"`
	// Key, when set, is the bus partition key; see PartitionKey.
	Key string `json:"key,omitempty"`
}

// New returns an event of schema SchemaVersion with a fresh ID, the current time and
// severity info, from the source with the given kind and ID.
func New(kind SourceKind, sourceID, typ string) *Event {
	return &Event{
		Schema:   SchemaVersion,
		ID:       NewID(),
		Time:     Now(),
		Source:   Source{Kind: kind, ID: sourceID},
		Type:     typ,
		Severity: SeverityInfo,
	}
}

// PartitionKey returns the key that places the event on the bus: Key when set,
// otherwise "<source kind>:<source id>", so each source's events stay in order.
func (e *Event) PartitionKey() string {
	if e.Key != "" {
		return e.Key
	}
	return string(e.Source.Kind) + ":" + e.Source.ID
}

// Number returns the number attribute key and whether it is set and a number.
func (e *Event) Number(key string) (float64, bool) {
	v, ok := e.Attributes[key].(float64)
	return v, ok
}

// String returns the string attribute key and whether it is set and a string.
func (e *Event) String(key string) (string, bool) {
	v, ok := e.Attributes[key].(string)
	return v, ok
}

// Bool returns the boolean attribute key and whether it is set and a boolean.
func (e *Event) Bool(key string) (bool, bool) {
	v, ok := e.Attributes[key].(bool)
	return v, ok
}

// SetNumber sets the number attribute key.
func (e *Event) SetNumber(key string, v float64) {
	e.set(key, v)
}

// SetString sets the string attribute key.
func (e *Event) SetString(key, v string) {
	e.set(key, v)
}

// SetBool sets the boolean attribute key.
func (e *Event) SetBool(key string, v bool) {
	e.set(key, v)
}

func (e *Event) set(key string, v any) {
	if e.Attributes == nil {
		e.Attributes = make(map[string]any)
	}
	e.Attributes[key] = v
}

// Source is what reported an event.
type Source struct {
	// Kind says what sort of thing the source is.
	Kind SourceKind `json:"kind"`
	// ID identifies the source among those of its kind, such as a camera's ID.
	ID string `json:"id"`
	// Name is an optional human-readable name, such as "新庄村口东".
	Name string `json:"name,omitempty"`
}

// SourceKind says what sort of thing reported an event.
type SourceKind string

// Source kinds.
const (
	SourceCamera   SourceKind = "camera"   // a camera, reporting on itself or its stream
	SourceDevice   SourceKind = "device"   // a sensor or other device, usually over MQTT
	SourceAnalyser SourceKind = "analyser" // a video analyser: an edge AI box or a server model
	SourceSystem   SourceKind = "system"   // Sharpeye itself
	SourcePerson   SourceKind = "person"   // a person: a grid worker, a clerk, a caller
)

// Valid reports whether k is one of the defined source kinds.
func (k SourceKind) Valid() bool {
	switch k {
	case SourceCamera, SourceDevice, SourceAnalyser, SourceSystem, SourcePerson:
		return true
	}
	return false
}

// Severity says how urgent an event is.
type Severity string

// Severities, from least to most urgent.
const (
	SeverityInfo     Severity = "info"
	SeverityWarning  Severity = "warning"
	SeverityMinor    Severity = "minor"
	SeverityMajor    Severity = "major"
	SeverityCritical Severity = "critical"
)

// Rank orders severities: 1 for info up to 5 for critical, and 0 for a severity that
// is not defined.
func (s Severity) Rank() int {
	switch s {
	case SeverityInfo:
		return 1
	case SeverityWarning:
		return 2
	case SeverityMinor:
		return 3
	case SeverityMajor:
		return 4
	case SeverityCritical:
		return 5
	}
	return 0
}

// Valid reports whether s is one of the defined severities.
func (s Severity) Valid() bool {
	return s.Rank() > 0
}

// Location is where an event happened.
type Location struct {
	// Region is the administrative path, from the county down, such as
	// "huangpi/wangjiahe/xinzhuang" or "黄陂区/王家河街道/新庄村".
	Region string `json:"region,omitempty"`
	// Grid identifies the grid (网格) within the region.
	Grid string `json:"grid,omitempty"`
	// Lat and Lon are the WGS 84 coordinates in degrees; both or neither are set.
	Lat *float64 `json:"lat,omitempty"`
	Lon *float64 `json:"lon,omitempty"`
}

// Evidence points to something that backs an event.
type Evidence struct {
	// Kind says what Ref points to.
	Kind EvidenceKind `json:"kind"`
	// Ref locates the evidence: an object-store key or URL for a snapshot or clip, an
	// event ID for an event.
	Ref string `json:"ref"`
	// ContentType is the media type, such as "image/jpeg".
	ContentType string `json:"content_type,omitempty"`
	// Time is when the evidence was captured.
	Time *Time `json:"time,omitempty"`
	// SHA256 is the hex-encoded SHA-256 of the content, in lowercase.
	SHA256 string `json:"sha256,omitempty"`
}

// EvidenceKind says what an Evidence points to.
type EvidenceKind string

// Evidence kinds.
const (
	EvidenceSnapshot EvidenceKind = "snapshot" // a still image
	EvidenceClip     EvidenceKind = "clip"     // a video recording
	EvidenceEvent    EvidenceKind = "event"    // another event; Ref is its ID
	EvidenceReading  EvidenceKind = "reading"  // a sensor reading or series
	EvidenceURL      EvidenceKind = "url"      // a link, such as a camera's live view; Ref is an absolute URL
)

// Valid reports whether k is one of the defined evidence kinds.
func (k EvidenceKind) Valid() bool {
	switch k {
	case EvidenceSnapshot, EvidenceClip, EvidenceEvent, EvidenceReading, EvidenceURL:
		return true
	}
	return false
}

// finite reports whether f is neither infinite nor NaN.
func finite(f float64) bool {
	return !math.IsInf(f, 0) && !math.IsNaN(f)
}
