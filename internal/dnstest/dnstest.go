// Package dnstest runs fake recursive DNS servers for tests. It is an
// ordinary package only so that the tests of several packages can share
// one fake; nothing but tests should import it. Every server it starts
// listens on 127.0.0.1 and is shut down when the test ends.
package dnstest

import (
	"fmt"
	"maps"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// Zone is the fake recursive server's view of the world: "name. TYPE"
// (lower case, fully qualified) → the records in presentation format. A
// name that has no entry of any type does not exist (NXDOMAIN); a name
// with entries of other types only gives NODATA. A "name. CNAME" entry is
// chased like a recursive server would, so the answer carries the CNAME
// and then the target's records. Rcodes ("name." → code) forces a response
// code for a name, whatever the type.
type Zone struct {
	Records map[string][]string
	Rcodes  map[string]int
}

// Query is one query as a server received it.
type Query struct {
	Msg *dns.Msg
	TCP bool
}

// Server is a running fake, safe for concurrent use: tests change its zone
// with Add and SetRcode while it serves.
type Server struct {
	Addr string

	t       testing.TB
	mu      sync.Mutex
	zone    Zone // a copy of Start's: Add must not change a zone shared by tests
	queries []Query
}

// Start serves z over UDP and TCP on one 127.0.0.1 port, as a real resolver
// does, so a truncated UDP answer can be retried over TCP. UDP answers
// larger than the query's EDNS0 size (or 512 without EDNS0) are truncated
// with the TC bit set, like a real server.
func Start(t testing.TB, z Zone) *Server {
	t.Helper()
	s := newServer(t)
	for k, rrs := range z.Records {
		s.zone.Records[k] = append([]string(nil), rrs...)
	}
	maps.Copy(s.zone.Rcodes, z.Rcodes)
	s.serve(func(req *dns.Msg) *dns.Msg {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.zone.answer(req)
	})
	return s
}

// StartHandler serves whatever answer returns, for replies no zone gives;
// a nil reply leaves the query unanswered. Add and SetRcode have no effect.
func StartHandler(t testing.TB, answer func(*dns.Msg) *dns.Msg) *Server {
	t.Helper()
	s := newServer(t)
	s.serve(answer)
	return s
}

func newServer(t testing.TB) *Server {
	return &Server{t: t, zone: Zone{Records: map[string][]string{}, Rcodes: map[string]int{}}}
}

// Add adds zone-file lines ("mx.example. 60 IN A 127.0.0.1"), each under
// its owner and type, next to any records already there.
func (s *Server) Add(lines ...string) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil || rr == nil {
			s.t.Fatalf("dnstest: bad record %q: %v", l, err)
		}
		h := rr.Header()
		k := strings.ToLower(h.Name) + " " + dns.TypeToString[h.Rrtype]
		s.zone.Records[k] = append(s.zone.Records[k], l)
	}
}

// SetRcode makes every query for name get rcode (dns.RcodeServerFailure…).
func (s *Server) SetRcode(name string, rcode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.zone.Rcodes[strings.ToLower(dns.Fqdn(name))] = rcode
}

// ClearRcode undoes SetRcode: name is answered from its records again.
func (s *Server) ClearRcode(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.zone.Rcodes, strings.ToLower(dns.Fqdn(name)))
}

// Queries returns the queries received so far, in order.
func (s *Server) Queries() []Query {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Query(nil), s.queries...)
}

func (s *Server) serve(answer func(*dns.Msg) *dns.Msg) {
	s.t.Helper()
	pc, l := listenBoth(s.t)
	s.Addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		_, tcp := w.RemoteAddr().(*net.TCPAddr)
		s.mu.Lock()
		s.queries = append(s.queries, Query{Msg: req.Copy(), TCP: tcp})
		s.mu.Unlock()
		resp := answer(req)
		if resp == nil {
			return // stay silent
		}
		if !tcp {
			size := dns.MinMsgSize
			if opt := req.IsEdns0(); opt != nil {
				size = int(opt.UDPSize())
			}
			resp.Truncate(size)
		}
		_ = w.WriteMsg(resp)
	})
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: l, Handler: h}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		<-started
		s.t.Cleanup(func() { _ = srv.Shutdown() })
	}
}

func (z Zone) answer(req *dns.Msg) *dns.Msg {
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.RecursionAvailable = true
	if opt := req.IsEdns0(); opt != nil {
		resp.SetEdns0(opt.UDPSize(), false)
	}
	if len(req.Question) != 1 {
		resp.Rcode = dns.RcodeFormatError
		return resp
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	if rc, ok := z.Rcodes[name]; ok {
		resp.Rcode = rc
		return resp
	}
	for range 8 {
		if rrs, ok := z.Records[name+" "+dns.TypeToString[q.Qtype]]; ok {
			resp.Answer = append(resp.Answer, mustRRs(rrs)...)
			return resp
		}
		cn, ok := z.Records[name+" CNAME"]
		if !ok {
			break
		}
		rr := mustRRs(cn)
		resp.Answer = append(resp.Answer, rr...)
		name = strings.ToLower(rr[0].(*dns.CNAME).Target)
	}
	if !z.exists(name) {
		resp.Rcode = dns.RcodeNameError
	}
	return resp
}

func (z Zone) exists(name string) bool {
	for k := range z.Records {
		if strings.HasPrefix(k, name+" ") {
			return true
		}
	}
	return false
}

func mustRRs(texts []string) []dns.RR {
	var out []dns.RR
	for _, s := range texts {
		rr, err := dns.NewRR(s)
		if err != nil {
			panic(fmt.Sprintf("dnstest: bad record %q: %v", s, err))
		}
		out = append(out, rr)
	}
	return out
}

// listenBoth binds UDP on 127.0.0.1:0 and then TCP on the same port,
// retrying in the rare case the TCP port is taken.
func listenBoth(t testing.TB) (net.PacketConn, net.Listener) {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, l
		}
		pc.Close()
	}
	t.Fatal("no free port for UDP and TCP together")
	return nil, nil
}

// Silent reads queries on 127.0.0.1:0 and never answers: a resolver that
// has gone away behind a firewall that drops packets. count says how many
// queries arrived.
func Silent(t testing.TB) (addr string, count func() int) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	n := 0
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			mu.Lock()
			n++
			mu.Unlock()
		}
	}()
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String(), func() int { mu.Lock(); defer mu.Unlock(); return n }
}

// ClosedPort returns a 127.0.0.1 UDP port that was bound and released, so
// nothing listens there: a query gets an ICMP port unreachable, which
// surfaces as "connection refused" on the connected UDP socket.
func ClosedPort(t testing.TB) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}
