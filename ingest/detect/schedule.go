package detect

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// schedule is one weekly period of MotionConfig.Schedules.
type schedule struct {
	days       [7]bool // by time.Weekday
	start, end int     // minutes from midnight; end <= start runs past midnight
}

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// parseSchedule reads "DAYS HH:MM-HH:MM", "DAYS" (all day) or
// "HH:MM-HH:MM" (every day). DAYS is daily, a day (mon), a range (mon-fri,
// fri-mon) or a comma-separated list of those.
func parseSchedule(s string) (schedule, error) {
	var sc schedule
	fields := strings.Fields(strings.ToLower(s))
	var days, times string
	switch len(fields) {
	case 1:
		if strings.Contains(fields[0], ":") {
			days, times = "daily", fields[0]
		} else {
			days, times = fields[0], "00:00-24:00"
		}
	case 2:
		days, times = fields[0], fields[1]
	default:
		return sc, fmt.Errorf("%q is not \"DAYS HH:MM-HH:MM\" such as \"mon-fri 22:00-06:00\"", s)
	}
	if err := sc.parseDays(days); err != nil {
		return sc, fmt.Errorf("%q: %w", s, err)
	}
	from, to, ok := strings.Cut(times, "-")
	if !ok {
		return sc, fmt.Errorf("%q: time range %q is not HH:MM-HH:MM", s, times)
	}
	var err error
	if sc.start, err = parseClock(from, false); err != nil {
		return sc, fmt.Errorf("%q: %w", s, err)
	}
	if sc.end, err = parseClock(to, true); err != nil {
		return sc, fmt.Errorf("%q: %w", s, err)
	}
	if sc.start == sc.end {
		return sc, fmt.Errorf("%q: empty time range (for a whole day write 00:00-24:00)", s)
	}
	return sc, nil
}

func (sc *schedule) parseDays(s string) error {
	if s == "daily" || s == "*" {
		sc.days = [7]bool{true, true, true, true, true, true, true}
		return nil
	}
	for part := range strings.SplitSeq(s, ",") {
		from, to, isRange := strings.Cut(part, "-")
		a, ok := dayNames[from]
		if !ok {
			return fmt.Errorf("unknown day %q; days are mon, tue, wed, thu, fri, sat, sun or daily", from)
		}
		b := a
		if isRange {
			if b, ok = dayNames[to]; !ok {
				return fmt.Errorf("unknown day %q; days are mon, tue, wed, thu, fri, sat, sun or daily", to)
			}
		}
		for d := a; ; d = (d + 1) % 7 {
			sc.days[d] = true
			if d == b {
				break
			}
		}
	}
	return nil
}

// parseClock reads HH:MM as minutes from midnight; 24:00 only if end.
func parseClock(s string, end bool) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || len(h) < 1 || len(h) > 2 || len(m) != 2 || err1 != nil || err2 != nil ||
		hh < 0 || mm < 0 || mm > 59 || hh > 24 || hh == 24 && (mm != 0 || !end) {
		return 0, fmt.Errorf("%q is not a time of day HH:MM (00:00 to 23:59, or 24:00 as an end)", s)
	}
	return hh*60 + mm, nil
}

// contains reports whether t (already in the schedules' time zone) falls
// in the period.
func (sc *schedule) contains(t time.Time) bool {
	m := t.Hour()*60 + t.Minute()
	d := t.Weekday()
	if sc.end > sc.start {
		return sc.days[d] && m >= sc.start && m < sc.end
	}
	return sc.days[d] && m >= sc.start || sc.days[(d+6)%7] && m < sc.end
}

// schedules is a camera's motion schedules; empty means always.
type schedules struct {
	periods []schedule
	loc     *time.Location
}

func newSchedules(specs []string, loc *time.Location) (schedules, error) {
	s := schedules{loc: loc}
	for _, spec := range specs {
		sc, err := parseSchedule(spec)
		if err != nil {
			return s, err
		}
		s.periods = append(s.periods, sc)
	}
	return s, nil
}

// active reports whether detection is on at t.
func (s *schedules) active(t time.Time) bool {
	if len(s.periods) == 0 {
		return true
	}
	t = t.In(s.loc)
	for i := range s.periods {
		if s.periods[i].contains(t) {
			return true
		}
	}
	return false
}

// loadLocation loads an IANA time zone. China Standard Time has had no
// daylight saving since 1991, so Asia/Shanghai works without the system's
// zone database (a minimal container may lack it).
func loadLocation(name string) (*time.Location, error) {
	if name == "" {
		return nil, errors.New("must not be empty; use an IANA name such as Asia/Shanghai")
	}
	loc, err := time.LoadLocation(name)
	if err == nil {
		return loc, nil
	}
	if name == "Asia/Shanghai" {
		return time.FixedZone("CST", 8*3600), nil
	}
	return nil, fmt.Errorf("unknown time zone %q; use an IANA name such as Asia/Shanghai", name)
}
