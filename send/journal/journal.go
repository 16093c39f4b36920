// Package journal is a mailing's on-disk state: one record per recipient
// (its State, attempts, the server's reply) in a bbolt file, written by a
// group commit, so that a re-run resumes instead of sending twice. It is
// separate from package send so that the delivery engine's code and the
// journal's storage (bbolt, fsync, mmap trimming) can be read, tested and
// changed on their own.
package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// commitPace is the least time from one commit's start to the next,
// unless someone waits for a record. A commit costs two fdatasyncs and
// about 70 µs of CPU (bbolt and the kernel) whatever its size; back to back
// they would run 3,000 times a second to a fast server and take a fifth of
// a core. Paced, a commit holds a millisecond's records, and a record's
// latency (Latency) is covered by the workers' lookahead (send's maxLookahead).
const commitPace = time.Millisecond

// trimEvery is how often the committer drops the journal's mapped pages
// from the process (see trim): often enough that they never add up to much.
const trimEvery = 2 * time.Second

// Meta identifies the mailing a journal belongs to.
type Meta struct {
	ListDigest    string // list.Digest of the recipient list
	MessageDigest string // digest of the templates and the config that shapes the message
}

// ErrMismatch is returned by Open when the journal was written
// for another list or message: resuming it would skip or repeat the wrong
// recipients.
var ErrMismatch = errors.New("the journal belongs to another mailing")

var (
	bucketMeta  = []byte("meta")
	bucketRcpts = []byte("rcpt")
)

// Journal is the on-disk state of a mailing (a bbolt file, mode 0600).
//
// Writes go through a group commit: workers hand their records to one
// committer goroutine, which writes every record queued while the previous
// transaction was being synced in one bbolt transaction (one fsync), then
// wakes whoever waits. Put returns a Ticket; Wait blocks until the record
// with that ticket (and every record queued before it) is on disk. A worker
// that must not go on before its record is durable (the attempt before
// RCPT, the data_sent before the dot) waits for its ticket; outcomes are not
// waited for, because losing one in a crash leaves the safe state before it.
// A ticket can be waited for long after the Put, so a worker can queue a
// record early and find it durable, without waiting, when it needs it.
type Journal struct {
	db  *bolt.DB
	run uint32
	now func() time.Time
	// newFrom is the first line after the last with a record when the
	// journal was opened (0: not known). The list is read once, in order,
	// and a line gets a record only after it was read: Get needs no look-up
	// from newFrom on (a fresh run makes none at all).
	newFrom int

	// durable is the last ticket on disk; read without the lock by Wait's
	// fast path.
	durable atomic.Uint64

	mu     sync.Mutex
	queue  []journalOp
	queued Ticket        // the last ticket handed out
	synced chan struct{} // closed (and replaced) after every commit
	kick   chan struct{} // a token when queue went from empty to non-empty
	urgent chan struct{} // a token when someone blocks in Wait: look at awaited
	wanted Ticket        // the highest ticket a Wait has blocked for
	// pace is the least time from one commit's start to the next, unless
	// someone waits (see commitLoop).
	pace time.Duration
	// commitTime is the last commits' average duration, in ns (Latency).
	commitTime atomic.Int64
	err        error // sticky: the first failed commit
	closing    bool
	done       chan struct{}
}

type journalOp struct {
	line   int // 0: a Flush marker, nothing written
	rec    Record
	ticket Ticket
}

// Ticket names one Put, in queue order; Journal.Wait waits for it.
type Ticket uint64

// ticketNever is the ticket of a refused Put: Wait reports why.
const ticketNever = Ticket(math.MaxUint64)

var errJournalClosed = errors.New("journal: closed")

// Open opens or creates the journal at path for the mailing meta
// describes, and starts a new run in it. An existing journal of another
// mailing is refused with ErrMismatch unless fresh is set, in which
// case its records are dropped and the mailing starts over.
func Open(path string, meta Meta, fresh bool) (*Journal, error) {
	return openJournal(path, meta, fresh, commitPace)
}

