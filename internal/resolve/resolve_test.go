package resolve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailroute/mailroute/internal/dnstest"
)

func TestNew(t *testing.T) {
	// Parsing only: nothing is sent to these documentation addresses.
	tests := []struct {
		in      string
		want    string
		wantErr string
	}{
		{in: "192.0.2.1", want: "192.0.2.1:53"},
		{in: " 192.0.2.1:5353 ", want: "192.0.2.1:5353"},
		{in: "2001:db8::1", want: "[2001:db8::1]:53"},
		{in: "[2001:db8::1]", want: "[2001:db8::1]:53"},
		{in: "[2001:db8::1]:5353", want: "[2001:db8::1]:5353"},
		{in: "", wantErr: "empty"},
		{in: "dns.example", wantErr: "not an address"},
		{in: "dns.example:53", wantErr: "not an IP address"},
		{in: "192.0.2.1:dns", wantErr: "port must be a number"},
		{in: "192.0.2.1:0", wantErr: "port must be a number"},
		{in: "192.0.2.1:65536", wantErr: "port must be a number"},
		{in: "[2001:db8::1", wantErr: "not an address"},
		{in: "[192.0.2.1]", wantErr: "not an IPv6 address"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r, err := New(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.in)) {
					t.Errorf("error %q does not quote the input", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Servers) != 1 || r.Servers[0] != tt.want {
				t.Errorf("New(%q).Servers = %q, want [%q]", tt.in, r.Servers, tt.want)
			}
		})
	}
	if _, err := New(); err == nil {
		t.Error("New() with no servers: no error")
	}
}

func TestFromResolvConf(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}

	good := write("good.conf", "# generated\nsearch example.com\nnameserver 192.0.2.53\nnameserver 2001:db8::53\noptions timeout:1\n")
	r, err := FromResolvConf(good)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"192.0.2.53:53", "[2001:db8::53]:53"}
	if fmt.Sprint(r.Servers) != fmt.Sprint(want) {
		t.Errorf("Servers = %q, want %q", r.Servers, want)
	}

	empty := write("empty.conf", "search example.com\n")
	missing := filepath.Join(dir, "missing.conf")
	for _, p := range []string{empty, missing} {
		_, err := FromResolvConf(p)
		if err == nil {
			t.Fatalf("FromResolvConf(%s): no error", p)
		}
		if !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "--resolver") {
			t.Errorf("error %q should name the file and hint --resolver", err)
		}
	}
}

func TestQuerySendsEDNS0AndRD(t *testing.T) {
	srv := dnstest.Start(t, dnstest.Zone{Records: map[string][]string{
		"alpha.example. A": {"alpha.example. 300 IN A 192.0.2.10"},
	}})
	reply, err := testResolver(srv.Addr).Query(t.Context(), "alpha.example", dns.TypeA)
	if err != nil {
		t.Fatal(err)
	}
	if reply.Server != srv.Addr || reply.OverTCP || reply.RTT <= 0 {
		t.Errorf("reply = %+v", reply)
	}
	q := srv.Queries()
	if len(q) != 1 {
		t.Fatalf("server saw %d queries, want 1", len(q))
	}
	m := q[0].Msg
	opt := m.IsEdns0()
	switch {
	case opt == nil:
		t.Fatal("query has no EDNS0 OPT record")
	case opt.UDPSize() != 1232:
		t.Errorf("EDNS0 UDP size = %d, want 1232", opt.UDPSize())
	case opt.Do():
		t.Error("DO bit set, want off")
	}
	if !m.RecursionDesired {
		t.Error("RD bit not set")
	}
	if q[0].TCP {
		t.Error("first query went over TCP")
	}
}

func TestQueryTruncatedRetriesOverTCP(t *testing.T) {
	// 40 TXT records of ~100 bytes: far more than 1232 bytes.
	var big []string
	for i := range 40 {
		big = append(big, fmt.Sprintf("big.example. 300 IN TXT \"%02d %s\"", i, strings.Repeat("x", 100)))
	}
	srv := dnstest.Start(t, dnstest.Zone{Records: map[string][]string{"big.example. TXT": big}})
	reply, err := testResolver(srv.Addr).Query(t.Context(), "big.example.", dns.TypeTXT)
	if err != nil {
		t.Fatal(err)
	}
	if !reply.OverTCP {
		t.Error("OverTCP = false, want true")
	}
	if len(reply.Msg.Answer) != 40 || reply.Msg.Truncated {
		t.Errorf("got %d answers (truncated %v), want all 40", len(reply.Msg.Answer), reply.Msg.Truncated)
	}
	q := srv.Queries()
	if len(q) != 2 || q[0].TCP || !q[1].TCP {
		t.Errorf("queries = %+v, want one UDP then one TCP", q)
	}
}

