package lab

import (
	"bufio"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestDelayProxy: through the proxy a real Postfix greets, and a command's
// reply comes back no sooner than the round trip the proxy adds.
func TestDelayProxy(t *testing.T) {
	l := Start(t, Options{})
	const oneWay = 50 * time.Millisecond
	l.DelayProxy(t, "127.0.7.2:2525", MXAddr+":25", oneWay)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := l.Dial(ctx, "tcp", "127.0.7.2:2525")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	greeting, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(greeting, "220 "+MXHost) {
		t.Fatalf("greeting %q, %v", greeting, err)
	}
	start := time.Now()
	fmt.Fprintf(c, "NOOP\r\n")
	reply, err := r.ReadString('\n')
	rtt := time.Since(start)
	if err != nil || !strings.HasPrefix(reply, "250") {
		t.Fatalf("NOOP: %q, %v", reply, err)
	}
	if rtt < 2*oneWay {
		t.Fatalf("a round trip through the proxy took %s, less than the %s it adds", rtt, 2*oneWay)
	}
	t.Logf("round trip through the proxy: %s (adds %s)", rtt, 2*oneWay)
}
