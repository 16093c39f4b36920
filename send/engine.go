// Package send runs a mailing: it reads the recipient list, renders
// messages, delivers them direct-to-MX or through relays, and keeps a
// journal so a re-run never sends twice. Its configuration is package
// internal/config.
package send

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailroute/mailroute/internal/config"
	"github.com/mailroute/mailroute/internal/quota"
	"github.com/mailroute/mailroute/internal/replies"
	"github.com/mailroute/mailroute/internal/resolve"
	"github.com/mailroute/mailroute/internal/smtpclient"
	"github.com/mailroute/mailroute/internal/sts"
	"github.com/mailroute/mailroute/send/journal"
	"github.com/mailroute/mailroute/send/list"
	"github.com/mailroute/mailroute/send/message"
	"github.com/mailroute/mailroute/send/mx"
)

// Options is what a run needs besides the Config.
type Options struct {
	ListPath string
	TextPath string // the message template (text part)
	HTMLPath string // optional HTML part
	// JournalPath defaults to ListPath + ".journal", next to the list.
	JournalPath string
	List        list.Options

	DryRun bool // render, check and resolve; open no SMTP session
	// NoStreaming keeps to DATA, one transaction in flight per session,
	// even where the relay offers CHUNKING (stream.go): for comparison.
	NoStreaming bool
	// NewRun drops an existing journal's records and starts over; without
	// it a journal of another list or message is an error.
	NewRun bool
	// RetryUnknown sends again to recipients whose outcome is unknown
	// (connection lost after the final dot): they may get the message twice.
	RetryUnknown bool
	// RetryFailed sends again to recipients that failed (never to those
	// sent): after the cause was mended.
	RetryFailed bool
	// MaxWait is the longest a limit may hold the run back: when the next
	// slot is further away, the run stops cleanly (everything not sent
	// stays pending) and says when to run again. Default DefaultMaxWait;
	// negative: wait as long as it takes.
	MaxWait time.Duration
	// QuotaDir holds the quota ledgers; default quota.StateDir().
	QuotaDir string
	// Notify, if set, is told at once what the user must know during a
	// run: a relay that cannot be reached and why, a target left alone
	// after refusals. One line, no secrets.
	Notify func(string)

	Timeouts Timeouts
	// Trace, if set, gets every SMTP conversation, AUTH lines and message
	// content hidden (smtpclient.NewTrace).
	Trace *smtpclient.Trace
	// DrainTimeout bounds how long Drain lets transactions in flight finish
	// before the run is stopped hard. Default 30 s.
	DrainTimeout time.Duration
	// RetryQueue caps the recipients waiting in memory for a retry within
	// this run; past it a deferred recipient waits for a re-run. Default 10000.
	RetryQueue int

	// Resolver is used for MX look-ups in direct mode; nil: the config's
	// resolver, else /etc/resolv.conf. MTA-STS needs TXT and address
	// look-ups too (sts.Resolver): a Resolver without them gets none.
	Resolver MXResolver
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// SoftMemoryLimit is the Go heap size a run asks the garbage collector to
// stay under (runtime/debug.SetMemoryLimit), so that the process stays
// within 64 MB: the engine's live memory is a few MB whatever the list's
// size (the list is streamed, the journal is on disk, caches are bounded),
// but with the default GOGC the garbage of a million rendered messages
// would let the heap swing far above it.
const SoftMemoryLimit = 40 << 20

// GCPercent is the GOGC a run asks for. Sending makes a few KB of
// short-lived garbage per message (its rendering) and keeps little, so
// the default (100) collects every few hundred messages; 200 halves that,
// for about 8 MB more peak RSS (BenchmarkLabSinkMemory: 32 → 40 MB, still
// flat) and 7–10% more messages a second to the lab sink. SoftMemoryLimit
// still caps the heap.
const GCPercent = 200

// DefaultMaxWait is how long a limit may hold a run back by default: a
// wait within an hourly window is part of a normal mailing; a used-up
// daily quota ends the run with the time to run it again rather than
// leaving a terminal waiting overnight.
const DefaultMaxWait = time.Hour

// Error is a failure of a run as a whole, with a hint for the user. Setup
// errors happen before anything is sent (exit 2); others stop a run that
// had started (exit 1).
type Error struct {
	Err   error
	Hint  string
	Setup bool
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Engine runs one mailing. Make it with New, then call Run once. Drain may
// be called from another goroutine (on SIGINT).
type Engine struct {
	cfg  *config.Config
	opts Options
	now  func() time.Time
	helo string

	tmpl    *message.Template
	signer  *message.Signer
	journal *journal.Journal
	stats   *list.Stats

	relays   []*relayTarget
	mx       *mx.Cache
	dead     *deadHosts
	roots    *x509.CertPool // direct mode: for MTA-STS; nil: the system roots
	pool     *pool
	global   *quota.Limiter // the mailing's rate (cfg.Rate); nil: none
	ledgers  []*quota.Ledger
	hold     holdState
	refusals *replies.Breakers
	// streamed and maxInFlight are for the report (stream.go).
	streamed, maxInFlight atomic.Int64
	// fromDomain is the envelope sender's domain, from the first message
	// made, for the words of refusals.
	fromDomain atomic.Pointer[string]
	live       atomic.Int32 // workers running
	sessions   *quota.Semaphore

	// soft is cancelled to stop taking work (Drain, a fatal error, the end
	// of the list); hard to abort what is in flight.
	soft, hard           context.Context
	stopSoft, stopHard   context.CancelFunc
	jobs                 chan *job
	draining             <-chan struct{}
	drainOnce            sync.Once
	interrupted, started atomic.Bool

	retry  *retryQueue
	active sync.WaitGroup // jobs taken from the list and not settled

	mu    sync.Mutex
	fatal *Error
	// resolverOut: direct mode, since when the DNS resolver has not answered.
	resolverOut outage
	tally       *tally
	rnd         *rand.Rand

	progress progressCounters
}

// New checks what can be checked without sending: the config (defaults
// are filled in), the list, the template against the list's columns, the
// DKIM key. Its errors are *Error with Setup set.
func New(cfg *config.Config, opts Options) (*Engine, error) {
	e := &Engine{cfg: cfg, opts: opts, now: opts.Now}
	if e.now == nil {
		e.now = time.Now
	}
	if e.opts.JournalPath == "" {
		e.opts.JournalPath = opts.ListPath + ".journal"
	}
	if e.opts.DrainTimeout <= 0 {
		e.opts.DrainTimeout = 30 * time.Second
	}
	if e.opts.MaxWait == 0 {
		e.opts.MaxWait = DefaultMaxWait
	}
	if e.opts.RetryQueue <= 0 {
		e.opts.RetryQueue = 10000
	}
	e.opts.Timeouts = e.opts.Timeouts.WithDefaults()
	setup := func(err error, hint string) (*Engine, error) {
		var le *list.Error
		if hint == "" && errors.As(err, &le) {
			hint = le.Hint
		}
		return nil, &Error{Err: err, Hint: hint, Setup: true}
	}
	cfg.ApplyDefaults() // config.Load did it already; a Config made in code may not have
	var err error
	if err = cfg.Validate(); err != nil {
		return setup(err, "")
	}
	if e.helo, err = heloName(cfg); err != nil {
		return setup(err, "set helo in the config")
	}
	// The template first: the list check needs to know which fields go
	// into header fields, where a line break makes the row bad.
	if e.tmpl, err = message.LoadTemplate(opts.TextPath, opts.HTMLPath); err != nil {
		return setup(err, "")
	}
	if err := e.tmpl.SetUnsubscribe(cfg.Unsubscribe); err != nil {
		return setup(err, "")
	}
	e.opts.List.HeaderFields = e.tmpl.HeaderFields()
	st, err := list.Validate(e.opts.ListPath, e.opts.List)
	if err != nil {
		return setup(err, "")
	}
	e.stats = st
	if err := e.tmpl.Check(st.Header); err != nil {
		return setup(err, "the template may only use the list's columns")
	}
	if cfg.DKIM != nil {
		if e.signer, err = message.NewSigner(cfg.DKIM); err != nil {
			return setup(err, "")
		}
	}
	e.sessions = quota.NewSemaphore(cfg.Threads)
	e.tally = newTally()
	e.refusals = replies.NewBreakers()
	e.rnd = rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x6d61696c))
	return e, nil
}