func TestQueryServerFallback(t *testing.T) {
	ok := dnstest.Zone{Records: map[string][]string{"alpha.example. MX": {"alpha.example. 300 IN MX 10 mx.alpha.example."}}}
	rc := func(code int) dnstest.Zone { return dnstest.Zone{Rcodes: map[string]int{"alpha.example.": code}} }
	silent := func(t *testing.T) string { a, _ := dnstest.Silent(t); return a }
	closed := func(t *testing.T) string { return dnstest.ClosedPort(t) }
	serve := func(z dnstest.Zone) func(*testing.T) string {
		return func(t *testing.T) string { return dnstest.Start(t, z).Addr }
	}
	tests := []struct {
		name      string
		servers   []func(*testing.T) string
		wantFrom  int  // index of the server that answers, when no error
		wantKind  Kind // when an error
		wantFrom2 int  // index of the server named in the error
	}{
		{name: "servfail then answer", servers: []func(*testing.T) string{serve(rc(dns.RcodeServerFailure)), serve(ok)}, wantFrom: 1},
		{name: "refused then answer", servers: []func(*testing.T) string{serve(rc(dns.RcodeRefused)), serve(ok)}, wantFrom: 1},
		{name: "silent then answer", servers: []func(*testing.T) string{silent, serve(ok)}, wantFrom: 1},
		{name: "closed then answer", servers: []func(*testing.T) string{closed, serve(ok)}, wantFrom: 1},
		{name: "servfail twice", servers: []func(*testing.T) string{serve(rc(dns.RcodeServerFailure)), serve(rc(dns.RcodeServerFailure))}, wantKind: ServFail},
		{name: "refused twice", servers: []func(*testing.T) string{serve(rc(dns.RcodeRefused)), serve(rc(dns.RcodeRefused))}, wantKind: Refused},
		{name: "formerr", servers: []func(*testing.T) string{serve(rc(dns.RcodeFormatError))}, wantKind: Rcode},
		{name: "silent then servfail reports servfail", servers: []func(*testing.T) string{silent, serve(rc(dns.RcodeServerFailure))}, wantKind: ServFail, wantFrom2: 1},
		{name: "closed then silent reports timeout", servers: []func(*testing.T) string{closed, silent}, wantKind: Timeout, wantFrom2: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var addrs []string
			for _, s := range tt.servers {
				addrs = append(addrs, s(t))
			}
			r := testResolver(addrs...)
			r.Timeout = 200 * time.Millisecond
			reply, err := r.Query(t.Context(), "alpha.example", dns.TypeMX)
			if tt.wantKind != Unknown {
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("err = %v, want *Error", err)
				}
				if e.Kind != tt.wantKind || e.Server != addrs[tt.wantFrom2] || !e.Temporary() {
					t.Errorf("err = %#v, want Kind %v from %s, temporary", e, tt.wantKind, addrs[tt.wantFrom2])
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if reply.Server != addrs[tt.wantFrom] || len(reply.Msg.Answer) != 1 {
				t.Errorf("reply from %s with %d answers, want %s with 1", reply.Server, len(reply.Msg.Answer), addrs[tt.wantFrom])
			}
		})
	}
}

func TestQueryNXDOMAINIsAReply(t *testing.T) {
	srv := dnstest.Start(t, dnstest.Zone{})
	reply, err := testResolver(srv.Addr).Query(t.Context(), "nope.example", dns.TypeMX)
	if err != nil {
		t.Fatal(err)
	}
	if reply.Msg.Rcode != dns.RcodeNameError {
		t.Errorf("Rcode = %s, want NXDOMAIN", dns.RcodeToString[reply.Msg.Rcode])
	}
}

func TestQueryTimeout(t *testing.T) {
	addr, count := dnstest.Silent(t)
	r := testResolver(addr)
	r.Timeout = 200 * time.Millisecond
	start := time.Now()
	_, err := r.Query(t.Context(), "alpha.example", dns.TypeA)
	elapsed := time.Since(start)
	var e *Error
	if !errors.As(err, &e) || e.Kind != Timeout {
		t.Fatalf("err = %v, want Kind Timeout", err)
	}
	// Each attempt waits its whole timeout, so Attempts of them take at
	// least that; a wait after the last (or a third attempt) would reach a
	// further timeout. Bounds in timeouts, not in a machine's speed.
	if lo, hi := time.Duration(r.Attempts)*r.Timeout, time.Duration(r.Attempts+1)*r.Timeout; elapsed < lo || elapsed >= hi {
		t.Errorf("took %v, want from %v (%d × %v) to under %v", elapsed, lo, r.Attempts, r.Timeout, hi)
	}
	if n := count(); n != 2 {
		t.Errorf("server saw %d queries, want 2 (Attempts)", n)
	}
	if want := "lookup A alpha.example: no answer (timed out) from " + addr; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err, want)
	}
}

func TestQueryNetworkErrorIsFast(t *testing.T) {
	addr := dnstest.ClosedPort(t)
	r := testResolver(addr)
	r.Timeout = 5 * time.Second // a hang would show
	start := time.Now()
	_, err := r.Query(t.Context(), "alpha.example", dns.TypeA)
	var e *Error
	if !errors.As(err, &e) || e.Kind != Network {
		t.Fatalf("err = %v, want Kind Network", err)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("err = %v, want it to wrap ECONNREFUSED", err)
	}
	// A refused port answers at once (ICMP, RFC 1122 §4.1.3.1); the bug
	// is waiting out the timeout as if it were silent.
	if d := time.Since(start); d >= r.Timeout {
		t.Errorf("took %v, the whole %v timeout; a refused port should fail at once", d, r.Timeout)
	}
	if !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("Error() = %q, want the cause in it", err)
	}
}

