package event

// TypeCameraHealth is the per-camera health sample the ingest role
// publishes once per window (ingest.health_report, a minute by default)
// and the analytics sink stores as one camera_health row: the contract
// between the two. Its source is the camera, its time the end of the
// window, its location the camera's; its attributes are the Health*
// keys below.
const TypeCameraHealth = "camera.health"

// Attribute keys of a TypeCameraHealth event.
const (
	// HealthWindow is the window's length in seconds (a number).
	HealthWindow = "window_seconds"
	// HealthOnline is the seconds of the window the camera was online.
	HealthOnline = "online_seconds"
	// HealthBitrate is the mean bitrate over the window, in kbit/s.
	HealthBitrate = "bitrate_kbps"
	// HealthFPS is frames received per second of the window.
	HealthFPS = "fps"
	// HealthPackets and HealthLost are RTP packets received and lost in
	// the window.
	HealthPackets = "packets"
	HealthLost    = "packets_lost"
	// HealthFaults lists the quality conditions raised in the window,
	// sorted and comma-separated ("" for none): a string.
	HealthFaults = "faults"
	// HealthVendor is the camera's vendor (a string, may be empty).
	HealthVendor = "vendor"
	// HealthState is the camera's pull state at the window's end (a string).
	HealthState = "state"
)
