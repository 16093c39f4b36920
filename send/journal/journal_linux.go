package journal

import (
	"syscall"

	bolt "go.etcd.io/bbolt"
)

// trim tells the kernel we are done with the journal's mapped pages
// (madvise MADV_DONTNEED). bbolt reads the file through a shared mmap, and
// every page a lookup or a copy-on-write update touched stays mapped: over a
// run of a million recipients the whole file (≈100 MB) would show in the
// process's RSS, although it is only page cache. Dropping the mappings
// costs nothing but a page fault on the next access. It runs inside a read
// transaction, which holds bbolt's mmap lock: the mapping cannot be moved
// (remapped on growth) under the call.
func (j *Journal) trim() {
	_ = j.db.View(func(tx *bolt.Tx) error {
		data, size := j.db.Info().Data, uintptr(tx.Size())
		if data != 0 && size > 0 {
			_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, data, size, syscall.MADV_DONTNEED)
		}
		return nil
	})
}
