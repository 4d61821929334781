package raft_test

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/rafttest"
)

// BenchmarkPropose measures a 3-node in-memory cluster: each of P proposers
// calls ProposeWait on the leader in a loop (128-byte commands), so latency
// is commit-and-apply latency as a user sees it. It reports proposals/s,
// p50/p99 latency and, through -benchmem, allocations per proposal counted
// over the whole cluster (all three nodes run in this process).
func BenchmarkPropose(b *testing.B) {
	for _, nodes := range []int{3} {
		for _, size := range []int{128} {
			for _, proposers := range []int{1, 16, 256, 1024} {
				name := fmt.Sprintf("nodes=%d/bytes=%d/proposers=%d", nodes, size, proposers)
				b.Run(name, func(b *testing.B) { benchPropose(b, nodes, size, proposers, false) })
			}
		}
	}
}

// BenchmarkProposeBatches is BenchmarkPropose with Config.ApplyBatches:
// each node's application takes its commands in batches, from
// ApplyBatchCh, instead of one at a time.
func BenchmarkProposeBatches(b *testing.B) {
	for _, proposers := range []int{1, 16, 256, 1024} {
		name := fmt.Sprintf("nodes=3/bytes=128/proposers=%d", proposers)
		b.Run(name, func(b *testing.B) { benchPropose(b, 3, 128, proposers, true) })
	}
}

func benchPropose(b *testing.B, nodes, size, proposers int, batches bool) {
	bc := newBenchCluster(b, nodes, memoryPersister, batches)
	defer bc.stop()
	leader := bc.waitLeader(b)
	reportLatency(b, runProposers(b, leader, size, proposers))
}

// runProposers has proposers goroutines call ProposeWait on leader with
// size-byte commands until b.N proposals are taken, timing only that. It
// fails b if any proposal fails, and returns every latency, sorted, and the
// elapsed time.
func runProposers(b *testing.B, leader *raft.Node, size, proposers int) proposeRun {
	cmd := make([]byte, size)
	lat := make([][]time.Duration, proposers)
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	// One context for the whole run: a per-call WithTimeout would add its
	// own allocations to the library's.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0, cpuOK := processCPU()
	start := time.Now()
	for p := range proposers {
		wg.Add(1)
		go func() { // owner: this benchmark; exits when b.N proposals are taken
			defer wg.Done()
			l := make([]time.Duration, 0, b.N/proposers+1)
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				_, _, err := leader.ProposeWait(ctx, cmd)
				if err != nil {
					failed.Add(1)
					continue
				}
				l = append(l, time.Since(t0))
			}
			lat[p] = l
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu1, _ := processCPU()
	b.StopTimer()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d proposals failed (leader change during the benchmark?)", f)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	r := proposeRun{n: b.N, elapsed: elapsed, lat: all}
	if cpuOK {
		r.cpu = cpu1 - cpu0
	}
	return r
}

// proposeRun is the outcome of runProposers: n proposals in elapsed, and
// each one's latency in increasing order.
type proposeRun struct {
	n       int
	elapsed time.Duration
	lat     []time.Duration
	cpu     time.Duration // CPU time the whole process used meanwhile; 0 if unknown
}

// p50 returns the median latency, or 0 if there is none.
func (r proposeRun) p50() time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	return r.lat[len(r.lat)/2]
}

// reportLatency reports proposals/s, the p50 and p99 latency, and cpu%: the
// CPU time the process used over the time the GOMAXPROCS processors offered
// (100 means every processor was busy all along, so the run was limited by
// CPU; well below it, by something else: the disk, or latency).
func reportLatency(b *testing.B, r proposeRun) {
	b.ReportMetric(float64(r.n)/r.elapsed.Seconds(), "props/s")
	if r.cpu > 0 {
		b.ReportMetric(100*r.cpu.Seconds()/(r.elapsed.Seconds()*float64(runtime.GOMAXPROCS(0))), "cpu%")
	}
	if len(r.lat) > 0 {
		b.ReportMetric(float64(r.lat[len(r.lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(r.lat[len(r.lat)*99/100].Microseconds()), "p99-µs")
	}
}

// benchCluster is a lean cluster for benchmarks: no agreement checker in the
// apply path, which the scenario tests cover.
type benchCluster struct {
	b          *testing.B
	net        *rafttest.Network
	nodes      []*raft.Node
	persisters []raft.Persister
	wg         sync.WaitGroup
}

// memoryPersister is the persister factory of the in-memory benchmarks.
func memoryPersister(raft.NodeID) raft.Persister { return raft.NewMemoryPersister() }

// newBenchCluster starts n nodes, each with the Persister that persister
// returns for its ID, and their applications: goroutines that drain
// ApplyCh, or ApplyBatchCh if batches. stop closes the persisters that are
// io.Closers.
func newBenchCluster(b *testing.B, n int, persister func(raft.NodeID) raft.Persister, batches bool) *benchCluster {
	bc := &benchCluster{b: b, net: rafttest.NewNetwork(1)}
	var peers []raft.NodeID
	for i := 1; i <= n; i++ {
		peers = append(peers, raft.NodeID(i))
	}
	for _, id := range peers {
		p := persister(id)
		bc.persisters = append(bc.persisters, p)
		node, err := raft.NewNode(raft.Config{
			ID: id, Peers: peers,
			Transport: bc.net.Endpoint(id), Persister: p,
			// Node 1 times out first, so it leads and the others stay put.
			ElectionTimeout:   time.Duration(1+int(id)*4) * 100 * time.Millisecond,
			HeartbeatInterval: 100 * time.Millisecond,
			Seed:              uint64(id),
			ApplyBatches:      batches,
		})
		if err != nil {
			bc.stop()
			b.Fatal(err)
		}
		bc.nodes = append(bc.nodes, node)
		bc.wg.Add(1)
		go func() { // owner: benchCluster; exits when Stop closes the apply channel
			defer bc.wg.Done()
			for range node.ApplyCh() { // closed from the start with batches
			}
			for range node.ApplyBatchCh() { // closed from the start without
			}
		}()
	}
	return bc
}

func (bc *benchCluster) waitLeader(b *testing.B) *raft.Node {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range bc.nodes {
			if _, ok := n.State(); ok {
				// Let the no-op commit so the first proposals do not wait for it.
				if _, _, err := n.ProposeWait(context.Background(), []byte("warmup")); err == nil {
					return n
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.Fatal("no leader")
	return nil
}

// stop stops the nodes, then closes their persisters.
func (bc *benchCluster) stop() {
	for _, n := range bc.nodes {
		n.Stop()
	}
	bc.wg.Wait()
	bc.net.Close()
	for _, p := range bc.persisters {
		if c, ok := p.(io.Closer); ok {
			if err := c.Close(); err != nil {
				bc.b.Error(err)
			}
		}
	}
}
