package device

import "time"

// State is a device's liveness as the intake sees it.
type State string

// States.
const (
	// StateUnknown: nothing heard since this node started, and no reporting
	// interval has run out yet.
	StateUnknown State = "unknown"
	// StateOnline: the device reports (or said it is online).
	StateOnline State = "online"
	// StateOffline: the device said it is offline (its MQTT last will), or
	// was silent for one and a half reporting intervals.
	StateOffline State = "offline"
	// StateDisabled: the record is disabled.
	StateDisabled State = "disabled"
)

// Status is what the intake knows of a device since this node started.
type Status struct {
	State State `json:"state"`
	// Since is when the device entered State.
	Since *time.Time `json:"since,omitempty"`
	// LastSeen is when the device last sent an accepted message.
	LastSeen *time.Time `json:"last_seen,omitempty"`
	// Connected is true while the device holds a session on the embedded
	// MQTT broker of this node.
	Connected bool `json:"connected"`
	// Messages counts the device's accepted messages; Rejected those
	// dead-lettered or refused by the broker's access control.
	Messages uint64 `json:"messages"`
	Rejected uint64 `json:"rejected"`
	// LastRejection says why the last rejected message was refused.
	LastRejection string `json:"last_rejection,omitempty"`
}

// StatusSource tells a device's status: the MQTT intake.
type StatusSource interface {
	DeviceStatus(id string) (Status, bool)
}
