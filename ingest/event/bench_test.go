package event

import "testing"

func BenchmarkDecode(b *testing.B) {
	data := []byte(validJSON)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Decode(data); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkEncode(b *testing.B) {
	e := validEvent()
	data, err := e.Encode()
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 2*len(data))
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := e.AppendEncode(buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkNewID(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(ID{})))
	for b.Loop() {
		NewID()
	}
}
