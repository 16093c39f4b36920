// Package smtpclient is the one SMTP client of mailroute (README "Design:
// architecture"): Client (session.go) with its lifecycle, transactions with
// PIPELINING (txn.go) and BDAT streaming (bdat.go), the trace (trace.go);
// the connection wrapper here, which keeps what the server sent before TLS
// and bounds every read by a context; and one classifiable error (errors.go).
// go-smtp is used for its error type only.
package smtpclient

import (
	"bytes"
	"context"
	"net"
	"sync"
	"time"
)

// maxTranscript bounds what a Conn keeps of the server's words: enough for a
// greeting and two EHLO replies, never a whole message exchange.
const maxTranscript = 16 << 10

// Conn wraps a net.Conn so that
//   - the first bytes the server sends are kept (go-smtp v0.25 reads and drops
//     the 220 greeting and the raw EHLO lines);
//   - no deadline set by go-smtp (which uses 5 minutes per command) can reach
//     past Limit, because go-smtp takes no context;
//   - cancelling the dial context closes the connection, which unblocks any
//     read or write in progress.
type Conn struct {
	net.Conn
	mu     sync.Mutex
	read   bytes.Buffer
	limit  time.Time
	stop   func() bool
	closed bool
}

// Wrap returns conn wrapped; ctx's deadline (if any) becomes the Limit and its
// cancellation closes the connection.
func Wrap(ctx context.Context, conn net.Conn) *Conn {
	c := &Conn{Conn: conn}
	if dl, ok := ctx.Deadline(); ok {
		c.limit = dl
		_ = conn.SetDeadline(dl)
	}
	c.stop = context.AfterFunc(ctx, func() { _ = conn.Close() })
	return c
}

// DialConn connects with d (nil: a zero net.Dialer) and wraps the connection.
// The connect attempt itself is bounded by ctx.
func DialConn(ctx context.Context, d *net.Dialer, network, addr string) (*Conn, error) {
	if d == nil {
		d = &net.Dialer{}
	}
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return Wrap(ctx, conn), nil
}

// SetLimit moves the latest deadline any caller may set; zero removes it.
func (c *Conn) SetLimit(t time.Time) {
	c.mu.Lock()
	c.limit = t
	c.mu.Unlock()
	_ = c.Conn.SetDeadline(t)
}

func (c *Conn) clamp(t time.Time) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.limit.IsZero() && (t.IsZero() || t.After(c.limit)) {
		return c.limit
	}
	return t
}

// SetDeadline implements net.Conn, never past the limit.
func (c *Conn) SetDeadline(t time.Time) error { return c.Conn.SetDeadline(c.clamp(t)) }

// SetReadDeadline implements net.Conn, never past the limit.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.Conn.SetReadDeadline(c.clamp(t)) }

// SetWriteDeadline implements net.Conn, never past the limit.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.Conn.SetWriteDeadline(c.clamp(t)) }

// Read implements net.Conn and keeps the first bytes read.
func (c *Conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		if room := maxTranscript - c.read.Len(); room > 0 {
			c.read.Write(p[:min(n, room)])
		}
		c.mu.Unlock()
	}
	return n, err
}

// Close implements net.Conn.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.stop()
	return c.Conn.Close()
}

// Transcript returns what the server has sent so far (bounded), as raw bytes.
// Once TLS starts on top of this Conn the rest is ciphertext: callers parse
// only the replies that came before it.
func (c *Conn) Transcript() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.read.Bytes())
}

// Replies parses the transcript into complete SMTP replies.
func (c *Conn) Replies() []Reply { return ParseReplies(c.Transcript()) }
