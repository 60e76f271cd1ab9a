// Package rules is the alert rules engine: it decides which events from the
// bus fire which rule. The caller (the alerts role) turns each Firing into a
// governance case, attaches a repeat to the open case, or records a
// suppressed one; this package knows nothing of cases. The case category of
// a rule is a free id here, checked against the categories by the caller.
//
// # Rules
//
// Rules come from the configuration (alerts.rules, type Rules) and from the
// API (Store). A rule selects events with match (every field given must
// hold; entries of one list are alternatives) and an optional when
// condition in the expr language (github.com/expr-lang/expr) over Env:
//
//	when: 'attr.smoke > 0.3 && hasTag("school") && hour >= 22'
//
// The condition is compiled once, when the rule set is compiled; an event
// on which it cannot be evaluated (the attribute is missing or not a number)
// is ignored by the rule and counted in sharpeye_rules_condition_errors_total.
// Ranges (a..b) and more than two predicates (all, any, filter...) are
// refused, so that a condition stays cheap on every event.
//
// Enabled is a *bool: absent means enabled.
//
// A rule fires in one of four ways:
//
//   - plainly: on every event that matches (count 1, the default);
//   - count/window: when count matching events of one group fall within
//     the sliding window (events at 0 s, 30 s and 60 s fall within 60 s;
//     at 0 s, 30 s and 61 s they do not). The window starts afresh after
//     a firing, which carries the window's newest ten events (the older
//     ones are counted, and stored as id and time only);
//   - for: when match and when hold for the duration, per group: the first
//     event that holds starts it, an event of the group that matches but
//     fails when resets it, and the first event at or after its end fires
//     (once per episode). Advance fires durations that complete while a
//     sensor is quiet;
//   - correlate: when an event of the second kind (correlate.match and
//     correlate.when) and one of the first fall within correlate.within of
//     each other, in either order, in the same group. Each event pairs once.
//
// for, count > 1 and correlate exclude each other; for needs when.
//
// schedule limits a rule to periods of the week in its time zone (default
// Asia/Shanghai; the zone database is embedded). A period whose to is before
// its from crosses midnight and belongs to the day it starts on:
// {days: [fri], from: "22:00", to: "06:00"} covers Friday 22:00 to Saturday
// 06:00. hour, minute and weekday in conditions and the time template
// function use the same zone.
//
// group_by says what a firing is about, and so what one case is about:
// source (kind:id), camera (attribute camera of a detection, else the
// source of a camera's event), device (the source of a device's or an
// analyser's event), grid, region, type, or attr.<name>. The default is
// [source]. The group key is "<rule id>|<label>=<value>,...", such as
// "alarm-and-motion|grid=g-07".
//
// cooldown turns a firing of a group within the cooldown of the group's
// previous firing into a repeat (Firing.Repeat): the caller attaches it to
// the open case and adds risk_per_repeat to its risk. Every repeat extends
// the cooldown.
//
// inhibits is Alertmanager's inhibition: for hold after a firing of this
// rule (default the cooldown, at least 1m), firings of the listed rules
// whose event agrees on every label of equal (region: the target's region
// lies within the source's; the others: equal values) carry SuppressedBy,
// the inhibiting firing's group key. Inhibition applies to firings that
// come after the inhibiting one, in event time and in processing order.
//
// case.title and case.description are text/templates over the last
// triggering event (.Type, .Source.Name, .Location.Grid, .Severity...; also
// .Rule, .Events and .Count) with the functions attr "name", region, grid,
// source and time "layout". A failing template falls back to the rule name
// (title) or nothing (description) and is counted. case.elements holds such
// templates for the seven elements (七要素) by name (when, where, who, what,
// circumstances, cause, object); a firing carries them rendered, and the
// case workflow puts them in place of what it takes from the events.
//
// Compile validates a whole rule set and lists every problem with its
// path (rules[2].when: at line 1, column 13: ...); Rules.Validate reports
// the same through the configuration loader (alerts.rules[2].when).
//
// # Time, state and redelivery
//
// Windows, durations, schedules, cooldowns and inhibitions use the event
// time, so a replay gives the same answer. An event older than a count
// rule's window (relative to the group's newest event), or older than the
// newest event of a for rule's group, is ignored and counted in
// sharpeye_rules_late_events_total; older events within the window count.
//
// The per-group state (window contents, for episodes, unpaired correlation
// events, the last firing, and the ids of the events that changed it) is
// kept in a StateStore (SQLState: table rule_state of the case database)
// and written before Process returns, so the caller may commit the bus
// offsets of a batch once it has acted on its firings. The events a firing
// may still need are stored encoded, so a firing after a restart has them
// complete. A group's state is pruned once the newest event seen is older
// than its retention (the largest of window, for, within, cooldown, hold
// and 10 minutes). The ids of the last 256 events that changed a group are
// kept: a redelivered batch is skipped (sharpeye_rules_duplicate_events_total)
// rather than fired twice.
//
// # Partitions
//
// Several alerts nodes divide the events by Locality (alerts.partition_by:
// grid, or region:N, the first N levels of the region path), so that each
// group's events reach one node. An Engine switched to Partition holds the
// state of the partitions Assign gives it (loaded from the store, each
// record keeping its partition; -1 for a single node's) and evaluates
// their events with ProcessPartition; Revoke stores and drops a
// partition's state for its next owner. Advance and pruning touch only
// what the engine holds. A rule whose group_by or inhibits.equal could
// span two localities is refused (Locality.Check, CompileIn; the Store
// after SetLocality): one of group_by must be source, camera, device or
// grid (or region, for region:N), as must one of equal, or region for
// region:N when the rule's match.regions are at least N levels deep. An
// event without a grid (or region) is routed by its region (or source),
// so a group of events lacking the grouped value may be split.
//
// # Store and API
//
// Store merges the configuration's rules with those in the case database
// (tables rules, rule_history and rule_set): a rule in the database
// overrides the configuration's of the same id; deleting a configuration
// rule through the API keeps it, disabled. Every change is compiled with
// the whole set before it is stored and bumps the set's version; Run polls
// the version and hands new sets to the engine (Engine.Replace) on every
// node. API serves /api/v1/rules.
package rules
