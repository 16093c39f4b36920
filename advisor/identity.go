package advisor

import (
	"fmt"
	"strings"

	"github.com/mailroute/mailroute/probe"
)

// identityState is whether this machine's address may send direct.
type identityState int

const (
	unknown identityState = iota // not checked, or the checks could not answer
	good                         // forward-confirmed PTR and no listing
	bad                          // no PTR, PTR not confirmed, or listed
)

type identity struct {
	state   identityState
	short   string   // one clause for the mode step
	reason  string   // the identity step's reason
	unknown []string // what could not be found out, and what it means
}

func (id identity) decision() string {
	return map[identityState]string{unknown: "unknown", good: "can send direct", bad: "should not send direct"}[id.state]
}

// judgeIdentity decides whether the public address can send direct. Large
// receivers refuse mail from addresses without a forward-confirmed PTR
// (FCrDNS) and from end-user ranges (Spamhaus PBL) or listed addresses.
func judgeIdentity(id *probe.Identity) identity {
	const meaning = "without a forward-confirmed PTR and a clean blocklist record, large receivers refuse or junk direct mail, so a relay is the safe choice"
	if id == nil {
		return identity{state: unknown, short: "identity not checked",
			reason:  "this machine's public address, its PTR name and blocklist listings were not checked",
			unknown: []string{"identity: this machine's public address, PTR name and blocklist listings were not checked; " + meaning}}
	}
	if id.PublicIP == "" {
		why := "the public address could not be found"
		if len(id.Unknown) > 0 {
			why += " (" + strings.TrimPrefix(id.Unknown[0], "public address unknown: ") + ")"
		}
		return identity{state: unknown, short: "public address unknown", reason: why,
			unknown: []string{"identity: " + why + "; " + meaning}}
	}
	ip := id.PublicIP
	for _, l := range id.Listings {
		if l.Listed && l.PolicyBlock {
			why := fmt.Sprintf("%s is in %s as an end-user (dynamic) range (%s): such addresses must not send direct", ip, l.Zone, strings.Join(l.Meaning, "; "))
			return identity{state: bad, short: fmt.Sprintf("%s is listed in the PBL (%s)", ip, l.Zone), reason: why}
		}
	}
	for _, l := range id.Listings {
		if l.Listed {
			what := strings.Join(l.Codes, ", ")
			if len(l.Meaning) > 0 {
				what = strings.Join(l.Meaning, "; ")
			}
			why := fmt.Sprintf("%s is listed in %s (%s): receivers that use it refuse mail from this address", ip, l.Zone, what)
			return identity{state: bad, short: fmt.Sprintf("%s is listed in %s", ip, l.Zone), reason: why}
		}
	}
	if !id.ForwardConfirmed {
		if len(id.PTR) == 0 {
			return identity{state: bad, short: ip + " has no PTR name",
				reason: ip + " has no PTR (reverse DNS) name: large receivers refuse mail from addresses without one"}
		}
		return identity{state: bad, short: "the PTR name does not resolve back to " + ip,
			reason: fmt.Sprintf("%s has the PTR name %s, which does not resolve back to it (not forward-confirmed): receivers treat that like no PTR", ip, strings.Join(id.PTR, ", "))}
	}
	var unk []string
	var zones []string
	for _, l := range id.Listings {
		switch {
		case l.QueryRefused:
			unk = append(unk, fmt.Sprintf("identity: %s refused to answer (a public resolver or over quota): whether %s is listed there is unknown", l.Zone, ip))
		case l.Error != "":
			unk = append(unk, fmt.Sprintf("identity: the %s look-up failed (%s): whether %s is listed there is unknown", l.Zone, l.Error, ip))
		default:
			zones = append(zones, l.Zone)
		}
	}
	if len(zones) == 0 {
		unk = append(unk, "identity: no blocklist answered for "+ip+"; "+meaning)
		return identity{state: unknown, short: "blocklist listing unknown",
			reason:  fmt.Sprintf("%s has the forward-confirmed PTR name %s, but no blocklist could be checked", ip, id.ConfirmedName),
			unknown: unk}
	}
	return identity{state: good, short: fmt.Sprintf("%s is %s, forward-confirmed, not listed", ip, id.ConfirmedName),
		reason: fmt.Sprintf("%s has the PTR name %s, which resolves back to it (FCrDNS), and is not listed in %s",
			ip, id.ConfirmedName, strings.Join(zones, ", ")),
		unknown: unk}
}
