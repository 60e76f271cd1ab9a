package api

import (
	"net/http"
	"strconv"
	"strings"
)

// ETag is the entity tag of a record at version: the version, quoted. With
// IfMatch it gives every versioned record of the API (cameras, devices,
// rules, cases) one optimistic-concurrency scheme: GET answers the ETag, a
// change sends it back as If-Match, and a stale one is refused with 412.
func ETag(version int64) string { return strconv.Quote(strconv.FormatInt(version, 10)) }

// IfMatch returns the version named by r's If-Match header (an ETag, weak
// or not); ok is false without the header. what names the record in the
// error answered to a header that is no version.
func IfMatch(r *http.Request, what string) (version int64, ok bool, err error) {
	im := r.Header.Get("If-Match")
	if im == "" {
		return 0, false, nil
	}
	v, perr := strconv.ParseInt(strings.Trim(strings.TrimPrefix(im, "W/"), `"`), 10, 64)
	if perr != nil {
		return 0, false, BadRequest("If-Match", "must be the %s's version (its ETag)", what)
	}
	return v, true, nil
}
