package event

// Device liveness events: the ingest role publishes TypeDeviceOffline once
// when a device falls silent past its interval (or its last will arrives)
// and TypeDeviceOnline when it speaks again; the analytics questions count
// them for silent and flapping devices.
const (
	TypeDeviceOffline = "device.offline"
	TypeDeviceOnline  = "device.online"
)
