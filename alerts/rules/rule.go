package rules

import (
	"sharpeye/configs/conf"
)

// Rule is one alert rule, as written in the configuration (alerts.rules)
// and as the API takes and shows it. See the package documentation for the
// meaning of each field.
type Rule struct {
	// ID identifies the rule: lowercase letters, digits, '-' and '_'.
	ID string `yaml:"id" json:"id"`
	// Name is shown to people.
	Name string `yaml:"name" json:"name"`
	// Enabled switches the rule on or off; nil (absent) means on.
	Enabled *bool `yaml:"enabled,omitempty" json:"enabled,omitempty"`
	// Match selects the events the rule looks at.
	Match Match `yaml:"match,omitempty" json:"match,omitzero"`
	// When is an optional condition in the expr language over the event.
	When string `yaml:"when,omitempty" json:"when,omitempty"`
	// For is how long match and when must hold, per group, before firing.
	For conf.Duration `yaml:"for,omitempty" json:"for,omitempty"`
	// Count is how many matching events must fall within Window (default 1).
	Count int `yaml:"count,omitempty" json:"count,omitempty"`
	// Window is the sliding window of Count.
	Window conf.Duration `yaml:"window,omitempty" json:"window,omitempty"`
	// Schedule limits the rule to periods of the week.
	Schedule *Schedule `yaml:"schedule,omitempty" json:"schedule,omitempty"`
	// Correlate requires a second event near the first.
	Correlate *Correlate `yaml:"correlate,omitempty" json:"correlate,omitempty"`
	// GroupBy says what one firing (and so one case) is about; default [source].
	GroupBy []string `yaml:"group_by,omitempty" json:"group_by,omitempty"`
	// Cooldown turns further firings of a group within it into repeats.
	Cooldown conf.Duration `yaml:"cooldown,omitempty" json:"cooldown,omitempty"`
	// Inhibits suppresses other rules' firings while this one's is active.
	Inhibits *Inhibits `yaml:"inhibits,omitempty" json:"inhibits,omitempty"`
	// Case is what the caller makes of a firing.
	Case Case `yaml:"case" json:"case"`
}

// IsEnabled reports whether the rule is switched on (Enabled nil or true).
func (r *Rule) IsEnabled() bool { return r.Enabled == nil || *r.Enabled }

// Match selects events. Every field given must match (AND); within a list
// any entry may match (OR). The zero Match matches every event.
type Match struct {
	// Types are globs over the event type (path.Match syntax: "detection.*").
	Types []string `yaml:"types,omitempty" json:"types,omitempty"`
	// SourceKinds are source kinds: camera, device, analyser, system, person.
	SourceKinds []string `yaml:"source_kinds,omitempty" json:"source_kinds,omitempty"`
	// Sources are globs over the source ID.
	Sources []string `yaml:"sources,omitempty" json:"sources,omitempty"`
	// Tags: the event carries at least one of them.
	Tags []string `yaml:"tags,omitempty" json:"tags,omitempty"`
	// Regions: the event's region lies within one of these subtrees.
	Regions []string `yaml:"regions,omitempty" json:"regions,omitempty"`
	// Grids: the event's grid is one of these.
	Grids []string `yaml:"grids,omitempty" json:"grids,omitempty"`
	// DeviceKinds: the event's attribute device_kind is one of these.
	DeviceKinds []string `yaml:"device_kinds,omitempty" json:"device_kinds,omitempty"`
	// Classes: the event's attribute class is one of these.
	Classes []string `yaml:"classes,omitempty" json:"classes,omitempty"`
	// MinConfidence: the event's attribute confidence is at least this.
	MinConfidence float64 `yaml:"min_confidence,omitempty" json:"min_confidence,omitempty"`
	// MinSeverity: the event's severity is at least this.
	MinSeverity string `yaml:"min_severity,omitempty" json:"min_severity,omitempty"`
}

// Schedule limits a rule to periods of the week in a time zone.
type Schedule struct {
	// Timezone is an IANA name; default Asia/Shanghai.
	Timezone string `yaml:"timezone,omitempty" json:"timezone,omitempty"`
	// Periods are the active periods; none means always active.
	Periods []Period `yaml:"periods,omitempty" json:"periods,omitempty"`
}

// Period is a daily period on some days of the week. From is inclusive, To
// exclusive; a period with To before From crosses midnight and belongs to
// the day it starts on.
type Period struct {
	// Days are mon, tue, wed, thu, fri, sat, sun; none means every day.
	Days []string `yaml:"days,omitempty" json:"days,omitempty"`
	// From is "HH:MM".
	From string `yaml:"from" json:"from"`
	// To is "HH:MM" ("24:00" for the end of the day).
	To string `yaml:"to" json:"to"`
}

// Correlate makes a rule fire only when a second kind of event arrives
// within Within of the first, in the same group, in either order.
type Correlate struct {
	Match  Match         `yaml:"match,omitempty" json:"match,omitzero"`
	When   string        `yaml:"when,omitempty" json:"when,omitempty"`
	Within conf.Duration `yaml:"within" json:"within"`
}

// Inhibits is a suppression (Alertmanager's inhibit rules): while a firing
// of this rule is active (for Hold after it), firings of Rules whose events
// share its values of Equal are marked suppressed.
type Inhibits struct {
	Rules []string `yaml:"rules" json:"rules"`
	// Equal lists what must agree: region (the target within the source's
	// region subtree), grid, source, camera, device, type or attr.<name>.
	Equal []string `yaml:"equal,omitempty" json:"equal,omitempty"`
	// Hold is how long a firing inhibits; default the cooldown, at least 1m.
	Hold conf.Duration `yaml:"hold,omitempty" json:"hold,omitempty"`
}

// Case is what the caller does with a firing.
type Case struct {
	// Category is the case category id; the caller checks it exists.
	Category string `yaml:"category" json:"category"`
	// Risk is the base risk score, 0 to 100.
	Risk int `yaml:"risk" json:"risk"`
	// RiskPerRepeat is added per repeat by the caller, capped at 100.
	RiskPerRepeat int `yaml:"risk_per_repeat,omitempty" json:"risk_per_repeat,omitempty"`
	// Title and Description are text/templates over the triggering event.
	Title       string `yaml:"title,omitempty" json:"title,omitempty"`
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	// Elements are text/templates, like Title, for the seven elements (七要素)
	// the case gets from the event, by name: when, where, who, what,
	// circumstances, cause, object. Those given replace what the caller
	// fills by default (when, where, what and object from the events);
	// the others are left for people to fill.
	Elements map[string]string `yaml:"elements,omitempty" json:"elements,omitempty"`
}
