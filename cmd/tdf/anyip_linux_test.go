package main

import (
	"encoding/binary"
	"net/netip"
	"syscall"
	"testing"
)

// TestNewRouteMessage decodes the RTM_NEWROUTE request field by field.
func TestNewRouteMessage(t *testing.T) {
	msg := newRouteMessage(netip.MustParsePrefix("10.213.7.130/25"), 1)
	msgs, err := syscall.ParseNetlinkMessage(msg)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("ParseNetlinkMessage: %d messages, %v", len(msgs), err)
	}
	m := msgs[0]
	if m.Header.Type != syscall.RTM_NEWROUTE || m.Header.Flags&syscall.NLM_F_ACK == 0 || m.Header.Flags&syscall.NLM_F_CREATE == 0 {
		t.Errorf("header %+v", m.Header)
	}
	want := []byte{syscall.AF_INET, 25, 0, 0, syscall.RT_TABLE_LOCAL, syscall.RTPROT_BOOT, syscall.RT_SCOPE_HOST, syscall.RTN_LOCAL}
	if string(m.Data[:8]) != string(want) {
		t.Errorf("rtmsg % x, want % x", m.Data[:8], want)
	}
	attrs, err := syscall.ParseNetlinkRouteAttr(&m)
	if err != nil || len(attrs) != 2 {
		t.Fatalf("route attributes: %d, %v", len(attrs), err)
	}
	if attrs[0].Attr.Type != syscall.RTA_DST || netip.AddrFrom4([4]byte(attrs[0].Value)) != netip.MustParseAddr("10.213.7.128") {
		t.Errorf("destination %+v", attrs[0])
	}
	if attrs[1].Attr.Type != syscall.RTA_OIF || binary.NativeEndian.Uint32(attrs[1].Value) != 1 {
		t.Errorf("output interface %+v", attrs[1])
	}
}

func TestNetlinkAck(t *testing.T) {
	ack := func(errno int32) []byte {
		b := make([]byte, syscall.SizeofNlMsghdr+4+syscall.SizeofNlMsghdr)
		binary.NativeEndian.PutUint32(b[0:], uint32(len(b)))
		binary.NativeEndian.PutUint16(b[4:], syscall.NLMSG_ERROR)
		binary.NativeEndian.PutUint32(b[syscall.SizeofNlMsghdr:], uint32(errno))
		return b
	}
	if err := netlinkAck(ack(0)); err != nil {
		t.Errorf("ack 0: %v", err)
	}
	if err := netlinkAck(ack(-int32(syscall.EPERM))); err != syscall.EPERM {
		t.Errorf("ack -EPERM: %v, want EPERM", err)
	}
}
