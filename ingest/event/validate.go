package event

import (
	"encoding/json"
	"fmt"
	"maps"
	"mime"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Validate reports the first way e breaks the schema, as an *Error naming the field,
// or nil. Fields are checked in the order they are encoded; attributes by sorted key.
func (e *Event) Validate() error {
	if err := e.validate(); err != nil {
		return err
	}
	return nil
}

func (e *Event) validate() *Error {
	if err := checkSchema(e.Schema); err != nil {
		return err
	}

	if e.ID.IsZero() {
		return fieldError("id", "missing; set it to a UUIDv7")
	}
	if err := e.ID.check(); err != nil {
		return at("id", err)
	}

	if e.Time.IsZero() {
		return fieldError("time", "missing")
	}
	if err := e.Time.checkRange(); err != nil {
		return at("time", err)
	}

	if err := e.Source.validate(); err != nil {
		return at("source", err)
	}

	if reason := checkType(e.Type); reason != "" {
		return fieldError("type", reason)
	}

	if !e.Severity.Valid() {
		return fieldError("severity", notOneOf("severity", string(e.Severity), severities))
	}

	if err := e.Location.validate(); err != nil {
		return at("location", err)
	}

	if err := validateAttributes(e.Attributes); err != nil {
		return err
	}

	if len(e.Tags) > MaxTags {
		return fieldError("tags", "has "+strconv.Itoa(len(e.Tags))+" tags; the limit is "+strconv.Itoa(MaxTags))
	}
	for i, tag := range e.Tags {
		if tag == "" {
			return fieldError("tags["+strconv.Itoa(i)+"]", "empty; leave empty tags out")
		}
		if reason := checkText(tag, MaxTagLen, false, true); reason != "" {
			return fieldError("tags["+strconv.Itoa(i)+"]", reason)
		}
	}

	if len(e.Evidence) > MaxEvidence {
		return fieldError("evidence", "has "+strconv.Itoa(len(e.Evidence))+" entries; the limit is "+strconv.Itoa(MaxEvidence))
	}
	for i := range e.Evidence {
		if err := e.Evidence[i].validate(); err != nil {
			return at("evidence["+strconv.Itoa(i)+"]", err)
		}
	}

	if reason := checkText(e.Key, MaxKeyLen, false, true); reason != "" {
		return fieldError("key", reason)
	}
	return nil
}

func checkSchema(v int) *Error {
	n := strconv.Itoa(SchemaVersion)
	switch {
	case v > SchemaVersion:
		return fieldError("schema", "version "+strconv.Itoa(v)+" is newer than this build understands (up to "+n+
			"); upgrade the consumer, or have the producer send schema "+n)
	case v == 0:
		return fieldError("schema", "missing; set it to "+n)
	case v < 1:
		return fieldError("schema", "must be between 1 and "+n+", got "+strconv.Itoa(v))
	}
	return nil
}

var (
	sourceKinds   = []string{"camera", "device", "analyser", "system", "person"}
	severities    = []string{"info", "warning", "minor", "major", "critical"}
	evidenceKinds = []string{"snapshot", "clip", "event", "reading", "url"}
)

// notOneOf explains that v, a what, is not one of valid.
func notOneOf(what, v string, valid []string) string {
	list := strings.Join(valid, ", ")
	if v == "" {
		return "missing; must be one of " + list
	}
	return "unknown " + what + " " + quoteShort(v) + "; must be one of " + list
}

func (s *Source) validate() *Error {
	if !s.Kind.Valid() {
		return fieldError("kind", notOneOf("kind", string(s.Kind), sourceKinds))
	}
	if reason := checkText(s.ID, MaxSourceIDLen, true, true); reason != "" {
		return fieldError("id", reason)
	}
	if reason := checkText(s.Name, MaxSourceNameLen, false, true); reason != "" {
		return fieldError("name", reason)
	}
	return nil
}

func (l *Location) validate() *Error {
	if *l == (Location{}) {
		return nil
	}
	if l.Region == "" {
		return fieldError("region", "missing; a location needs a region such as \"huangpi/wangjiahe/xinzhuang\"")
	}
	if reason := checkRegion(l.Region); reason != "" {
		return fieldError("region", reason)
	}
	if reason := checkText(l.Grid, MaxGridLen, false, true); reason != "" {
		return fieldError("grid", reason)
	}
	if err := checkCoordinate("lat", l.Lat, 90); err != nil {
		return err
	}
	if err := checkCoordinate("lon", l.Lon, 180); err != nil {
		return err
	}
	switch {
	case l.Lat != nil && l.Lon == nil:
		return fieldError("lon", "missing; lat and lon go together")
	case l.Lat == nil && l.Lon != nil:
		return fieldError("lat", "missing; lat and lon go together")
	}
	return nil
}

func checkCoordinate(field string, v *float64, limit float64) *Error {
	switch {
	case v == nil:
		return nil
	case !finite(*v):
		return fieldError(field, "must be a finite number")
	case *v < -limit || *v > limit:
		return fieldError(field, "must be between "+strconv.FormatFloat(-limit, 'g', -1, 64)+
			" and "+strconv.FormatFloat(limit, 'g', -1, 64)+", got "+strconv.FormatFloat(*v, 'g', -1, 64))
	}
	return nil
}

// checkRegion explains what is wrong with the region path s, or returns "".
func checkRegion(s string) string {
	if validRegions.has(s) {
		return ""
	}
	reason := checkRegionSegments(s)
	if reason == "" {
		validRegions.add(s)
	}
	return reason
}

func checkRegionSegments(s string) string {
	if len(s) > MaxRegionLen {
		return tooLong(len(s), MaxRegionLen)
	}
	const allowed = "; a segment may hold lowercase a-z, digits, '_', '-' and non-ASCII letters and digits"
	n := 0
	for seg := range strings.SplitSeq(s, "/") {
		if n++; n > MaxRegionSegments {
			return "has " + strconv.Itoa(strings.Count(s, "/")+1) + " segments; the limit is " + strconv.Itoa(MaxRegionSegments)
		}
		if seg == "" {
			return "has an empty segment; separate segments with a single \"/\", with none at either end"
		}
		for _, r := range seg {
			switch {
			case 'a' <= r && r <= 'z', '0' <= r && r <= '9', r == '_', r == '-':
			case r >= utf8.RuneSelf && r != utf8.RuneError && (unicode.IsLetter(r) || unicode.IsDigit(r)):
			default:
				return "segment " + quoteShort(seg) + " contains " + strconv.QuoteRune(r) + allowed
			}
		}
	}
	return ""
}

// checkType explains what is wrong with the event type s, or returns "".
func checkType(s string) string {
	const want = " is not a dotted lowercase name such as \"camera.offline\" or \"detection.person\""
	switch {
	case s == "":
		return "missing; set it to a dotted lowercase name such as \"camera.offline\""
	case len(s) > MaxTypeLen:
		return tooLong(len(s), MaxTypeLen)
	case s[0] < 'a' || s[0] > 'z':
		return quoteShort(s) + want + " (it must start with a letter a-z)"
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '_':
		case c == '.' && s[i-1] != '.' && i < len(s)-1:
		default:
			return quoteShort(s) + want
		}
	}
	return ""
}

