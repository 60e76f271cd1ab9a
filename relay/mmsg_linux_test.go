package relay

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

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

// The raw reader gives what net.UDPConn gives: the datagram and its
// sender, IPv4 senders of a dual-stack socket as mapped addresses, IPv6
// senders as they are; a short buffer truncates as recvfrom does; a read
// deadline times out; a closed socket is net.ErrClosed.
func TestRawReader(t *testing.T) {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := newRawReader(conn)
	if r == nil {
		t.Fatal("no raw reader for a UDP socket")
	}
	port := conn.LocalAddr().(*net.UDPAddr).Port
	s4 := listenUDP(t)
	senders := []*net.UDPConn{s4}
	if s6, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err == nil {
		defer s6.Close()
		senders = append(senders, s6)
	}
	for _, s := range senders {
		dst := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
		if s.LocalAddr().(*net.UDPAddr).IP.To4() == nil {
			dst = &net.UDPAddr{IP: net.IPv6loopback, Port: port}
		}
		for _, msg := range []string{"first", "second"} {
			if _, err := s.WriteToUDP([]byte(msg), dst); err != nil {
				t.Fatal(err)
			}
		}
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		// The first datagram through net.UDPConn, the second raw: the
		// same sender must come out of both.
		buf := make([]byte, 64)
		n, want, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil || string(buf[:n]) != "first" {
			t.Fatalf("net.UDPConn read %q, %v", buf[:n], err)
		}
		n, got, err := r.ReadFromAddrPort(buf)
		if err != nil || string(buf[:n]) != "second" {
			t.Fatalf("raw read %q, %v", buf[:n], err)
		}
		if got != want {
			t.Errorf("raw read's sender %v, net.UDPConn's %v", got, want)
		}
		if sent := s.LocalAddr().(*net.UDPAddr).AddrPort(); got.Port() != sent.Port() || got.Addr().Unmap() != sent.Addr().Unmap() {
			t.Errorf("sender %v, sent from %v", got, sent)
		}
	}

	if _, err := s4.WriteToUDP([]byte("truncated"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}); err != nil {
		t.Fatal(err)
	}
	short := make([]byte, 4)
	if n, _, err := r.ReadFromAddrPort(short); err != nil || string(short[:n]) != "trun" {
		t.Errorf("short buffer: %q, %v", short[:n], err)
	}

	conn.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, _, err := r.ReadFromAddrPort(make([]byte, 64)); !os.IsTimeout(err) {
		t.Errorf("read past the deadline: %v, want a timeout", err)
	}
	conn.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, _, err := r.ReadFromAddrPort(make([]byte, 64))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond) // let it wait in the poller
	conn.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Errorf("read on a closed socket: %v, want net.ErrClosed", err)
	}
}