// heloName is the name said in EHLO: the config's helo, else this
// machine's host name.
func heloName(cfg *config.Config) (string, error) {
	if cfg.Helo != "" {
		return cfg.Helo, nil
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "", fmt.Errorf("no helo set and the host name is unknown: %v", err)
	}
	return h, nil
}

// Drain stops taking recipients; transactions in flight may finish within
// the drain timeout, then the run is stopped hard. Safe to call more than
// once and from any goroutine.
func (e *Engine) Drain() {
	e.interrupted.Store(true)
	e.mu.Lock()
	soft, hard := e.stopSoft, e.stopHard
	e.mu.Unlock()
	if soft == nil {
		return // Run has not started; it will see interrupted
	}
	e.drainOnce.Do(func() {
		soft()
		time.AfterFunc(e.opts.DrainTimeout, hard)
	})
}

// fail records the first fatal error and stops the run softly.
func (e *Engine) fail(err *Error) {
	e.mu.Lock()
	if e.fatal == nil {
		e.fatal = err
	}
	soft := e.stopSoft
	e.mu.Unlock()
	if soft != nil {
		soft()
	}
}

// Run sends the mailing. Cancelling ctx stops it hard: connections are
// closed at once and what was in flight is recorded as well as can be. The
// Report is returned whenever the run started, also with an error.
func (e *Engine) Run(ctx context.Context) (*Report, error) {
	if !e.started.CompareAndSwap(false, true) {
		return nil, errors.New("send: Engine.Run called twice")
	}
	hard, stopHard := context.WithCancel(ctx)
	defer stopHard()
	soft, stopSoft := context.WithCancel(hard)
	e.mu.Lock()
	e.hard, e.stopHard, e.soft, e.stopSoft = hard, stopHard, soft, stopSoft
	e.draining = soft.Done()
	e.mu.Unlock()
	if e.interrupted.Load() {
		e.Drain()
	}

	if err := e.prepareTargets(); err != nil {
		return nil, err
	}
	if e.opts.DryRun {
		return e.dryRun()
	}
	meta, err := e.journalMeta()
	if err != nil {
		return nil, &Error{Err: err, Setup: true}
	}
	e.journal, err = journal.Open(e.opts.JournalPath, meta, e.opts.NewRun)
	if err != nil {
		hint := ""
		if errors.Is(err, journal.ErrMismatch) {
			hint = "to send this list or message as a new mailing, add --new-run (or pass another --journal)"
		}
		return nil, &Error{Err: err, Hint: hint, Setup: true}
	}
	if err := e.openLimits(); err != nil {
		e.journal.Close()
		return nil, err
	}
	defer e.closeLimits()
	lr, err := e.stats.Open(e.opts.ListPath, e.opts.List)
	if err != nil {
		e.journal.Close()
		return nil, &Error{Err: err, Setup: true}
	}
	defer lr.Close()

	start := e.now()
	// A few jobs wait ready in the channel, so that a worker taking ahead
	// (see maxLookahead) finds them without waiting for the list to be read.
	e.jobs = make(chan *job, e.cfg.Threads*maxLookahead)
	e.retry = newRetryQueue(e.opts.RetryQueue)
	var workers sync.WaitGroup
	if e.cfg.Mode == config.ModeDirect {
		e.pool = newPool(e.sessions, e.cfg.Direct.PerDomainThreads)
		for range e.cfg.Threads {
			e.live.Add(1)
			workers.Go(func() { defer e.workerGone(); e.directWorker(e.hard) })
		}
	} else {
		for _, t := range e.relays {
			for range t.threads {
				e.live.Add(1)
				workers.Go(func() { defer e.workerGone(); e.relayWorker(e.hard, t) })
			}
		}
	}
	var sched sync.WaitGroup
	sched.Go(e.schedule)

	e.feed(lr)
	settled := make(chan struct{})
	go func() { e.active.Wait(); close(settled) }()
	select {
	case <-settled:
	case <-e.soft.Done():
		// Stopped: the scheduler ends, and no worker takes another job;
		// the ones still in the channel go back to pending.
		sched.Wait()
		e.putBackQueued()
		<-settled
	}
	e.stopSoft() // nothing left: workers and the scheduler end
	sched.Wait()
	workers.Wait()
	// A run stopped early (a limit past --max-wait, a relay down, Ctrl-C)
	// did not read the whole list: what earlier runs did with the rest is
	// counted too, so the report is the whole list's.
	e.countRest(lr)
	if e.pool != nil {
		e.pool.closeAll()
	}
	if err := e.journal.Close(); err != nil {
		e.fail(&Error{Err: err, Hint: "the journal could not be written; check the disk (space, permissions)"})
	}
	rep := e.report(start)
	if e.fatal != nil {
		return rep, e.fatal
	}
	return rep, nil
}

