package raft_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
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
			for _, proposers := range []int{1, 16, 256} {
				name := fmt.Sprintf("nodes=%d/bytes=%d/proposers=%d", nodes, size, proposers)
				b.Run(name, func(b *testing.B) { benchPropose(b, nodes, size, proposers) })
			}
		}
	}
}

func benchPropose(b *testing.B, nodes, size, proposers int) {
	bc := newBenchCluster(b, nodes)
	defer bc.stop()
	leader := bc.waitLeader(b)

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
	b.StopTimer()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d proposals failed (leader change during the benchmark?)", f)
	}
	all := slices.Concat(lat...)
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "props/s")
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	}
}

// benchCluster is a lean cluster for benchmarks: no agreement checker in the
// apply path, which the scenario tests cover.
type benchCluster struct {
	net   *rafttest.Network
	nodes []*raft.Node
	wg    sync.WaitGroup
}

func newBenchCluster(b *testing.B, n int) *benchCluster {
	bc := &benchCluster{net: rafttest.NewNetwork(1)}
	var peers []raft.NodeID
	for i := 1; i <= n; i++ {
		peers = append(peers, raft.NodeID(i))
	}
	for _, id := range peers {
		node, err := raft.NewNode(raft.Config{
			ID: id, Peers: peers,
			Transport: bc.net.Endpoint(id), Persister: raft.NewMemoryPersister(),
			// Node 1 times out first, so it leads and the others stay put.
			ElectionTimeout:   time.Duration(1+int(id)*4) * 100 * time.Millisecond,
			HeartbeatInterval: 100 * time.Millisecond,
			Seed:              uint64(id),
		})
		if err != nil {
			b.Fatal(err)
		}
		bc.nodes = append(bc.nodes, node)
		bc.wg.Add(1)
		go func() { // owner: benchCluster; exits when Stop closes ApplyCh
			defer bc.wg.Done()
			for range node.ApplyCh() {
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

func (bc *benchCluster) stop() {
	for _, n := range bc.nodes {
		n.Stop()
	}
	bc.wg.Wait()
	bc.net.Close()
}
