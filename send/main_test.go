package send

import (
	"os"
	"testing"
)

// TestMain keeps what a run stores between runs (the MTA-STS policy
// cache, under the user's cache directory) out of the user's home: each
// test binary gets its own, and each lab test its lab's (lab.Start).
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mailroute-send-test-cache-")
	if err != nil {
		panic(err)
	}
	os.Setenv("XDG_CACHE_HOME", dir)
	// The quota ledgers too: a test's relay limits must not reach another
	// test binary, or the user's own ledgers.
	os.Setenv("XDG_STATE_HOME", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
