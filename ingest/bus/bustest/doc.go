// Package bustest is the conformance suite every bus implementation passes:
// the embedded bus and Kafka (on kfake) run the same tests, so that code
// written against bus.Bus behaves the same on both.
//
// The suite asserts what a user would notice: messages arrive with their
// keys and headers, each key keeps its order, a handler's error redelivers
// the batch, committed messages are not delivered again to the group, each
// group sees everything, members of a group share the work, the
// Rebalance hooks tell each member which partitions it holds (never two
// members at once, before any of their messages, through joins and
// leaves), back-pressure holds messages instead of dropping them, and
// cancellation returns. It makes no timed assertions; Options.Timeout only
// catches hangs.
//
// Use it from a test of the implementation:
//
//	func TestConformance(t *testing.T) {
//		bustest.Run(t, bustest.Options{
//			New: func(t testing.TB) bus.Bus { return startMyBus(t) },
//		})
//	}
package bustest