// prepareTargets sets up relays (secrets, TLS roots) or the resolver.
func (e *Engine) prepareTargets() error {
	if e.cfg.Mode == config.ModeDirect {
		r := e.opts.Resolver
		if r == nil {
			var res *resolve.Resolver
			var err error
			if e.cfg.Resolver != "" {
				res, err = resolve.New(e.cfg.Resolver)
			} else {
				res, err = resolve.FromResolvConf("/etc/resolv.conf")
			}
			if err != nil {
				return &Error{Err: fmt.Errorf("resolver: %w", err), Hint: "set resolver = \"IP\" in the config", Setup: true}
			}
			r = res
		}
		e.mx = mx.New(r, e.now)
		e.dead = newDeadHosts()
		stsr, ok := r.(sts.Resolver)
		if !ok || e.cfg.Direct.IgnoreMTASTS {
			return nil
		}
		roots, err := smtpclient.Roots(e.cfg.Direct.CAFile)
		if err != nil {
			return &Error{Err: fmt.Errorf("direct.ca_file: %w", err), Hint: "a PEM file of CA certificates", Setup: true}
		}
		e.roots = roots
		e.mx.STS = &sts.Fetcher{Resolver: stsr, RootCAs: roots, Timeout: e.opts.Timeouts.WithDefaults().Connect * 2, Now: e.now}
		if dir := mtaSTSCacheDir(e.cfg.Direct.MTASTSCache); dir != "" {
			e.mx.STS.Cache = &sts.Cache{Dir: dir}
		}
		return nil
	}
	relays, err := newRelayTargets(e.hard, e.cfg, e.helo, e.opts.Timeouts, e.opts.Trace)
	if err != nil {
		return &Error{Err: err, Hint: "secrets come from password_env or password_cmd; see `mailroute config describe`", Setup: true}
	}
	e.relays = relays
	return nil
}

