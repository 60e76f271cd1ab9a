package alerts

import "sharpeye/alerts/cases"

// SetReadings sets where the case workflow looks up the sensor readings
// around an alert to attach them as evidence (the node passes the
// analytics store's telemetry); nil, the default, gathers none. Call it
// before Run.
func (a *Alerts) SetReadings(r cases.Readings) { a.cases.SetReadings(r) }
