package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// addLocalRoute makes every address of p local to this host, as
// `ip route add local <p> dev lo` does (an "AnyIP" route): a socket may
// bind any address of p, and the kernel answers ARP for them on every
// interface, so other hosts of the network reach them. It needs
// CAP_NET_ADMIN. An existing route for p is replaced.
func addLocalRoute(p netip.Prefix) error {
	if !p.Addr().Is4() {
		return fmt.Errorf("local route %s: only IPv4", p)
	}
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		return fmt.Errorf("local route %s: %w", p, err)
	}
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC, syscall.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("local route %s: netlink socket: %w", p, err)
	}
	defer syscall.Close(fd)
	if err := syscall.Sendto(fd, newRouteMessage(p, uint32(lo.Index)), 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return fmt.Errorf("local route %s: netlink send: %w", p, err)
	}
	buf := make([]byte, 4096)
	n, _, err := syscall.Recvfrom(fd, buf, 0)
	if err != nil {
		return fmt.Errorf("local route %s: netlink receive: %w", p, err)
	}
	if err := netlinkAck(buf[:n]); err != nil {
		return fmt.Errorf("local route %s: %w (the fakecloud needs CAP_NET_ADMIN: cap_add NET_ADMIN)", p, err)
	}
	return nil
}

// newRouteMessage encodes RTM_NEWROUTE for "local <p> dev <ifindex>
// table local scope host".
func newRouteMessage(p netip.Prefix, ifindex uint32) []byte {
	dst := p.Masked().Addr().As4()
	attr := func(typ uint16, data []byte) []byte {
		b := make([]byte, syscall.SizeofRtAttr, syscall.SizeofRtAttr+len(data))
		binary.NativeEndian.PutUint16(b[0:], uint16(syscall.SizeofRtAttr+len(data)))
		binary.NativeEndian.PutUint16(b[2:], typ)
		return append(b, data...) // 4-byte payloads need no padding
	}
	oif := binary.NativeEndian.AppendUint32(nil, ifindex)
	body := []byte{
		syscall.AF_INET,        // family
		byte(p.Bits()),         // dst_len
		0,                      // src_len
		0,                      // tos
		syscall.RT_TABLE_LOCAL, // table
		syscall.RTPROT_BOOT,    // protocol
		syscall.RT_SCOPE_HOST,  // scope
		syscall.RTN_LOCAL,      // type
		0, 0, 0, 0,             // flags
	}
	body = append(body, attr(syscall.RTA_DST, dst[:])...)
	body = append(body, attr(syscall.RTA_OIF, oif)...)
	msg := make([]byte, syscall.SizeofNlMsghdr, syscall.SizeofNlMsghdr+len(body))
	binary.NativeEndian.PutUint32(msg[0:], uint32(syscall.SizeofNlMsghdr+len(body)))
	binary.NativeEndian.PutUint16(msg[4:], syscall.RTM_NEWROUTE)
	binary.NativeEndian.PutUint16(msg[6:], syscall.NLM_F_REQUEST|syscall.NLM_F_ACK|syscall.NLM_F_CREATE|syscall.NLM_F_REPLACE)
	binary.NativeEndian.PutUint32(msg[8:], 1) // sequence number
	return append(msg, body...)
}

// netlinkAck reads the kernel's answer to a request sent with NLM_F_ACK:
// an NLMSG_ERROR message whose error is 0 on success, -errno otherwise.
func netlinkAck(b []byte) error {
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err != nil {
		return fmt.Errorf("netlink answer: %w", err)
	}
	for _, m := range msgs {
		if m.Header.Type != syscall.NLMSG_ERROR {
			continue
		}
		if len(m.Data) < 4 {
			return fmt.Errorf("netlink answer: short error message")
		}
		if errno := int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
			return syscall.Errno(-errno)
		}
		return nil
	}
	return fmt.Errorf("netlink answer: no acknowledgement")
}