// mtaSTSCacheDir is the configured MTA-STS cache, else mailroute/mta-sts in
// the user's cache directory; "" when there is none (no home), which only
// means each run fetches the policies afresh.
func mtaSTSCacheDir(configured string) string {
	if configured != "" {
		return configured
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(base, "mailroute", "mta-sts")
}

// feed streams the list into the workers, skipping what the journal says
// is done. It returns at the end of the list or when the run stops.
func (e *Engine) feed(lr *list.Reader) {
	run := e.journal.Run()
	for e.soft.Err() == nil {
		rcpt, err := lr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			e.fail(&Error{Err: fmt.Errorf("reading the list: %w", err)})
			return
		}
		rec, ok, err := e.journal.Get(rcpt.Line)
		if err != nil {
			e.fail(&Error{Err: err, Hint: "the journal is damaged; start over with --new-run"})
			return
		}
		if ok && !e.resume(rcpt, &rec, run) {
			continue
		}
		rec.Addr, rec.Domain = rcpt.Addr, rcpt.Domain
		j := &job{rcpt: rcpt, rec: rec}
		e.active.Add(1)
		select {
		case e.jobs <- j:
		case <-e.soft.Done():
			e.finish(j, journal.StatePending, "")
			return
		}
	}
}

// countRest reads the rest of the list after the run stopped, and counts
// the outcomes the journal holds for those rows (sending nothing).
func (e *Engine) countRest(lr *list.Reader) {
	for {
		rcpt, err := lr.Next()
		if err != nil {
			return // EOF, or the list's error (reported by feed already if it met it)
		}
		rec, ok, err := e.journal.Get(rcpt.Line)
		if err != nil || !ok {
			continue
		}
		switch rec.State {
		case journal.StateSent, journal.StateFailed, journal.StateDeferred, journal.StateUnknown:
			e.tally.add(rcpt.Domain, rec.State, rec.Reason, rec.NextAt, false, rcpt.Addr)
			e.progress.count(rec.State, false)
		}
	}
}