// validateAttributes checks attrs, reporting the problem with the first key in sorted
// order.
func validateAttributes(attrs map[string]any) *Error {
	if len(attrs) > MaxAttributes {
		return fieldError("attributes", "has "+strconv.Itoa(len(attrs))+" keys; the limit is "+strconv.Itoa(MaxAttributes))
	}
	bad := false
	for k, v := range attrs {
		if checkAttribute(k, v) != "" {
			bad = true
			break
		}
	}
	if !bad {
		return nil
	}
	// Sort only now, so the common case does not allocate and errors are stable.
	for _, k := range slices.Sorted(maps.Keys(attrs)) {
		if reason := checkAttribute(k, attrs[k]); reason != "" {
			return fieldError(keyPath(k), reason)
		}
	}
	return nil
}

// checkAttribute explains what is wrong with the attribute k = v, or returns "".
func checkAttribute(k string, v any) string {
	if reason := checkAttributeKey(k); reason != "" {
		return reason
	}
	switch v := v.(type) {
	case string:
		return checkText(v, MaxAttributeText, false, false)
	case float64:
		if !finite(v) {
			return "must be a finite number"
		}
	case bool:
	case json.Number:
		if _, reason := parseNumber(v); reason != "" {
			return reason
		}
		return "is a json.Number; store numbers as float64"
	case nil:
		return "is null; leave the attribute out instead"
	case map[string]any:
		return "is an object; attribute values must be strings, numbers or booleans"
	case []any:
		return "is an array; attribute values must be strings, numbers or booleans"
	default:
		return "has Go type " + fmt.Sprintf("%T", v) + "; attribute values must be string, float64 or bool"
	}
	return ""
}

