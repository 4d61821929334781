package raft

// Regression tests from the review of the proposal queue, the segmented
// MemoryPersister and the chunked raftLog.

import (
	"errors"
	"runtime"
	"testing"
	"weak"

	"github.com/stretchr/testify/require"
)

// TestReviewMemoryPersisterCompactFreesCommands: once a Compact has been
// synced, MemoryPersister must not keep the compacted entries' commands
// alive. It keeps the slices Append was given, so an entry that survives
// the compaction must not pin the array the compacted ones share with it
// (in a Node that array is one of the raftLog's 4096-entry chunks, which
// raftLog.compact copies precisely so that those commands can be freed).
func TestReviewMemoryPersisterCompactFreesCommands(t *testing.T) {
	p := NewMemoryPersister()
	var dead []weak.Pointer[byte]
	func() {
		ents := make([]Entry, 10)
		for i := range ents {
			ents[i] = Entry{Index: uint64(i + 1), Term: 1, Data: make([]byte, 4<<10)}
		}
		for i := range 5 {
			dead = append(dead, weak.Make(&ents[i].Data[0]))
		}
		require.NoError(t, p.Append(ents))
		require.NoError(t, p.Sync())
	}()
	require.NoError(t, p.Compact(5))
	require.NoError(t, p.Sync())
	runtime.GC()
	runtime.GC()
	for i, w := range dead {
		require.Nil(t, w.Value(), "the command of compacted entry %d is still reachable", i+1)
	}
	// The entries after the compaction point are intact.
	require.Equal(t, uint64(10), p.current.last())
	got := p.current.entries(6)
	require.Len(t, got, 5)
	for i, e := range got {
		require.Equal(t, uint64(6+i), e.Index)
		require.Len(t, e.Data, 4<<10)
	}
}

// TestReviewFailAnswersSnapshotWaiters: after a persist failure the node
// delivers nothing more, so fail must answer the ProposeWait calls waiting
// for a snapshot as well as those waiting for entries; before, the former
// waited until Stop.
func TestReviewFailAnswersSnapshotWaiters(t *testing.T) {
	n := &Node{
		cfg:     Config{ID: 1},
		changec: make(chan struct{}),
		waiters: map[uint64]*proposal{},
	}
	entry := &proposal{index: 7, term: 2, wait: true, done: make(chan proposalResult, 2)}
	snap := &proposal{index: 5, term: 2, wait: true, done: make(chan proposalResult, 2)}
	n.waiters[entry.index] = entry
	n.restoreWaiters = []*proposal{snap}
	failure := errors.New("disk on fire")

	n.fail(failure)

	for _, p := range []*proposal{entry, snap} {
		select {
		case r := <-p.done:
			require.ErrorIs(t, r.err, failure, "proposal at index %d", p.index)
			require.True(t, r.final, "proposal at index %d", p.index)
		default:
			t.Fatalf("proposal at index %d not answered by fail", p.index)
		}
	}
	require.Empty(t, n.waiters)
	require.Empty(t, n.restoreWaiters)
}