// openJournal is Open with a commit pace of the caller's choosing
// (tests).
func openJournal(path string, meta Meta, fresh bool, pace time.Duration) (*Journal, error) {
	// 0600: the journal names every recipient and the servers' replies.
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: time.Second,
		// The free list is rebuilt at open instead of written at every
		// commit (as etcd does): one page write less per group commit.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("journal %s is in use by another mailroute run", path)
		}
		return nil, fmt.Errorf("journal %s: %w", path, err)
	}
	// An older file may have been created with another mode (or umask).
	if err := os.Chmod(path, 0o600); err != nil {
		db.Close()
		return nil, fmt.Errorf("journal %s: %w", path, err)
	}
	j := &Journal{db: db, now: time.Now, kick: make(chan struct{}, 1), urgent: make(chan struct{}, 1),
		synced: make(chan struct{}), done: make(chan struct{}), pace: pace}
	err = db.Update(func(tx *bolt.Tx) error {
		m, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if old := m.Get([]byte("list")); old != nil && !fresh {
			if string(old) != meta.ListDigest {
				return fmt.Errorf("%w: the recipient list changed since the journal was started", ErrMismatch)
			}
			if string(m.Get([]byte("message"))) != meta.MessageDigest {
				return fmt.Errorf("%w: the message or its configuration changed since the journal was started", ErrMismatch)
			}
		}
		if fresh {
			if tx.Bucket(bucketRcpts) != nil {
				if err := tx.DeleteBucket(bucketRcpts); err != nil {
					return err
				}
			}
		}
		if _, err := tx.CreateBucketIfNotExists(bucketRcpts); err != nil {
			return err
		}
		if err := m.Put([]byte("list"), []byte(meta.ListDigest)); err != nil {
			return err
		}
		if err := m.Put([]byte("message"), []byte(meta.MessageDigest)); err != nil {
			return err
		}
		if v := m.Get([]byte("run")); len(v) == 4 {
			j.run = binary.BigEndian.Uint32(v)
		}
		j.newFrom = 1
		if k, _ := tx.Bucket(bucketRcpts).Cursor().Last(); len(k) == 8 {
			j.newFrom = int(binary.BigEndian.Uint64(k)) + 1
		}
		j.run++
		return m.Put([]byte("run"), binary.BigEndian.AppendUint32(nil, j.run))
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	go j.commitLoop()
	return j, nil
}

// Run is this run's number in the journal (1 for the first).
func (j *Journal) Run() uint32 { return j.run }

// A record's key is the recipient's line in the list, big-endian. The
// list cannot change under a journal (its digest is checked), so the line
// names the recipient; and the list is read in order, so records are
// written in key order: bbolt appends to its last pages instead of
// touching the whole file, which keeps both the writes and the
// memory-mapped pages in use small for a list of millions.

// Get returns the record of the recipient on line; ok is false when there
// is none (pending).
func (j *Journal) Get(line int) (rec Record, ok bool, err error) {
	if j.newFrom > 0 && line >= j.newFrom {
		return rec, false, nil
	}
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], uint64(line))
	err = j.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketRcpts).Get(k[:])
		if v == nil {
			return nil
		}
		ok = true
		return rec.unmarshal(v)
	})
	return rec, ok, err
}

// Put queues rec for the recipient on line (> 0), stamped with this run
// and the time, and returns its ticket. The record is written with the next
// commit; Wait(ticket) waits for that, and a failure shows in Wait, Flush
// and Close.
func (j *Journal) Put(line int, rec Record) Ticket {
	rec.Run = j.run
	rec.Updated = j.now()
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err != nil || j.closing {
		return ticketNever
	}
	return j.enqueueLocked(journalOp{line: line, rec: rec})
}

// enqueueLocked queues op and wakes the committer; the kick is sent under
// the lock so that Close cannot close the channel in between.
func (j *Journal) enqueueLocked(op journalOp) Ticket {
	j.queued++
	op.ticket = j.queued
	j.queue = append(j.queue, op)
	if len(j.queue) == 1 {
		select {
		case j.kick <- struct{}{}:
		default:
		}
	}
	return op.ticket
}

// Wait blocks until the record with ticket t is on disk, or returns the
// error that keeps it from getting there.
func (j *Journal) Wait(t Ticket) error {
	if t <= Ticket(j.durable.Load()) {
		return nil // the common case when the record was queued early: no lock
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	for {
		switch {
		case t <= Ticket(j.durable.Load()):
			return nil
		case j.err != nil:
			return j.err
		case t > j.queued:
			return errJournalClosed // a Put refused by a closing journal
		}
		ch := j.synced
		j.wanted = max(j.wanted, t)
		select { // the committer may be pacing: no more
		case j.urgent <- struct{}{}:
		default:
		}
		j.mu.Unlock()
		<-ch
		j.mu.Lock()
	}
}

// awaited reports whether a Wait blocks for a record not yet on disk.
func (j *Journal) awaited() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.wanted > Ticket(j.durable.Load())
}

// Latency is how long a record queued now may wait, at most, for its
// commit when nobody waits for it: the pace, and a commit.
func (j *Journal) Latency() time.Duration {
	return j.pace + time.Duration(j.commitTime.Load())
}

// Durable reports, without waiting, whether the record with ticket t is on
// disk.
func (j *Journal) Durable(t Ticket) bool { return t <= Ticket(j.durable.Load()) }

// Flush waits until everything queued so far is on disk.
func (j *Journal) Flush() error {
	j.mu.Lock()
	if j.err != nil || j.closing {
		err := j.err
		j.mu.Unlock()
		return err
	}
	t := j.enqueueLocked(journalOp{}) // line 0: a marker, nothing written
	j.mu.Unlock()
	return j.Wait(t)
}

