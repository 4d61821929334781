package raft

import (
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
)

// Regressions the simulator (internal/sim) found in the snapshot logic,
// each reduced to the core and a MemoryPersister.

// restartAndAppend loads p, starts a follower core on it, has the leader of
// term 2 append one entry after the snapshot, and carries out the first
// persist batch on p as the Node does.
func restartAndAppend(t *testing.T, p *MemoryPersister, snap SnapshotMeta) error {
	t.Helper()
	st, err := p.Load()
	require.NoError(t, err)
	require.Equal(t, snap, st.Snapshot)
	require.Empty(t, st.Entries, "the log does not lead to the snapshot: Load returns no entries")
	s := defaultTestSetup()
	c, err := newCore(2, ids(3), s.cfg, st, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	stepOK(t, c, Message{Type: MsgApp, From: 1, To: 2, Term: 2, Index: snap.Index, LogTerm: snap.Term,
		Entries: []Entry{{Index: snap.Index + 1, Term: 2, Data: []byte("x")}}, Commit: snap.Index})
	require.True(t, c.hasPersistWork())
	b := c.readyToPersist()
	require.Len(t, b.entries, 1)
	return (*Node)(nil).persist(p, b)
}

func commitSnapshot(t *testing.T, p *MemoryPersister, meta SnapshotMeta) {
	t.Helper()
	w, err := p.CreateSnapshot(meta)
	require.NoError(t, err)
	_, err = w.Write([]byte("state"))
	require.NoError(t, err)
	require.NoError(t, w.Commit())
}

// Simulator seed 116 (5 nodes, 10s; TestSimSeeds on branch simsnap): a
// leader committed index 106 on a majority of followers before its own
// write of 106 was durable, applied it, took a snapshot at 106 and crashed
// before the compaction record was synced. Its disk then held the snapshot
// at 106 and a log ending at 105. Load returns the snapshot and no entries,
// as the contract says, but the restarted core hands out batches that only
// append from 107, with neither TruncateFrom nor Compact: the Persister is
// asked to append 107 to a log that ends at 105, and MemoryPersister
// refuses (the Node would stop with a persist error). Either newRaftLog
// must have the first batch compact the Persister's log to the snapshot
// (and truncate after it) when Load returned no entries, or Load must
// leave the Persister's log replaced by the snapshot.
func TestSnapshotSimRegress_RestartWithLogEndingBeforeSnapshot(t *testing.T) {
	p := NewMemoryPersister()
	var ents []Entry
	for i := uint64(1); i <= 5; i++ {
		ents = append(ents, Entry{Index: i, Term: 1})
	}
	require.NoError(t, p.Append(ents))
	require.NoError(t, p.SetHardState(HardState{Term: 1, Commit: 5}))
	require.NoError(t, p.Sync())
	snap := SnapshotMeta{Index: 6, Term: 1}
	commitSnapshot(t, p, snap) // entry 6 itself never became durable here
	p.Crash()
	require.NoError(t, restartAndAppend(t, p, snap))
}

// The same with a log that runs past the snapshot on another term: a
// follower installed a leader's snapshot at 4 that its log (index 4 of
// term 1) did not match, and crashed before the batch truncating and
// compacting its log was synced.
func TestSnapshotSimRegress_RestartWithLogNotMatchingSnapshot(t *testing.T) {
	p := NewMemoryPersister()
	var ents []Entry
	for i := uint64(1); i <= 6; i++ {
		ents = append(ents, Entry{Index: i, Term: 1})
	}
	require.NoError(t, p.Append(ents))
	require.NoError(t, p.SetHardState(HardState{Term: 2, Commit: 2}))
	require.NoError(t, p.Sync())
	snap := SnapshotMeta{Index: 4, Term: 2}
	commitSnapshot(t, p, snap)
	p.Crash()
	require.NoError(t, restartAndAppend(t, p, snap))
}
