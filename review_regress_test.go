package raft

// Regression tests from the review of the proposal queue, the segmented
// MemoryPersister and the chunked raftLog.

import (
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