// Close writes what is queued and closes the file.
func (j *Journal) Close() error {
	if j.kick == nil { // read-only
		return j.db.Close()
	}
	flushErr := j.Flush()
	j.mu.Lock()
	if j.closing {
		j.mu.Unlock()
		return flushErr
	}
	j.closing = true
	close(j.kick)
	j.mu.Unlock()
	<-j.done
	if err := j.db.Close(); err != nil && flushErr == nil {
		flushErr = err
	}
	return flushErr
}

func (j *Journal) commitLoop() {
	defer close(j.done)
	var batch []journalOp
	var arena []byte
	lastTrim := time.Now()
	var lastStart time.Time
	pace := time.NewTimer(0)
	for range j.kick {
		for {
			j.mu.Lock()
			empty := len(j.queue) == 0
			j.mu.Unlock()
			if empty { // nothing to pace for; Close may be waiting
				break
			}
			// Pace, unless someone waits for a record not yet on disk. A
			// token on urgent only says to look again: it may be stale,
			// from a Wait the last commit answered.
			for d := j.pace - time.Since(lastStart); d > 0 && !j.awaited(); d = j.pace - time.Since(lastStart) {
				pace.Reset(d)
				select {
				case <-pace.C:
				case <-j.urgent:
					pace.Stop()
				}
			}
			lastStart = time.Now()
			j.mu.Lock()
			batch, j.queue = j.queue, batch[:0]
			failed := j.err != nil
			j.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			var err error
			if !failed { // after a failure nothing more is written: Wait reports it
				err = j.commit(batch, &arena)
				took := int64(time.Since(lastStart))
				avg := j.commitTime.Load()
				j.commitTime.Store(avg + (took-avg)/8)
			}
			if time.Since(lastTrim) > trimEvery {
				j.trim()
				lastTrim = time.Now()
			}
			j.mu.Lock()
			switch {
			case err != nil && j.err == nil:
				j.err = fmt.Errorf("journal: %w", err)
			case err == nil && !failed:
				j.durable.Store(uint64(batch[len(batch)-1].ticket))
			}
			close(j.synced)
			j.synced = make(chan struct{})
			j.mu.Unlock()
			clear(batch)
		}
	}
}

// commit writes a batch in one transaction, so one fsync covers every
// worker's record. Values live in arena, reused between batches, because
// bbolt needs them only until the transaction ends.
func (j *Journal) commit(batch []journalOp, arena *[]byte) error {
	buf := (*arena)[:0]
	offs := make([]int, 0, len(batch)+1)
	for i := range batch {
		offs = append(offs, len(buf))
		if batch[i].line > 0 {
			buf = binary.BigEndian.AppendUint64(buf, uint64(batch[i].line))
			buf = batch[i].rec.appendBinary(buf)
		}
	}
	offs = append(offs, len(buf))
	*arena = buf
	return j.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRcpts)
		// Keys mostly arrive in order (the list is read in order): full
		// pages on split, as for an append-only log.
		b.FillPercent = 0.9
		for i := range batch {
			if batch[i].line <= 0 {
				continue
			}
			kv := buf[offs[i]:offs[i+1]]
			if err := b.Put(kv[:8], kv[8:]); err != nil {
				return err
			}
		}
		return nil
	})
}

// Each calls fn for every record, in list order, outside any write.
func (j *Journal) Each(fn func(line int, rec Record) error) error {
	return j.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRcpts).ForEach(func(k, v []byte) error {
			var rec Record
			if err := rec.unmarshal(v); err != nil {
				return fmt.Errorf("%w: key %x", err, k)
			}
			if len(k) != 8 {
				return fmt.Errorf("%w: key %x", errBadRecord, k)
			}
			return fn(int(binary.BigEndian.Uint64(k)), rec)
		})
	})
}

// OpenReadOnly opens an existing journal to look, not to write (a
// dry run). It checks meta like Open; Put must not be called.
func OpenReadOnly(path string, meta Meta) (*Journal, error) {
	j, err := Peek(path)
	if err != nil {
		return nil, err
	}
	db := j.db
	err = db.View(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		if m == nil || tx.Bucket(bucketRcpts) == nil {
			return errors.New("not a mailroute journal")
		}
		if string(m.Get([]byte("list"))) != meta.ListDigest {
			return fmt.Errorf("%w: the recipient list changed since the journal was started", ErrMismatch)
		}
		if string(m.Get([]byte("message"))) != meta.MessageDigest {
			return fmt.Errorf("%w: the message or its configuration changed since the journal was started", ErrMismatch)
		}
		if v := m.Get([]byte("run")); len(v) == 4 {
			j.run = binary.BigEndian.Uint32(v)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return j, nil
}

// Peek opens an existing journal read-only without checking what mailing
// it belongs to, to look at its records (tests); a run uses Open or
// OpenReadOnly. Put must not be called.
func Peek(path string) (*Journal, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("journal %s: %w", path, err)
	}
	j := &Journal{db: db, now: time.Now, closing: true, done: make(chan struct{})}
	close(j.done)
	return j, nil
}
