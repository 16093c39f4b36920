package send

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailroute/mailroute/send/journal"
	"github.com/schollz/progressbar/v3"
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

// Line is the plain progress line for logs and pipes.
func (s Snapshot) Line() string {
	line := fmt.Sprintf("sent %d/%d, deferred %d, failed %d", s.Sent, s.Total, s.Deferred, s.Failed)
	if s.Unknown > 0 {
		line += fmt.Sprintf(", unknown %d", s.Unknown)
	}
	if s.Retrying > 0 {
		line += fmt.Sprintf(", retrying %d", s.Retrying)
	}
	line += fmt.Sprintf(", %.1f msg/s", s.PerSecond())
	if s.Waiting != "" {
		line += "; " + s.Waiting
	}
	return line
}

// ProgressInterval is how often plain progress lines are written: often
// enough to see a run is alive, rarely enough not to flood a log.
const ProgressInterval = 5 * time.Second

// ShowProgress writes the engine's progress to w until the returned stop
// is called: a bar redrawn in place when w is a terminal, else a plain
// line every ProgressInterval. stop is safe to call more than once.
func (e *Engine) ShowProgress(w io.Writer, terminal bool) (stop func()) {
	start := time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	var once sync.Once
	if terminal {
		bar := progressbar.NewOptions(max(e.stats.Good, 1),
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetWidth(30),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
		wg.Go(func() {
			t := time.NewTicker(250 * time.Millisecond)
			defer t.Stop()
			for {
				s := e.Progress(start)
				desc := fmt.Sprintf("sent %d deferred %d failed %d %.1f msg/s", s.Sent, s.Deferred, s.Failed, s.PerSecond())
				if s.Waiting != "" {
					desc += "; " + s.Waiting
				}
				bar.Describe(desc)
				_ = bar.Set(s.Done())
				select {
				case <-t.C:
				case <-done:
					_ = bar.Finish()
					return
				}
			}
		})
	} else {
		wg.Go(func() {
			// A line every ProgressInterval, and one at once when a limit
			// starts to hold the run back (or holds it until another time):
			// a wait is never silent.
			t := time.NewTicker(ProgressInterval)
			defer t.Stop()
			look := time.NewTicker(250 * time.Millisecond)
			defer look.Stop()
			said := ""
			for {
				select {
				case <-t.C:
					s := e.Progress(start)
					said = s.Waiting
					fmt.Fprintln(w, s.Line())
				case <-look.C:
					if s := e.Progress(start); s.Waiting != "" && s.Waiting != said {
						said = s.Waiting
						fmt.Fprintln(w, s.Line())
					}
				case <-done:
					return
				}
			}
		})
	}
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
	}
}