func checkAttributeKey(k string) string {
	switch {
	case len(k) > MaxAttributeKey:
		return "key is " + strconv.Itoa(len(k)) + " bytes; the limit is " + strconv.Itoa(MaxAttributeKey)
	case k == "" || k[0] < 'a' || k[0] > 'z':
		return "key must start with a lowercase letter a-z and hold only a-z, 0-9, '_' and '.'"
	}
	for i := 1; i < len(k); i++ {
		if c := k[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '.') {
			return "key must start with a lowercase letter a-z and hold only a-z, 0-9, '_' and '.'"
		}
	}
	return ""
}

func (ev *Evidence) validate() *Error {
	if !ev.Kind.Valid() {
		return fieldError("kind", notOneOf("kind", string(ev.Kind), evidenceKinds))
	}
	if reason := checkText(ev.Ref, MaxRefLen, true, true); reason != "" {
		return fieldError("ref", reason)
	}
	switch ev.Kind {
	case EvidenceEvent:
		if _, err := parseID(ev.Ref); err != nil {
			return fieldError("ref", "must be the ID of the event: "+err.Reason)
		}
	case EvidenceURL:
		if u, err := url.Parse(ev.Ref); err != nil || !u.IsAbs() {
			return fieldError("ref", "must be an absolute URL such as \"https://…\", got "+quoteShort(ev.Ref))
		}
	}
	if ev.ContentType != "" {
		if reason := checkText(ev.ContentType, MaxContentTypeLen, false, true); reason != "" {
			return fieldError("content_type", reason)
		}
		if !validMediaTypes.has(ev.ContentType) {
			if t, _, err := mime.ParseMediaType(ev.ContentType); err != nil || !strings.Contains(t, "/") {
				return fieldError("content_type", quoteShort(ev.ContentType)+" is not a media type such as \"image/jpeg\"")
			}
			validMediaTypes.add(ev.ContentType)
		}
	}
	if ev.Time != nil {
		if err := ev.Time.checkRange(); err != nil {
			return at("time", err)
		}
	}
	if ev.SHA256 != "" && !isLowerHex(ev.SHA256, 64) {
		return fieldError("sha256", "must be 64 lowercase hexadecimal digits, got "+quoteShort(ev.SHA256))
	}
	return nil
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// checkText explains what is wrong with s, or returns "": it must be valid UTF-8 of at
// most limit bytes, non-empty if required, and free of control characters if
// noControl.
func checkText(s string, limit int, required, noControl bool) string {
	switch {
	case s == "" && required:
		return "missing"
	case len(s) > limit:
		return tooLong(len(s), limit)
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return "is not valid UTF-8 (bad byte at offset " + strconv.Itoa(i) + ")"
		}
		if noControl && unicode.IsControl(r) {
			return "contains the control character " + strconv.QuoteRune(r) + " at byte " + strconv.Itoa(i)
		}
		i += size
	}
	return ""
}

func tooLong(n, limit int) string {
	return "is " + strconv.Itoa(n) + " bytes; the limit is " + strconv.Itoa(limit)
}
