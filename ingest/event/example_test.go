package event_test

import (
	"fmt"
	"time"

	"sharpeye/ingest/event"
)

func ExampleNew() {
	e := event.New(event.SourceDevice, "smoke-3", "sensor.smoke")
	e.Severity = event.SeverityCritical
	e.Location.Region = "黄陂区/王家河街道/新庄村"
	e.SetNumber("obscuration_pct", 12.5)

	data, err := e.Encode()
	if err != nil {
		fmt.Println(err)
		return
	}
	back, err := event.Decode(data)
	if err != nil {
		fmt.Println(err)
		return
	}
	v, _ := back.Number("obscuration_pct")
	fmt.Println(back.Type, back.Severity, back.PartitionKey(), v)
	// Output: sensor.smoke critical device:smoke-3 12.5
}

func ExampleDecode() {
	_, err := event.Decode([]byte(`{"schema":1,"id":"01a1fcd5-4e7b-7e5f-8a6b-7c8d9e0f1a2b",
		"time":"2026-11-21T14:40:00+08:00","source":{"kind":"device","id":"gauge-7"},
		"type":"sensor.water_level","severity":"warning","attributes":{"Level":2.4}}`))
	fmt.Println(err)
	// Output: event: attributes["Level"]: key must start with a lowercase letter a-z and hold only a-z, 0-9, '_' and '.'
}

func ExampleNewTime() {
	cst := time.FixedZone("CST", 8*3600)
	t := event.NewTime(time.Date(2026, 11, 21, 14, 40, 0, 123456789, cst))
	fmt.Println(t)
	// Output: 2026-11-21T06:40:00.123Z
}
