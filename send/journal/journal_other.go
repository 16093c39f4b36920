//go:build !linux

package journal

// trim is a no-op where madvise is not used; see journal_linux.go.
func (j *Journal) trim() {}
