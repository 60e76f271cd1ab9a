package bus

import (
	"errors"
	"fmt"
)

// Errors callers test with errors.Is.
var (
	// ErrClosed is returned by Publish and Consume once the bus has shut
	// down (its Run returned), or when Run failed to start.
	ErrClosed = errors.New("bus closed")
	// ErrInvalid is wrapped by the errors of Publish and Consume when an
	// argument can never succeed: a message without a topic, a batch size
	// below one, no handler.
	ErrInvalid = errors.New("invalid argument")
)

// MaxTopicLen is the longest topic name, as in Kafka.
const MaxTopicLen = 249

// CheckTopic reports whether name can be a topic: 1 to 249 characters
// among ASCII letters, digits, '.', '_' and '-', as Kafka requires.
func CheckTopic(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty topic", ErrInvalid)
	}
	if len(name) > MaxTopicLen {
		return fmt.Errorf("%w: topic longer than %d characters", ErrInvalid, MaxTopicLen)
	}
	if name == "." || name == ".." {
		return fmt.Errorf("%w: topic %q", ErrInvalid, name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: topic %q: only letters, digits, '.', '_' and '-' are allowed", ErrInvalid, name)
		}
	}
	return nil
}

// CheckConsume checks the arguments of Consume, for implementations.
func CheckConsume(group string, topics []string, maxBatch int, h Handler) error {
	if group == "" {
		return fmt.Errorf("%w: empty consumer group", ErrInvalid)
	}
	if len(topics) == 0 {
		return fmt.Errorf("%w: no topics", ErrInvalid)
	}
	for _, t := range topics {
		if err := CheckTopic(t); err != nil {
			return err
		}
	}
	if maxBatch < 1 {
		return fmt.Errorf("%w: maxBatch %d is below 1", ErrInvalid, maxBatch)
	}
	if h == nil {
		return fmt.Errorf("%w: nil handler", ErrInvalid)
	}
	return nil
}
