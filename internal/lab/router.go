package lab

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// A routed path for tracing (probe's "where port 25 dies"): the lab namespace reaches two
// more namespaces through veth pairs, on documentation ranges only (RFC 5737):
//
//	lab (ClientLANAddr) ── router (RouterLANAddr | RouterWANAddr) ── server (FarMXAddr, FarMX2Addr)
//
// The router forwards, and its FORWARD chain drops TCP port 25 to FarMXAddr: an upstream
// block one hop away. Nothing listens in the server namespace: its kernel resets every
// connection, which is an answer as good as an accept for a trace. FarMX2Addr passes the
// router; a test drops it locally with Filter.
const (
	ClientLANAddr = "192.0.2.1"
	RouterLANAddr = "192.0.2.254"
	RouterWANAddr = "198.51.100.254"
	FarMXAddr     = "198.51.100.25"
	FarMX2Addr    = "198.51.100.26"
	FarDomain     = "far.example"  // MX FarMXHost → FarMXAddr
	Far2Domain    = "far2.example" // MX Far2MXHost → FarMX2Addr
	FarMXHost     = "mx.far.example"
	Far2MXHost    = "mx.far2.example"
)

// RouterDNS is the Options.ExtraDNS for FarDomain and Far2Domain.
func RouterDNS() []string {
	return []string{
		"host-record=" + FarMXHost + "," + FarMXAddr,
		"host-record=" + Far2MXHost + "," + FarMX2Addr,
		"mx-host=" + FarDomain + "," + FarMXHost + ",10",
		"mx-host=" + Far2Domain + "," + Far2MXHost + ",10",
	}
}

// StartRouter creates the router and server namespaces and their links, and removes them
// when the test ends (a later Start removes them if this process dies first: their names
// carry the lab's). It fails the test on error.
func (l *Lab) StartRouter(t testing.TB) {
	t.Helper()
	router, server := l.Name+"-r", l.Name+"-s"
	t.Cleanup(func() {
		for _, ns := range []string{router, server} {
			if err := deleteNamespace(ns); err != nil {
				t.Errorf("lab: %v", err)
			}
		}
	})
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(tool("ip"), args...).CombinedOutput(); err != nil {
			t.Fatalf("lab: ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", router)
	run("netns", "add", server)
	// Each veth end is created inside its namespace, so the names never meet.
	run("-n", l.Name, "link", "add", "up0", "type", "veth", "peer", "name", "lan0", "netns", router)
	run("-n", router, "link", "add", "wan0", "type", "veth", "peer", "name", "dn0", "netns", server)
	for _, c := range [][]string{
		{"-n", l.Name, "addr", "add", ClientLANAddr + "/24", "dev", "up0"},
		{"-n", l.Name, "link", "set", "up0", "up"},
		{"-n", l.Name, "route", "add", "198.51.100.0/24", "via", RouterLANAddr},
		{"-n", router, "link", "set", "lo", "up"},
		{"-n", router, "addr", "add", RouterLANAddr + "/24", "dev", "lan0"},
		{"-n", router, "addr", "add", RouterWANAddr + "/24", "dev", "wan0"},
		{"-n", router, "link", "set", "lan0", "up"},
		{"-n", router, "link", "set", "wan0", "up"},
		{"-n", server, "link", "set", "lo", "up"},
		{"-n", server, "addr", "add", FarMXAddr + "/24", "dev", "dn0"},
		{"-n", server, "addr", "add", FarMX2Addr + "/24", "dev", "dn0"},
		{"-n", server, "link", "set", "dn0", "up"},
		{"-n", server, "route", "add", "default", "via", RouterWANAddr},
	} {
		run(c...)
	}
	// Forwarding on; no ICMP rate limit, so back-to-back traces in one test all get their
	// time-exceeded answers (the default allows about one a second after a burst of six).
	sysctl := "echo 1 > /proc/sys/net/ipv4/ip_forward && echo 0 > /proc/sys/net/ipv4/icmp_ratelimit"
	if out, err := exec.Command(tool("ip"), "netns", "exec", router, "/bin/sh", "-c", sysctl).CombinedOutput(); err != nil {
		t.Fatalf("lab: %s in %s: %v: %s", sysctl, router, err, out)
	}
	drop := []string{"netns", "exec", router, tool("iptables"), "-w", "-A", "FORWARD", "-p", "tcp", "-d", FarMXAddr, "--dport", "25", "-j", "DROP"}
	if out, err := exec.Command(tool("ip"), drop...).CombinedOutput(); err != nil {
		t.Fatalf("lab: %s: %v: %s", fmt.Sprint(drop), err, out)
	}
}
