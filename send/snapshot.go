package send

import (
	"sync/atomic"
	"time"

	"github.com/mailroute/mailroute/send/journal"
)

// progressCounters are the live numbers, updated without locks by workers.
type progressCounters struct {
	sent, deferred, failed, unknown atomic.Int64 // final outcomes, all runs
	sentNow                         atomic.Int64 // sent by this run
	retrying                        atomic.Int64 // waiting for a retry within this run
}

func (p *progressCounters) count(s journal.State, thisRun bool) {
	switch s {
	case journal.StateSent:
		p.sent.Add(1)
		if thisRun {
			p.sentNow.Add(1)
		}
	case journal.StateDeferred:
		p.deferred.Add(1)
	case journal.StateFailed:
		p.failed.Add(1)
	case journal.StateUnknown:
		p.unknown.Add(1)
	}
}

// Snapshot is the progress of a run at one moment.
type Snapshot struct {
	Total    int // good rows in the list
	Sent     int
	Deferred int // deferred for good in this run (retried by a re-run)
	Failed   int
	Unknown  int
	Retrying int // deferred, waiting for a retry within this run
	SentNow  int // sent by this run
	Elapsed  time.Duration
	// Waiting says what limit holds the run back now and when its next
	// slot opens; "" when none does.
	Waiting string
}

// Done is the recipients with an outcome.
func (s Snapshot) Done() int { return s.Sent + s.Deferred + s.Failed + s.Unknown }

// PerSecond is this run's sending rate.
func (s Snapshot) PerSecond() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.SentNow) / s.Elapsed.Seconds()
}

// Progress returns the run's numbers now; safe from any goroutine.
func (e *Engine) Progress(since time.Time) Snapshot {
	p := &e.progress
	total := 0
	if e.stats != nil {
		total = e.stats.Good
	}
	return Snapshot{
		Total: total, Sent: int(p.sent.Load()), Deferred: int(p.deferred.Load()),
		Failed: int(p.failed.Load()), Unknown: int(p.unknown.Load()),
		Retrying: int(p.retrying.Load()), SentNow: int(p.sentNow.Load()),
		Elapsed: time.Since(since), Waiting: e.Waiting(),
	}
}
