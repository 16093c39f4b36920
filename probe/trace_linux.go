//go:build linux

package probe

import (
	"context"
	"errors"
	"net/netip"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// hopProbe sends one TCP SYN to addr:port with the IP TTL (IPv6 hop limit)
// set to ttl and says what came back within wait. IP_RECVERR makes the
// kernel keep the ICMP error that ends the connect, with the address of the
// router that sent it (RFC 1122 §4.2.3.9 has TCP report ICMP errors to the
// application); a router answers an expired TTL with time-exceeded (RFC
// 792, RFC 4443 §3.3). No raw socket is needed: this is traceroute's
// "tcpconn" method.
func hopProbe(ctx context.Context, addr netip.Addr, port, ttl int, wait time.Duration) Hop {
	h := Hop{TTL: ttl}
	v4 := addr.Is4()
	fam, lvl, ttlOpt, errOpt := unix.AF_INET, unix.IPPROTO_IP, unix.IP_TTL, unix.IP_RECVERR
	if !v4 {
		fam, lvl, ttlOpt, errOpt = unix.AF_INET6, unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, unix.IPV6_RECVERR
	}
	fd, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		h.Result, h.Error = HopError, err.Error()
		return h
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, lvl, ttlOpt, ttl); err != nil {
		h.Result, h.Error = HopError, "setting the TTL: "+err.Error()
		return h
	}
	if err := unix.SetsockoptInt(fd, lvl, errOpt, 1); err != nil {
		h.Result, h.Error = HopError, "IP_RECVERR: "+err.Error()
		return h
	}
	var sa unix.Sockaddr
	if v4 {
		sa = &unix.SockaddrInet4{Port: port, Addr: addr.As4()}
	} else {
		sa = &unix.SockaddrInet6{Port: port, Addr: addr.As16()}
	}
	start := time.Now()
	if err := unix.Connect(fd, sa); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		h.Result, h.Error = HopError, err.Error()
		return h
	}
	deadline := start.Add(wait)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	for {
		left := time.Until(deadline)
		if left <= 0 {
			h.Result = HopSilent
			return h
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		n, err := unix.Poll(fds, int(left/time.Millisecond)+1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			h.Result, h.Error = HopError, err.Error()
			return h
		}
		if n > 0 {
			break
		}
	}
	h.RTT = Duration(time.Since(start))
	soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	switch {
	case err != nil:
		h.Result, h.Error = HopError, err.Error()
	case soerr == 0, unix.Errno(soerr) == unix.ECONNREFUSED:
		h.Result = HopReached // a SYN-ACK or a reset: the target itself answered
	default:
		h.Result, h.Error = HopError, unix.Errno(soerr).Error()
		readICMP(fd, v4, &h)
	}
	return h
}

// readICMP reads the ICMP error queued by IP_RECVERR into h: the kind and
// the router that sent it (SO_EE_OFFENDER, right after the error struct).
func readICMP(fd int, v4 bool, h *Hop) {
	oob := make([]byte, 512)
	buf := make([]byte, 64)
	_, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_ERRQUEUE)
	if err != nil {
		return
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return
	}
	for _, m := range msgs {
		if len(m.Data) < int(unsafe.Sizeof(unix.SockExtendedErr{})) {
			continue
		}
		ee := (*unix.SockExtendedErr)(unsafe.Pointer(&m.Data[0]))
		off := m.Data[unsafe.Sizeof(*ee):]
		switch {
		case v4 && ee.Origin == unix.SO_EE_ORIGIN_ICMP && len(off) >= 8:
			h.From = netip.AddrFrom4([4]byte(off[4:8])).String()
			switch ee.Type {
			case 11: // time exceeded (RFC 792)
				h.Result = HopTimeExceeded
			case 3: // destination unreachable
				h.Result = HopUnreachable
			}
		case !v4 && ee.Origin == unix.SO_EE_ORIGIN_ICMP6 && len(off) >= 24:
			h.From = netip.AddrFrom16([16]byte(off[8:24])).String()
			switch ee.Type {
			case 3: // time exceeded (RFC 4443 §3.3)
				h.Result = HopTimeExceeded
			case 1: // destination unreachable
				h.Result = HopUnreachable
			}
		}
		if h.Result != HopError {
			h.Error = ""
		}
	}
}
