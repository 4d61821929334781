package raft_test

import (
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/rafttest"
)

// BenchmarkSnapshotCatchUp measures how long a leader takes to bring a new
// follower up to date with a large snapshot (100 MiB by default; set
// RAFT_BENCH_SNAPSHOT_MIB) over the in-memory network, and the peak Go heap
// while it does. The persisters keep no snapshot data: a snapshot is
// generated as it is read and only checksummed as it is written, so the
// heap figure is the library's own (chunks in flight, buffers), not the
// storage's. Reported: MB/s of snapshot moved, seconds to catch up, peak
// heap in MiB above the heap before the transfer, and the snapshot size.
func BenchmarkSnapshotCatchUp(b *testing.B) {
	size := int64(envInt(b, "RAFT_BENCH_SNAPSHOT_MIB", 100)) << 20
	for range b.N {
		benchSnapshotCatchUp(b, size)
	}
}

func benchSnapshotCatchUp(b *testing.B, size int64) {
	b.StopTimer()
	net := rafttest.NewNetwork(1)
	defer net.Close()
	peers := []raft.NodeID{1, 2, 3}
	ps := map[raft.NodeID]*genPersister{}
	for _, id := range peers {
		ps[id] = &genPersister{MemoryPersister: raft.NewMemoryPersister()}
	}
	var (
		wg        sync.WaitGroup
		restored  atomic.Uint64
		restoredN atomic.Int64
	)
	start := func(id raft.NodeID) *raft.Node {
		n, err := raft.NewNode(raft.Config{
			ID: id, Peers: peers, Transport: net.Endpoint(id), Persister: ps[id],
			ElectionTimeout: time.Duration(1+int(id)*4) * 100 * time.Millisecond, HeartbeatInterval: 100 * time.Millisecond,
			Seed: uint64(id), TrailingEntries: 1,
		})
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() { // owner: this benchmark; exits when Stop closes ApplyCh
			defer wg.Done()
			for msg := range n.ApplyCh() {
				if msg.SnapshotValid {
					k, err := io.Copy(io.Discard, msg.Snapshot)
					msg.Snapshot.Close()
					if err != nil {
						b.Error(err)
					}
					restoredN.Store(k)
					restored.Store(msg.SnapshotIndex)
				}
			}
		}()
		return n
	}
	n1, n2 := start(1), start(2)
	defer func() { n1.Stop(); n2.Stop(); wg.Wait() }()
	leader := waitLeaderOf(b, n1, n2)
	ctx := context.Background()
	var idx uint64
	for i := range 20 {
		var err error
		if idx, _, err = leader.ProposeWait(ctx, fmt.Appendf(nil, "cmd%d", i)); err != nil {
			b.Fatal(err)
		}
	}
	err := leader.Snapshot(ctx, idx, func(w io.Writer) error {
		_, err := io.CopyN(w, &patternReader{}, size)
		return err
	})
	if err != nil {
		b.Fatal(err)
	}

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() { // owner: this benchmark; exits when stopSampling closes
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stopSampling:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()

	b.StartTimer()
	t0 := time.Now()
	n3 := start(3)
	defer n3.Stop()
	deadline := time.Now().Add(5 * time.Minute)
	for restored.Load() < idx || n3.Status().Commit < idx {
		if time.Now().After(deadline) {
			b.Fatalf("no catch-up within 5 minutes (restored %d, want %d)", restored.Load(), idx)
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(t0)
	b.StopTimer()
	close(stopSampling)
	<-sampled
	if restoredN.Load() != size {
		b.Fatalf("follower read %d bytes of snapshot, want %d", restoredN.Load(), size)
	}
	b.ReportMetric(float64(size)/elapsed.Seconds()/1e6, "MB/s")
	b.ReportMetric(elapsed.Seconds(), "s/catch-up")
	b.ReportMetric(float64(peak.Load()-min(base, peak.Load()))/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(size)/(1<<20), "snapshot-MiB")
}

// waitLeaderOf waits until one of nodes leads and returns it.
func waitLeaderOf(b *testing.B, nodes ...*raft.Node) *raft.Node {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range nodes {
			if _, ok := n.State(); ok {
				return n
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.Fatal("no leader")
	return nil
}

// genPersister is a MemoryPersister whose snapshots keep no data: a
// snapshot is checksummed as it is written and regenerated (patternReader)
// as it is read, after checking that what was written was that pattern.
type genPersister struct {
	*raft.MemoryPersister
	mu   sync.Mutex
	meta raft.SnapshotMeta
	size int64
}

func (p *genPersister) CreateSnapshot(meta raft.SnapshotMeta) (raft.SnapshotWriter, error) {
	return &genWriter{p: p, meta: meta}, nil
}

func (p *genPersister) OpenSnapshot() (raft.SnapshotMeta, io.ReadCloser, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.meta.Index == 0 {
		return raft.SnapshotMeta{}, nil, raft.ErrNoSnapshot
	}
	return p.meta, io.NopCloser(io.LimitReader(&patternReader{}, p.size)), nil
}

// Load reports the snapshot position too, so that a restart would see it.
func (p *genPersister) Load() (raft.PersistentState, error) {
	st, err := p.MemoryPersister.Load()
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil && p.meta.Index > 0 {
		// Only used before any snapshot in this benchmark.
		return st, fmt.Errorf("genPersister: Load after a snapshot is not supported")
	}
	return st, err
}

type genWriter struct {
	p    *genPersister
	meta raft.SnapshotMeta
	n    int64
	crc  uint32
	want uint32
}

func (w *genWriter) Write(b []byte) (int, error) {
	w.crc = crc32.Update(w.crc, crc32.IEEETable, b)
	var pat [4096]byte
	for off := 0; off < len(b); off += len(pat) {
		k := min(len(pat), len(b)-off)
		fillPattern(pat[:k], w.n+int64(off))
		w.want = crc32.Update(w.want, crc32.IEEETable, pat[:k])
	}
	w.n += int64(len(b))
	return len(b), nil
}

func (w *genWriter) Commit() error {
	if w.crc != w.want {
		return fmt.Errorf("genPersister: snapshot data is not the benchmark's pattern")
	}
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	if w.meta.Index <= w.p.meta.Index {
		return raft.ErrStaleSnapshot
	}
	w.p.meta, w.p.size = w.meta, w.n
	return nil
}

func (w *genWriter) Abort() error { return nil }

// patternReader yields fillPattern's bytes from offset 0 on, forever.
type patternReader struct{ off int64 }

func (r *patternReader) Read(b []byte) (int, error) {
	fillPattern(b, r.off)
	r.off += int64(len(b))
	return len(b), nil
}

// fillPattern fills b with the benchmark's snapshot bytes from offset off:
// byte(i*131) at offset i.
func fillPattern(b []byte, off int64) {
	for i := range b {
		b[i] = byte((off + int64(i)) * 131)
	}
}

// envInt returns the integer in environment variable name, or def if it
// is unset; it fails b if the value is not a positive integer.
func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}
