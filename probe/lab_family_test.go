package probe_test

import (
	"strings"
	"testing"

	"github.com/mailroute/mailroute/internal/lab"
	"github.com/mailroute/mailroute/probe"
)

// TestLabConclusionsAcrossEndpoints: the summary reasons from every
// endpoint (issue 14). One lab, real Postfix and iptables:
//   - port 25 open to one MX and filtered to another: the filtered host's
//     problem, not this network's;
//   - filtered to the only MX: this network's (or ISP's) block;
//   - a dual-stack MX (A and AAAA) with port 25 dropped over IPv4 only:
//     filtered on v4, open on v6, and the summary says so.
func TestLabConclusionsAcrossEndpoints(t *testing.T) {
	l := lab.Start(t, lab.Options{ExtraDNS: lab.SharedMXDNS()})
	l.StartSharedMX(t)
	if err := l.Filter(lab.FilterNet, 25); err != nil {
		t.Fatal(err)
	}
	// iptables is IPv4 only: the AAAA address of the same host stays open.
	if err := l.Filter(lab.DualAddr+"/32", 25); err != nil {
		t.Fatal(err)
	}
	base := []string{"--timeout", "2s", "--tls-ca", l.CAFile}

	t.Run("one MX open, another filtered", func(t *testing.T) {
		rep, code := probeLab(t, l, append(base, "--to", lab.AlphaDomain, "--to", lab.FilteredDomain)...)
		if code != 0 {
			t.Errorf("exit %d", code)
		}
		if e := domain(t, rep, lab.FilteredDomain).Ends[0]; e.Verdict != probe.Filtered {
			t.Fatalf("filtered.example: %s %q", e.Verdict, e.Error)
		}
		sum := strings.Join(rep.Summary, "\n")
		if !strings.Contains(sum, "port 25 is filtered on 1 of 2 MX hosts ("+lab.FilteredMXHost+"): port 25 reaches other MX hosts from here, so those hosts or their networks drop the connections, not yours") {
			t.Errorf("summary does not put the block at the far end:\n%s", sum)
		}
		if strings.Contains(sum, "your network drops") {
			t.Errorf("summary blames this network:\n%s", sum)
		}
	})
	t.Run("the only MX filtered", func(t *testing.T) {
		rep, _ := probeLab(t, l, append(base, "--to", lab.FilteredDomain)...)
		if sum := strings.Join(rep.Summary, "\n"); !strings.Contains(sum, "Port 25 is filtered on 1 of 1 MX hosts: your network drops outbound SMTP") {
			t.Errorf("summary:\n%s", sum)
		}
	})
	t.Run("IPv4 filtered, IPv6 open", func(t *testing.T) {
		rep, code := probeLab(t, l, append(base, "--to", lab.DualDomain)...)
		if code != 0 {
			t.Errorf("exit %d", code)
		}
		d := domain(t, rep, lab.DualDomain)
		if len(d.Ends) != 2 {
			t.Fatalf("endpoints %+v: want the A and the AAAA address", d.Ends)
		}
		for _, e := range d.Ends {
			switch e.Addr {
			case lab.DualAddr:
				if e.Verdict != probe.Filtered {
					t.Errorf("IPv4 %s: %s %q", e.Addr, e.Verdict, e.Error)
				}
			case lab.DualAddr6:
				if !e.Usable() || e.TLS == nil || !e.TLS.Verified {
					t.Errorf("IPv6 %s: %s %q %+v", e.Addr, e.Verdict, e.Problem, e.TLS)
				}
			default:
				t.Errorf("unexpected address %s", e.Addr)
			}
		}
		if f := rep.Port25ByFamily; len(f) != 2 || f[0].Family != "IPv4" || f[0].Open != 0 || f[0].Verdicts["filtered"] != 1 ||
			f[1].Family != "IPv6" || f[1].Open != 1 {
			t.Errorf("port25_by_family %+v", f)
		}
		sum := strings.Join(rep.Summary, "\n")
		for _, want := range []string{
			"Port 25 reaches 1 of 1 MX hosts directly",
			"Port 25 is filtered over IPv4 but open over IPv6 (IPv6: 1 of 1 MX endpoints open; IPv4: filtered 1)",
			"The block is on the way over IPv4 only",
		} {
			if !strings.Contains(sum, want) {
				t.Errorf("summary lacks %q:\n%s", want, sum)
			}
		}
	})
}
