package relay

import (
	"errors"
	"net"
	"testing"

	"golang.org/x/net/ipv4"
)

// One batch from a dual-stack socket reaches an IPv4 and an IPv6
// receiver; each message's length is reported.
func TestMMsgWriterBothFamilies(t *testing.T) {
	sender, err := net.ListenUDP("udp", &net.UDPAddr{})
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	r6, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	defer r6.Close()
	r4 := listenUDP(t)
	w, ok := newBatchWriter(sender, ipv4.NewPacketConn(sender)).(*mmsgWriter)
	if !ok {
		t.Fatal("no sendmmsg writer for a UDP socket")
	}
	ms := []ipv4.Message{
		{Buffers: [][]byte{[]byte("to four")}, Addr: r4.LocalAddr()},
		{Buffers: [][]byte{[]byte("to "), []byte("six")}, Addr: r6.LocalAddr()},
		{Buffers: [][]byte{[]byte("four again")}, Addr: r4.LocalAddr()},
	}
	n, err := w.WriteBatch(ms, 0)
	if err != nil || n != 3 {
		t.Fatalf("WriteBatch: %d sent, %v", n, err)
	}
	for i, want := range []int{7, 6, 10} {
		if ms[i].N != want {
			t.Errorf("message %d: N = %d, want %d", i, ms[i].N, want)
		}
	}
	got4 := receive(t, r4, 2)
	if string(got4[0]) != "to four" || string(got4[1]) != "four again" {
		t.Errorf("IPv4 receiver got %q", got4)
	}
	if got6 := receive(t, r6, 1); string(got6[0]) != "to six" {
		t.Errorf("IPv6 receiver got %q", got6)
	}
}

// A message the kernel refuses stops the batch there with the error;
// those before it are sent. A closed socket is net.ErrClosed.
func TestMMsgWriterRefusedAndClosed(t *testing.T) {
	sender := listenUDP(t) // IPv4 only: an IPv6 destination is refused
	r := listenUDP(t)
	w := newBatchWriter(sender, ipv4.NewPacketConn(sender))
	ms := []ipv4.Message{
		{Buffers: [][]byte{[]byte("first")}, Addr: r.LocalAddr()},
		{Buffers: [][]byte{[]byte("refused")}, Addr: &net.UDPAddr{IP: net.IPv6loopback, Port: 9}},
		{Buffers: [][]byte{[]byte("never")}, Addr: r.LocalAddr()},
	}
	if n, err := w.WriteBatch(ms, 0); n != 1 || err != nil {
		t.Fatalf("batch with a bad second message: %d sent, %v; want 1 and the error at the next call", n, err)
	}
	if n, err := w.WriteBatch(ms[1:], 0); n != 0 || err == nil {
		t.Fatalf("refused message: %d sent, %v; want 0 and an error", n, err)
	}
	if got := receive(t, r, 1); string(got[0]) != "first" {
		t.Fatalf("got %q", got[0])
	}
	if _, err := w.WriteBatch([]ipv4.Message{{Buffers: [][]byte{[]byte("x")}, Addr: &net.IPAddr{IP: net.IPv4(127, 0, 0, 1)}}}, 0); err == nil {
		t.Fatal("a non-UDP address accepted")
	}
	sender.Close()
	if _, err := w.WriteBatch(ms[:1], 0); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write on a closed socket: %v, want net.ErrClosed", err)
	}
}

// An IPv6 zone is an interface name or index, looked up once.
func TestMMsgWriterZones(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skipf("no loopback interface named lo: %v", err)
	}
	w := &mmsgWriter{}
	for zone, want := range map[string]uint32{"lo": uint32(lo.Index), "7": 7, "no-such-interface": 0} {
		if got := w.zoneIndex(zone); got != want {
			t.Errorf("zone %q: index %d, want %d", zone, got, want)
		}
	}
	if len(w.zones) != 3 {
		t.Errorf("%d zones remembered, want 3", len(w.zones))
	}
}