// resume decides what to do with a recipient the journal knows. It counts
// the ones it leaves alone and reports whether to send.
func (e *Engine) resume(rcpt *list.Recipient, rec *journal.Record, run uint32) bool {
	if rec.State == journal.StateDataSent && rec.Run == run {
		return false // cannot happen: each line is read once per run
	}
	if rec.State == journal.StateDataSent {
		// The run that wrote it died between the dot and the reply.
		rec.State = journal.StateUnknown
		rec.Reason = "the previous run stopped after the final dot, before the reply (RFC 1047)"
		e.journal.Put(rcpt.Line, *rec)
	}
	if e.sendsAgain(rec.State) {
		return true
	}
	e.tally.add(rcpt.Domain, rec.State, rec.Reason, rec.NextAt, false, rcpt.Addr)
	e.progress.count(rec.State, false)
	return false
}

// sendsAgain is the resume rule, one place for the run and the dry run:
// whether a recipient whose journal record is in state st is sent by this
// run. Sent never is; failed only with --retry-failed (the cause was
// mended); unknown (and data_sent left by a run that died) only with
// --retry-unknown; pending, sending (the dot was never written) and
// deferred are sent now. A deferred recipient is retried at once on a
// re-run, whatever its next_at: a user who runs the command again wants
// it tried.
func (e *Engine) sendsAgain(st journal.State) bool {
	switch st {
	case journal.StateSent:
		return false
	case journal.StateFailed:
		return e.opts.RetryFailed
	case journal.StateUnknown, journal.StateDataSent:
		return e.opts.RetryUnknown
	}
	return true
}

// putBackQueued puts back the jobs left in the channel when the run stops.
func (e *Engine) putBackQueued() {
	for {
		select {
		case j := <-e.jobs:
			e.putBack(j)
		default:
			return
		}
	}
}

// take hands a worker its next job, or nil when it should stop.
func (e *Engine) take(ctx context.Context) *job {
	if e.soft.Err() != nil {
		return nil // a job may be ready too, but the run is stopping
	}
	select {
	case j := <-e.jobs:
		return j
	case <-e.soft.Done():
		return nil
	case <-ctx.Done():
		return nil
	}
}

// journalMeta identifies the mailing: the list's digest, and a digest of
// what shapes each message (templates, sender, DKIM) but not of how it is
// sent (threads, rates, relays may change between runs).
func (e *Engine) journalMeta() (journal.Meta, error) {
	ld, err := list.Digest(e.opts.ListPath)
	if err != nil {
		return journal.Meta{}, err
	}
	md, err := messageDigest(e.opts.TextPath, e.opts.HTMLPath, e.cfg)
	if err != nil {
		return journal.Meta{}, err
	}
	return journal.Meta{ListDigest: ld, MessageDigest: md}, nil
}
