package raft_test

import (
	"context"
	"fmt"
	"slices"
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
	snapWait(t, "the node to lead", func() bool { _, ok := n.State(); return ok })
	return n
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
// the node goes on committing and builds the next batch meanwhile; batches
// are in log order, never empty, and carry every command exactly once.
// The test proposes in rounds and holds one batch in every round, whatever
// the scheduling.
func TestApplyBatches_BatchStableUntilNextReceive(t *testing.T) {
	n := startBatchNode(t)
	ctx := context.Background()
	const rounds, per = 30, 50
	next := 0
	propose := func() {
		for range per {
			_, _, err := n.Propose(ctx, fmt.Appendf(nil, "cmd-%d", next))
			require.NoError(t, err)
			next++
		}
	}
	propose()
	seen := map[string]bool{}
	var last uint64
	batches, held := 0, 0
	for len(seen) < next {
		batch := receiveBatch(t, n)
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
		if next < rounds*per {
			// Hold this batch while the next round commits.
			held++
			end := batch[len(batch)-1].CommandIndex
			propose()
			snapWait(t, "the next round to commit", func() bool { return n.Status().Commit >= end+per })
			require.Equal(t, kept, batch, "a held batch changed before the next receive")
		}
	}
	require.GreaterOrEqual(t, held, rounds-1)
	require.Less(t, batches, next, "commands never came more than one to a batch")
	t.Logf("%d commands in %d batches; %d held while the next round committed", next, batches, held)
}

// receiveBatch receives one batch from n, failing t after 10 seconds.
func receiveBatch(t *testing.T, n *raft.Node) []raft.ApplyMsg {
	t.Helper()
	select {
	case batch, ok := <-n.ApplyBatchCh():
		require.True(t, ok, "ApplyBatchCh closed")
		return batch
	case <-time.After(10 * time.Second):
		t.Fatal("no batch within 10 s")
		return nil
	}
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
	snapWait(t, "the command to commit", func() bool { return n.Status().Commit >= 2 }) // 1 is the leader's empty entry
	select {
	case err := <-done:
		t.Fatalf("ProposeWait returned (%v) before the batch was received", err)
	default:
	}
	require.Less(t, n.Status().Applied, uint64(2))

	batch := receiveBatch(t, n)
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
	snapWait(t, "the command to commit", func() bool { return n.Status().Commit >= 2 })
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
	restartFromSnapshot(t, batchOptions)
}

func TestApplyBatches_Figure8Unreliable(t *testing.T) {
	faultFigure8(t, batchOptions(rafttest.Options{}), 66, true, 10*time.Second)
}
