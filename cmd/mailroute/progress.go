package main

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/mailroute/mailroute/send"
	"github.com/schollz/progressbar/v3"
)

// progressLine is the plain progress line for logs and pipes.
func progressLine(s send.Snapshot) string {
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

// progressInterval is how often plain progress lines are written: often
// enough to see a run is alive, rarely enough not to flood a log.
const progressInterval = 5 * time.Second

// showProgress writes the engine's progress to w until the returned stop
// is called: a bar redrawn in place when w is a terminal, else a plain
// line every progressInterval. stop is safe to call more than once.
func showProgress(e *send.Engine, w io.Writer, terminal bool) (stop func()) {
	start := time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	var once sync.Once
	if terminal {
		bar := progressbar.NewOptions(max(e.Progress(start).Total, 1),
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
			// A line every progressInterval, and one at once when a limit
			// starts to hold the run back (or holds it until another time):
			// a wait is never silent.
			t := time.NewTicker(progressInterval)
			defer t.Stop()
			look := time.NewTicker(250 * time.Millisecond)
			defer look.Stop()
			said := ""
			for {
				select {
				case <-t.C:
					s := e.Progress(start)
					said = s.Waiting
					fmt.Fprintln(w, progressLine(s))
				case <-look.C:
					if s := e.Progress(start); s.Waiting != "" && s.Waiting != said {
						said = s.Waiting
						fmt.Fprintln(w, progressLine(s))
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
