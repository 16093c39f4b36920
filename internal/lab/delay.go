package lab

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// DelayProxy puts internet distance between a client and a server in the
// lab: it listens on listen (an IP literal with a port, inside the
// namespace) and forwards every connection to target, holding each chunk
// for oneWay in each direction, so a round trip takes 2 × oneWay more. This
// kernel has no netem (lab-notes), hence userspace. Bandwidth is not
// limited: a chunk is read as soon as it arrives and written when its time
// comes, so pipelined traffic keeps flowing. It stops with the test.
func (l *Lab) DelayProxy(tb testing.TB, listen, target string, oneWay time.Duration) {
	tb.Helper()
	var ln net.Listener
	if err := l.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", listen)
		return err
	}); err != nil {
		tb.Fatalf("lab: delay proxy on %s: %v", listen, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	tb.Cleanup(func() {
		cancel()
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed by the cleanup
			}
			wg.Go(func() { l.delayConn(ctx, c, target, oneWay) })
		}
	})
}

func (l *Lab) delayConn(ctx context.Context, client net.Conn, target string, oneWay time.Duration) {
	defer client.Close()
	server, err := l.Dial(ctx, "tcp", target)
	if err != nil {
		return
	}
	defer server.Close()
	done := make(chan struct{}, 2)
	go func() { delayCopy(ctx, server, client, oneWay); done <- struct{}{} }()
	go func() { delayCopy(ctx, client, server, oneWay); done <- struct{}{} }()
	// When one direction ends the connection is done for: close both, so
	// the other ends too.
	select {
	case <-done:
	case <-ctx.Done():
	}
	client.Close()
	server.Close()
	<-done
}

// delayCopy copies src to dst, each chunk written oneWay after it was read.
func delayCopy(ctx context.Context, dst io.Writer, src io.Reader, oneWay time.Duration) {
	type chunk struct {
		due  time.Time
		data []byte
	}
	queue := make(chan chunk, 1024)
	go func() {
		defer close(queue)
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				select {
				case queue <- chunk{time.Now().Add(oneWay), append([]byte(nil), buf[:n]...)}:
				case <-ctx.Done():
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range queue {
		if d := time.Until(c.due); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
		}
		if _, err := dst.Write(c.data); err != nil {
			return
		}
	}
}
