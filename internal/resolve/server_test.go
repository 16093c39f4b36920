package resolve

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// zone is the fake recursive server's view of the world: "name TYPE" → the
// records in presentation format. A name that has no entry of any type does
// not exist (NXDOMAIN); a name with entries of other types only gives NODATA.
// A "name CNAME" entry is chased like a recursive server would, so the answer
// carries the CNAME and then the target's records. rcodes forces a response
// code for a name, whatever the type.
type zone struct {
	records map[string][]string
	rcodes  map[string]int
}

func (z zone) answer(req *dns.Msg) *dns.Msg {
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.RecursionAvailable = true
	if opt := req.IsEdns0(); opt != nil {
		resp.SetEdns0(opt.UDPSize(), false)
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	if rc, ok := z.rcodes[name]; ok {
		resp.Rcode = rc
		return resp
	}
	for range 8 {
		if rrs, ok := z.records[name+" "+dns.TypeToString[q.Qtype]]; ok {
			resp.Answer = append(resp.Answer, mustRRs(rrs)...)
			return resp
		}
		cn, ok := z.records[name+" CNAME"]
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

func (z zone) exists(name string) bool {
	for k := range z.records {
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
			panic(fmt.Sprintf("bad test record %q: %v", s, err))
		}
		out = append(out, rr)
	}
	return out
}

// seen is one query as the fake server received it.
type seen struct {
	msg *dns.Msg
	tcp bool
}

// fakeServer answers on UDP and TCP on the same 127.0.0.1 port, as a real
// resolver does, so a truncated UDP answer can be retried over TCP.
type fakeServer struct {
	Addr string

	mu      sync.Mutex
	queries []seen
}

func (s *fakeServer) Queries() []seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seen(nil), s.queries...)
}

// startServer serves z. UDP answers larger than the query's EDNS0 size (or
// 512 without EDNS0) are truncated with the TC bit set, like a real server.
func startServer(t testing.TB, z zone) *fakeServer {
	t.Helper()
	return startHandler(t, z.answer)
}

func startHandler(t testing.TB, answer func(*dns.Msg) *dns.Msg) *fakeServer {
	t.Helper()
	pc, l := listenBoth(t)
	fs := &fakeServer{Addr: pc.LocalAddr().String()}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		_, tcp := w.RemoteAddr().(*net.TCPAddr)
		fs.mu.Lock()
		fs.queries = append(fs.queries, seen{msg: req.Copy(), tcp: tcp})
		fs.mu.Unlock()
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
		w.WriteMsg(resp)
	})
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: l, Handler: h}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return fs
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

// silentServer reads queries on 127.0.0.1:0 and never answers: a resolver
// that has gone away behind a firewall that drops packets.
func silentServer(t testing.TB) (addr string, count func() int) {
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

// closedPort returns a 127.0.0.1 UDP port that was bound and released, so
// nothing listens there: a query gets an ICMP port unreachable, which
// surfaces as "connection refused" on the connected UDP socket.
func closedPort(t testing.TB) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}

// testResolver asks the given servers with short timeouts and a seeded Rand.
func testResolver(servers ...string) *Resolver {
	return &Resolver{
		Servers:  servers,
		Timeout:  500 * time.Millisecond,
		Attempts: 2,
		Rand:     rand.New(rand.NewPCG(1, 2)),
	}
}