func TestQueryContext(t *testing.T) {
	addr, _ := dnstest.Silent(t)
	r := testResolver(addr)
	r.Timeout = 5 * time.Second

	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := r.Query(ctx, "alpha.example", dns.TypeA)
	var e *Error
	if !errors.As(err, &e) || e.Kind != Canceled || !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: err = %v, want Kind Canceled wrapping context.Canceled", err)
	}
	// Only the context or the 5 s attempt timeout can end the wait: a
	// wait of the timeout means the cancellation was not seen.
	if d := time.Since(start); d >= r.Timeout {
		t.Errorf("canceled: took %v, the attempt timeout; want about 100ms", d)
	}

	ctx, cancel2 := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel2()
	start = time.Now()
	_, err = r.Query(ctx, "alpha.example", dns.TypeA)
	if !errors.As(err, &e) || e.Kind != Timeout {
		t.Errorf("deadline: err = %v, want Kind Timeout", err)
	}
	if d := time.Since(start); d >= r.Timeout {
		t.Errorf("deadline: took %v, the attempt timeout; want about 100ms", d)
	}
}

func TestQueryRejects(t *testing.T) {
	var e *Error
	_, err := (&Resolver{}).Query(t.Context(), "alpha.example", dns.TypeA)
	if !errors.As(err, &e) || !errors.Is(err, ErrNoServers) {
		t.Errorf("no servers: err = %v, want ErrNoServers", err)
	}
	_, err = testResolver(dnstest.ClosedPort(t)).Query(t.Context(), "a..example", dns.TypeA)
	if !errors.As(err, &e) || e.Kind != BadName || e.Temporary() {
		t.Errorf("bad name: err = %v, want permanent Kind BadName", err)
	}
}

func TestQueryRejectsWrongAnswer(t *testing.T) {
	srv := dnstest.StartHandler(t, func(req *dns.Msg) *dns.Msg {
		resp := new(dns.Msg)
		resp.SetReply(req)
		resp.Question[0].Name = "other.example."
		return resp
	})
	_, err := testResolver(srv.Addr).Query(t.Context(), "alpha.example", dns.TypeA)
	var e *Error
	if !errors.As(err, &e) || e.Kind != Malformed {
		t.Fatalf("err = %v, want Kind Malformed", err)
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		err  *Error
		want string
	}{
		{&Error{Name: "alpha.example", Type: "MX", Kind: ServFail, Server: "127.0.0.1:53", Rcode: 2},
			"lookup MX alpha.example: server failure (SERVFAIL) from 127.0.0.1:53"},
		{&Error{Name: "nope.example", Type: "MX", Kind: NXDomain, Server: "127.0.0.1:53", Rcode: 3},
			"lookup MX nope.example: name does not exist (NXDOMAIN) from 127.0.0.1:53"},
		{&Error{Name: "alpha.example", Type: "MX", Kind: NoData, Server: "127.0.0.1:53", Err: errors.New("domain has no MX and no address (A/AAAA)")},
			"lookup MX alpha.example: domain has no MX and no address (A/AAAA) from 127.0.0.1:53"},
		{&Error{Name: "alpha.example", Type: "A", Kind: Network, Server: "192.0.2.53:53", Err: errors.New("connect: network is unreachable")},
			"lookup A alpha.example: network error from 192.0.2.53:53: connect: network is unreachable"},
		{&Error{Name: "alpha.example", Type: "A", Kind: Rcode, Server: "127.0.0.1:53", Rcode: dns.RcodeNotImplemented},
			"lookup A alpha.example: unexpected response code NOTIMP from 127.0.0.1:53"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q\n                want %q", got, tt.want)
		}
	}
}

func TestClassify(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	bg := context.Background()
	tests := []struct {
		name   string
		parent context.Context
		err    error
		want   Kind
	}{
		{"unreachable", bg, &net.OpError{Op: "dial", Net: "udp", Err: os.NewSyscallError("connect", syscall.ENETUNREACH)}, Network},
		{"no route", bg, &net.OpError{Op: "write", Net: "udp", Err: os.NewSyscallError("write", syscall.EHOSTUNREACH)}, Network},
		{"refused", bg, &net.OpError{Op: "read", Net: "udp", Err: os.NewSyscallError("read", syscall.ECONNREFUSED)}, Network},
		{"deadline", bg, &net.OpError{Op: "read", Net: "udp", Err: os.ErrDeadlineExceeded}, Timeout},
		{"tcp closed early", bg, fmt.Errorf("read: %w", io.EOF), Network},
		{"unpack", bg, dns.ErrId, Malformed},
		{"canceled wins", canceled, &net.OpError{Op: "read", Net: "udp", Err: net.ErrClosed}, Canceled},
	}
	for _, tt := range tests {
		if got := classify(tt.parent, nil, tt.err); got != tt.want {
			t.Errorf("%s: classify(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}
