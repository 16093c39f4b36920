package probe

import (
	"strings"
	"testing"

	"github.com/mailroute/mailroute/internal/smtpclient"
)

// The summary reasons across endpoints: where port 25 reaches some MX host
// over a family, a blocked one over the same family is that host's problem;
// where it reaches none, it is this network's.
func TestSummaryAcrossEndpointsAndFamilies(t *testing.T) {
	open := func(host, addr string) *Endpoint {
		return &Endpoint{Role: RoleMX, Host: host, Addr: addr, Port: 25, Verdict: Open, Banner: greeting220(host)}
	}
	shut := func(host, addr string, v Verdict) *Endpoint {
		return &Endpoint{Role: RoleMX, Host: host, Addr: addr, Port: 25, Verdict: v}
	}
	cases := []struct {
		name     string
		ends     []*Endpoint
		want     []string
		mustNot  []string
		families int
	}{
		{"one open, one filtered", []*Endpoint{open("mx.a.test", "192.0.2.1"), shut("mx.b.test", "192.0.2.2", Filtered)},
			[]string{"port 25 is filtered on 1 of 2 MX hosts (mx.b.test): port 25 reaches other MX hosts from here"}, []string{"your network"}, 1},
		{"one open, one refused", []*Endpoint{open("mx.a.test", "192.0.2.1"), shut("mx.b.test", "192.0.2.2", Refused)},
			[]string{"port 25 is refused on 1 of 2 MX hosts (mx.b.test): port 25 reaches other MX hosts from here, so those hosts turn"}, nil, 1},
		{"all filtered", []*Endpoint{shut("mx.a.test", "192.0.2.1", Filtered), shut("mx.b.test", "192.0.2.2", Filtered)},
			[]string{"Port 25 is filtered on 2 of 2 MX hosts: your network drops outbound SMTP"}, []string{"reaches other"}, 1},
		{"IPv4 open elsewhere does not clear an IPv6-only host", []*Endpoint{open("mx.a.test", "192.0.2.1"), shut("mx.b.test", "fd00::2", Filtered)},
			[]string{"port 25 is filtered on 1 of 2 MX hosts: your network drops", "Port 25 is filtered over IPv6 but open over IPv4"}, []string{"reaches other"}, 2},
		{"dual stack, IPv4 dropped", []*Endpoint{shut("mx.a.test", "192.0.2.1", Filtered), open("mx.a.test", "fd00::1")},
			[]string{"Port 25 reaches 1 of 1 MX hosts directly", "Port 25 is filtered over IPv4 but open over IPv6 (IPv6: 1 of 1 MX endpoints open; IPv4: filtered 1). The block is on the way over IPv4 only", "Gmail requires a reverse name (PTR)"}, nil, 2},
		{"no IPv6 route, IPv4 open", []*Endpoint{open("mx.a.test", "192.0.2.1"), shut("mx.a.test", "fd00::1", Unreachable)},
			[]string{"Port 25 is unreachable over IPv6 but open over IPv4"}, []string{"Gmail requires"}, 2},
		{"no IPv6 here does not hide a far-end IPv4 block", []*Endpoint{open("mx.a.test", "192.0.2.1"), shut("mx.a.test", "fd00::1", Unreachable),
			shut("mx.b.test", "192.0.2.2", Filtered), shut("mx.b.test", "fd00::2", Unreachable)},
			[]string{"(mx.b.test): port 25 reaches other MX hosts from here"}, []string{"your network drops"}, 2},
		{"both families fine", []*Endpoint{open("mx.a.test", "192.0.2.1"), open("mx.a.test", "fd00::1")},
			nil, []string{"over IPv"}, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rep := &Report{Domains: []*Domain{{Name: "x.test", Ends: c.ends}}}
			rep.Port25ByFamily = port25ByFamily(rep)
			sum := strings.Join(summarize(rep), "\n")
			for _, w := range c.want {
				if !strings.Contains(sum, w) {
					t.Errorf("summary lacks %q:\n%s", w, sum)
				}
			}
			for _, w := range c.mustNot {
				if strings.Contains(sum, w) {
					t.Errorf("summary has %q:\n%s", w, sum)
				}
			}
			if len(rep.Port25ByFamily) != c.families {
				t.Errorf("families %+v", rep.Port25ByFamily)
			}
		})
	}
}

func greeting220(host string) *smtpclient.Reply {
	return &smtpclient.Reply{Code: 220, Lines: []string{host + " ESMTP"}}
}
