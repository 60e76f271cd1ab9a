//go:build !unix

package kafka

// lockDir does nothing where flock is missing: do not share a spool_dir.
func lockDir(string) (func() error, error) { return func() error { return nil }, nil }
