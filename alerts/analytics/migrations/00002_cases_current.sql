-- cases_current: one row per case, kept by a trigger on case_events, so
-- that the case questions read each case once instead of rebuilding it
-- from its history: as it was opened (its lowest seq: first_seq and the
-- opened time, category, region, source, rule and grid), as it stands (its
-- highest seq: last_seq, state, colour, department, the milestone times,
-- the counts, satisfaction and outcome) and what its history adds up to
-- (resolve actions on time and late, follow-ups by satisfaction). The
-- trigger fires only for rows actually inserted (a replayed row is ignored
-- by id), and rows may arrive in any order: each field is taken from the
-- row with the lower or higher seq. Existing case events are folded in.

-- +goose Up
CREATE TABLE cases_current (
	case_id TEXT PRIMARY KEY,
	first_seq INTEGER NOT NULL,
	time INTEGER NOT NULL,
	category TEXT NOT NULL,
	region TEXT NOT NULL,
	source TEXT NOT NULL,
	rule TEXT NOT NULL,
	grid TEXT NOT NULL,
	last_seq INTEGER NOT NULL,
	state TEXT NOT NULL,
	colour TEXT NOT NULL,
	department TEXT NOT NULL,
	created INTEGER NOT NULL,
	dispatched INTEGER NOT NULL,
	accepted INTEGER NOT NULL,
	resolved INTEGER NOT NULL,
	urge_count INTEGER NOT NULL,
	escalations INTEGER NOT NULL,
	alert_count INTEGER NOT NULL,
	satisfaction TEXT NOT NULL,
	outcome TEXT NOT NULL,
	on_time INTEGER NOT NULL,
	late INTEGER NOT NULL,
	satisfied INTEGER NOT NULL,
	basically INTEGER NOT NULL,
	dissatisfied INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX cases_current_time ON cases_current (time);

INSERT INTO cases_current
SELECT a.case_id, a.first_seq, f.time, f.category, f.region, f.source, f.rule, f.grid,
	a.last_seq, l.state, l.colour, l.department, l.created, l.dispatched, l.accepted, l.resolved,
	l.urge_count, l.escalations, l.alert_count, l.satisfaction, l.outcome,
	a.on_time, a.late, a.satisfied, a.basically, a.dissatisfied
FROM (SELECT case_id, min(seq) AS first_seq, max(seq) AS last_seq,
		sum(action = 'resolve' AND late = 0) AS on_time, sum(action = 'resolve' AND late = 1) AS late,
		sum(action = 'follow_up' AND satisfaction = 'satisfied') AS satisfied,
		sum(action = 'follow_up' AND satisfaction = 'basically') AS basically,
		sum(action = 'follow_up' AND satisfaction = 'dissatisfied') AS dissatisfied
	FROM case_events GROUP BY case_id) AS a
JOIN case_events AS f ON f.case_id = a.case_id AND f.seq = a.first_seq
JOIN case_events AS l ON l.case_id = a.case_id AND l.seq = a.last_seq;

-- +goose StatementBegin
CREATE TRIGGER case_events_current AFTER INSERT ON case_events BEGIN
	INSERT INTO cases_current VALUES (NEW.case_id, NEW.seq, NEW.time, NEW.category, NEW.region, NEW.source, NEW.rule, NEW.grid,
		NEW.seq, NEW.state, NEW.colour, NEW.department, NEW.created, NEW.dispatched, NEW.accepted, NEW.resolved,
		NEW.urge_count, NEW.escalations, NEW.alert_count, NEW.satisfaction, NEW.outcome,
		NEW.action = 'resolve' AND NEW.late = 0, NEW.action = 'resolve' AND NEW.late = 1,
		NEW.action = 'follow_up' AND NEW.satisfaction = 'satisfied',
		NEW.action = 'follow_up' AND NEW.satisfaction = 'basically',
		NEW.action = 'follow_up' AND NEW.satisfaction = 'dissatisfied')
	ON CONFLICT (case_id) DO UPDATE SET
		-- Every expression reads the row as it was before this update.
		first_seq = min(first_seq, excluded.first_seq),
		time = CASE WHEN excluded.first_seq < first_seq THEN excluded.time ELSE time END,
		category = CASE WHEN excluded.first_seq < first_seq THEN excluded.category ELSE category END,
		region = CASE WHEN excluded.first_seq < first_seq THEN excluded.region ELSE region END,
		source = CASE WHEN excluded.first_seq < first_seq THEN excluded.source ELSE source END,
		rule = CASE WHEN excluded.first_seq < first_seq THEN excluded.rule ELSE rule END,
		grid = CASE WHEN excluded.first_seq < first_seq THEN excluded.grid ELSE grid END,
		last_seq = max(last_seq, excluded.last_seq),
		state = CASE WHEN excluded.last_seq > last_seq THEN excluded.state ELSE state END,
		colour = CASE WHEN excluded.last_seq > last_seq THEN excluded.colour ELSE colour END,
		department = CASE WHEN excluded.last_seq > last_seq THEN excluded.department ELSE department END,
		created = CASE WHEN excluded.last_seq > last_seq THEN excluded.created ELSE created END,
		dispatched = CASE WHEN excluded.last_seq > last_seq THEN excluded.dispatched ELSE dispatched END,
		accepted = CASE WHEN excluded.last_seq > last_seq THEN excluded.accepted ELSE accepted END,
		resolved = CASE WHEN excluded.last_seq > last_seq THEN excluded.resolved ELSE resolved END,
		urge_count = CASE WHEN excluded.last_seq > last_seq THEN excluded.urge_count ELSE urge_count END,
		escalations = CASE WHEN excluded.last_seq > last_seq THEN excluded.escalations ELSE escalations END,
		alert_count = CASE WHEN excluded.last_seq > last_seq THEN excluded.alert_count ELSE alert_count END,
		satisfaction = CASE WHEN excluded.last_seq > last_seq THEN excluded.satisfaction ELSE satisfaction END,
		outcome = CASE WHEN excluded.last_seq > last_seq THEN excluded.outcome ELSE outcome END,
		on_time = on_time + excluded.on_time,
		late = late + excluded.late,
		satisfied = satisfied + excluded.satisfied,
		basically = basically + excluded.basically,
		dissatisfied = dissatisfied + excluded.dissatisfied;
END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER case_events_current;
DROP TABLE cases_current;
