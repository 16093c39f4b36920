package advisor

import "github.com/mailroute/mailroute/probe"

// explainIdentity6 says what receivers see of this machine over IPv6, when
// it has an IPv6 address of its own: the same checks as over IPv4, and
// stricter ones at Gmail, which refuses IPv6 mail from an address without
// a reverse name and wants SPF or DKIM on it
// (https://support.google.com/a/answer/81126).
func explainIdentity6(id *probe.Identity) []Finding {
	if id == nil || id.IPv6 == nil {
		return nil
	}
	fs := explainIdentity(id.IPv6)
	for i := range fs {
		fs[i].Title = "Over IPv6: " + fs[i].Title
		if fs[i].Severity != SevOK && fs[i].Severity != SevInfo {
			fs[i].Meaning += " Over IPv6 this matters even more: Gmail refuses mail from IPv6 addresses without a reverse name that points back, and requires SPF or DKIM on it."
		}
	}
	return fs
}

// ipv6Only: port 25 reached MX servers over IPv6 and none over IPv4.
func ipv6Only(rep *probe.Report) bool {
	open := port25Open(rep)
	return open["IPv6"] > 0 && open["IPv4"] == 0
}

// port25Open counts the MX endpoints open on port 25, by family.
func port25Open(rep *probe.Report) map[string]int {
	open := map[string]int{}
	for _, f := range rep.Port25ByFamily {
		open[f.Family] = f.Open
	}
	return open
}

// port25Tried: MX endpoints of that family were probed (and none was open
// if port25Open says 0): a family with no endpoints says nothing.
func port25Tried(rep *probe.Report, family string) bool {
	for _, f := range rep.Port25ByFamily {
		if f.Family == family {
			return f.Endpoints > 0
		}
	}
	return false
}
