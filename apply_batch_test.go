package raft_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/rafttest"
)

// Config.ApplyBatches: committed commands arrive as slices on ApplyBatchCh,
// with the same guarantees as ApplyCh (order, exactly once, applied once
// received), and a received slice stays as it was until the next receive.

// startBatchNode starts a one-node cluster with ApplyBatches set and waits
// until it leads. Nothing receives from its ApplyBatchCh.
func startBatchNode(t *testing.T) *raft.Node {
	t.Helper()
	nw := rafttest.NewNetwork(1)
	t.Cleanup(nw.Close)
	n, err := raft.NewNode(raft.Config{
		ID: 1, Peers: []raft.NodeID{1},
		Transport:    nw.Endpoint(1),
		Persister:    raft.NewMemoryPersister(),
		ApplyBatches: true,
	})
	require.NoError(t, err)
	t.Cleanup(n.Stop)
	waitUntil(t, "the node to lead", func() bool { _, ok := n.State(); return ok })
	return n
}

// waitUntil polls cond every millisecond for up to 10 seconds.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestApplyBatches_OtherChannelIsClosed(t *testing.T) {
	n := startBatchNode(t)
	_, ok := <-n.ApplyCh()
	require.False(t, ok, "ApplyCh must be closed when ApplyBatches is set")

	nw := rafttest.NewNetwork(1)
	defer nw.Close()
	plain, err := raft.NewNode(raft.Config{ID: 1, Peers: []raft.NodeID{1}, Transport: nw.Endpoint(1), Persister: raft.NewMemoryPersister()})
	require.NoError(t, err)
	defer plain.Stop()
	_, ok = <-plain.ApplyBatchCh()
	require.False(t, ok, "ApplyBatchCh must be closed without ApplyBatches")
}

// A received batch must not change while the application holds it, though
// the node goes on committing; batches are in log order, never empty, and
// carry every command exactly once.
func TestApplyBatches_BatchStableUntilNextReceive(t *testing.T) {
	n := startBatchNode(t)
	ctx := context.Background()
	const total = 3000
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() { // owner: this test; exits after its share of proposals
			defer wg.Done()
			for i := g; i < total; i += 8 {
				_, _, err := n.Propose(ctx, fmt.Appendf(nil, "cmd-%d", i))
				if err != nil {
					t.Errorf("propose %d: %v", i, err)
					return
				}
			}
		}()
	}
	seen := map[string]bool{}
	var last uint64
	batches, held := 0, 0
	for len(seen) < total {
		batch := <-n.ApplyBatchCh()
		require.NotEmpty(t, batch)
		batches++
		kept := slices.Clone(batch)
		for _, m := range batch {
			require.True(t, m.CommandValid)
			require.Greater(t, m.CommandIndex, last, "batches out of order")
			last = m.CommandIndex
			require.False(t, seen[string(m.Command)], "command %q delivered twice", m.Command)
			seen[string(m.Command)] = true
		}
		// Hold every third batch while more commits: the node must build
		// the next batch elsewhere.
		if batches%3 == 0 && len(seen) < total-100 {
			held++
			end := batch[len(batch)-1].CommandIndex
			waitUntil(t, "more commits while a batch is held", func() bool { return n.Status().Commit > end+20 })
			require.Equal(t, kept, batch, "a held batch changed before the next receive")
		}
	}
	wg.Wait()
	require.Greater(t, held, 0)
	require.Less(t, batches, total, "commands never came more than one to a batch")
	t.Logf("%d commands in %d batches; %d batches held while the node committed more", total, batches, held)
}

// ProposeWait returns, and Status().Applied moves, only once the batch
// holding the command has been received.
func TestApplyBatches_AppliedOnlyOnceReceived(t *testing.T) {
	n := startBatchNode(t)
	done := make(chan error, 1)
	var index uint64
	go func() {
		idx, _, err := n.ProposeWait(context.Background(), []byte("x"))
		index = idx
		done <- err
	}()
	waitUntil(t, "the command to commit", func() bool { return n.Status().Commit >= 2 }) // 1 is the leader's empty entry
	select {
	case err := <-done:
		t.Fatalf("ProposeWait returned (%v) before the batch was received", err)
	default:
	}
	require.Less(t, n.Status().Applied, uint64(2))

	batch := <-n.ApplyBatchCh()
	require.Len(t, batch, 1)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("ProposeWait did not return after its batch was received")
	}
	require.Equal(t, batch[0].CommandIndex, index)
	require.GreaterOrEqual(t, n.Status().Applied, index)
}

// A node stopped before the application received a batch answers the
// batch's ProposeWait calls with ErrStopped: none of it was applied.
func TestApplyBatches_StopBeforeReceiveAnswersStopped(t *testing.T) {
	n := startBatchNode(t)
	done := make(chan error, 1)
	go func() {
		_, _, err := n.ProposeWait(context.Background(), []byte("x"))
		done <- err
	}()
	waitUntil(t, "the command to commit", func() bool { return n.Status().Commit >= 2 })
	n.Stop()
	select {
	case err := <-done:
		require.ErrorIs(t, err, raft.ErrStopped)
	case <-time.After(10 * time.Second):
		t.Fatal("ProposeWait did not return after Stop")
	}
	_, ok := <-n.ApplyBatchCh()
	require.False(t, ok, "ApplyBatchCh must be closed after Stop")
}

// The cluster scenarios with batches: the Cluster's checker sees every
// command of every batch, snapshots included (each alone in its batch).
func batchOptions(opts rafttest.Options) rafttest.Options {
	inner := opts.Config
	opts.Config = func(cfg *raft.Config) {
		if inner != nil {
			inner(cfg)
		}
		cfg.ApplyBatches = true
	}
	return opts
}

func TestApplyBatches_UnreliableSnapshotChurn(t *testing.T) {
	var snaps snapCounter
	faultChurn(t, batchOptions(snapOptions(5, 9<<10, &snaps)), 65, true)
	t.Logf("snapshots delivered: %s", snaps.String())
}

func TestApplyBatches_NodeRestartsFromSnapshot(t *testing.T) {
	var snaps snapCounter
	c := rafttest.NewCluster(t, 3, batchOptions(snapOptions(7, 1<<10, &snaps)))
	c.Leader()
	for i := range 40 {
		c.One(fmt.Appendf(nil, "c%d", i), 3, true)
	}
	for _, id := range c.IDs {
		before := snaps.count(id)
		c.Restart(id)
		snapWait(t, fmt.Sprintf("node %d to restore its snapshot", id), func() bool { return snaps.count(id) > before })
		c.Leader()
	}
	last := c.One([]byte("after"), 3, true)
	for _, id := range c.IDs {
		snapWait(t, "every node to apply the last command", func() bool { return c.LastApplied(id) >= last })
	}
	require.NoError(t, c.Check())
}

func TestApplyBatches_Figure8Unreliable(t *testing.T) {
	faultFigure8(t, batchOptions(rafttest.Options{}), 66, true, 10*time.Second)
}
