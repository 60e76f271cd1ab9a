// Package gen makes up a county's history for the analytics store: the
// events, case changes and camera health a real county would have sent
// through the bus over weeks or months, deterministically from a seed.
// The analytics benchmarks fill their stores with it
// (`sharpeye bench analytics`), and tests that need realistic volumes use
// it.
//
// # The county
//
// County builds the place: a county (示范县) of townships (街道 in the
// county town, 镇 around it), each with villages or communities (村,
// 社区), each cut into grids (网格); cameras placed in the villages by
// how busy their grids are, looking at village entrances, crossings,
// school gates, markets, river banks..., from three vendors (hikvision,
// dahua, uniview); sensors (smoke, water level, gas, temperature, door,
// gate), alarm buttons and AI boxes that analyse the busiest cameras of
// their township. Some cameras are weak and a few are chronic offenders,
// down a third of the time and flapping; a few cameras are prone to video
// faults; a few devices flap. A handful of grids heat up over the last
// three weeks (up to six times as busy by the end): the hot spots.
//
// # The history
//
// Generate (rows) and Messages (bus messages) make the same history,
// minute after minute:
//
//   - events at EventsPerDay on average, with daily rhythms by type (motion
//     and people by day and in the evening, vehicles at the rush hours,
//     crowds in the evening, forced doors at night, telemetry around the
//     clock) and a weekly one; camera.offline/online at every outage,
//     video.* and camera.degraded with their .cleared at every fault,
//     device.offline/online;
//   - cases at CasesPerDay on average, per category in the shares a county
//     sees (disputes from the window, the 12345 hotline, grid workers and
//     the police feed in office hours or around the clock; alert rules'
//     cases with the events that fired them; equipment faults opened at
//     real outages, later outages of the camera joining the open case,
//     a village's network outage suppressing its cameras' alerts). Each
//     case runs the workflow as alerts/cases records it: registered,
//     assessed (by its rule or a commander), dispatched to the playbook's
//     department, accepted, resolved with an outcome, followed up with a
//     satisfaction (dissatisfied re-opens it) and closed; stages take a
//     lognormal share of their playbook deadline, slower categories run
//     late more often, departments without a duty rota act in working
//     hours, and what the timers do when a deadline passes (reminded,
//     urged, supervised, escalated) is recorded. False alerts are
//     dismissed or resolved not substantiated, at each rule's own rate;
//     some matters are reported twice and merged; a few cases are
//     reassigned, split into two departments' tasks, urged by a
//     supervisor or escalated;
//   - camera.health samples, one per camera per minute, for the last
//     HealthDays days, consistent with the outages and faults.
//
// Rows are made through the analytics package's own constructors
// (EventFromEvent, HealthFromEvent, CaseFromChange) from event.Event and
// cases.Change values, and messages through event.Encode and the case
// changes' JSON, so the history takes the same path as real data.
//
// On the 2-core machine of the benchmarks, 90 days of the Benchmark
// configuration (10 million events, 200,000 cases and their 1.6 million
// case events, 5.8 million camera health rows) take about a minute to
// generate.
package gen
