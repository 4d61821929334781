package wal

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// BenchmarkAppendSync measures durable appends on the real disk (in
// b.TempDir()): one entry of the given size then one fsync, per op. The
// raw case is the floor the disk sets, os.File.Write plus Sync of the same
// bytes on a plain file, measured in the same run so that the WAL's
// overhead reads as a ratio:
//
//	go test -run='^$' -bench=AppendSync -benchtime=3s ./internal/wal/
//
// It reports p50 and p99 latency per op in microseconds, and MB/s of
// entry data.
func BenchmarkAppendSync(b *testing.B) {
	for _, size := range []int{4 << 10, 1 << 20} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(i * 7)
		}
		b.Run(fmt.Sprintf("impl=raw/bytes=%d", size), func(b *testing.B) {
			f, err := os.OpenFile(filepath.Join(b.TempDir(), "raw"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			runLatency(b, size, func(int) error {
				if _, err := f.Write(data); err != nil {
					return err
				}
				return f.Sync()
			})
		})
		b.Run(fmt.Sprintf("impl=wal/bytes=%d", size), func(b *testing.B) {
			w, _, err := Open(b.TempDir(), Options{NodeID: 1})
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			ent := []Entry{{Term: 1, Data: data}}
			runLatency(b, size, func(i int) error {
				ent[0].Index = uint64(i) + 1
				if err := w.Append(ent); err != nil {
					return err
				}
				return w.Sync()
			})
		})
	}
}

// runLatency runs op b.N times, timing each call, and reports the p50 and
// p99 latency.
func runLatency(b *testing.B, size int, op func(i int) error) {
	b.SetBytes(int64(size))
	b.ReportAllocs()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if err := op(i); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(float64(len(lat))*p))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}

// BenchmarkAppend measures Append alone (no fsync), the cost of encoding
// and checksumming into the buffer plus a write(2) per MiB, with 100-byte
// entries in batches of 16.
func BenchmarkAppend(b *testing.B) {
	w, _, err := Open(b.TempDir(), Options{NodeID: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	ents := makeEntries(1, 16, 1, 100)
	b.SetBytes(16 * 100)
	b.ReportAllocs()
	next := uint64(1)
	for b.Loop() {
		for i := range ents {
			ents[i].Index = next + uint64(i)
		}
		next += uint64(len(ents))
		if err := w.Append(ents); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen measures recovery of a 64 MiB log of 1 KiB entries.
func BenchmarkOpen(b *testing.B) {
	dir := b.TempDir()
	w, _, err := Open(dir, Options{NodeID: 1, SegmentSize: 16 << 20})
	if err != nil {
		b.Fatal(err)
	}
	const n = 64 << 10
	ents := makeEntries(1, 64, 1, 1<<10)
	for next := uint64(1); next < n; next += 64 {
		for i := range ents {
			ents[i].Index = next + uint64(i)
		}
		if err := w.Append(ents); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(n << 10)
	b.ResetTimer()
	for b.Loop() {
		w, st, err := Open(dir, Options{NodeID: 1})
		if err != nil {
			b.Fatal(err)
		}
		if len(st.Entries) != n {
			b.Fatalf("%d entries", len(st.Entries))
		}
		w.Close()
	}
}
