package raft_test

// Snapshots and log compaction on FilePersisters (issue 6): the snapshot
// scenarios of raft_snapshot_test.go on real files, a restart from a
// snapshot plus the log after it, and power-loss churn with snapshots on
// faultfs. Each test logs what the directories hold at the end: the
// snapshot files and how many WAL segments compaction deleted.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/internal/faultfs"
	"github.com/raftkit/raft/rafttest"
)

// diskSnapFiles returns the segment files (in log order) and the snapshot
// files in dir on the operating system's file system.
func diskSnapFiles(t *testing.T, dir string) (segs, snaps []string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range ents {
		switch filepath.Ext(e.Name()) {
		case ".wal":
			segs = append(segs, e.Name())
		case ".snap":
			snaps = append(snaps, e.Name())
		}
	}
	slices.Sort(segs)
	return segs, snaps
}

// diskSnapMaxSegments bounds the segments a node's directory holds in
// these tests: the log after the compaction point (snapLogBound entries
// and their hard-state records, in 1 KiB segments), plus the segment that
// straddles the compaction point and the active one.
const diskSnapMaxSegments = 16

// TestDiskSnap_DisconnectedFollowerCatchesUpBySnapshot runs
// TestSnapshot_DisconnectedFollowerCatchesUpBySnapshot on real files: the
// leader compacts its log and deletes its segments, and streams its newest
// snapshot file to the follower, which installs it in its own directory.
func TestDiskSnap_DisconnectedFollowerCatchesUpBySnapshot(t *testing.T) {
	disks := newFaultDisks(t, crashKill, true, 1)
	c, leader, follower := testSnapshotDisconnectedFollower(t, disks.options().Persister)
	for _, id := range []raft.NodeID{leader, follower} {
		segs, snaps := diskSnapFiles(t, disks.get(id).dir)
		deleted := diskSegmentsDeleted(segs)
		t.Logf("node %d: %d segments deleted, %d left; snapshot files %v; status %+v", id, deleted, len(segs), snaps, c.Node(id).Status().Snapshot)
		require.Len(t, snaps, 1, "node %d keeps only its newest snapshot file", id)
		require.LessOrEqual(t, len(segs), diskSnapMaxSegments, "node %d: the WAL stays bounded", id)
		if id == leader {
			require.Positive(t, deleted, "the leader's compaction deleted segments")
		}
	}
}

// TestDiskSnap_RestartFromSnapshotPlusSuffix restarts every node of a
// snapshotting cluster from its directory (kill -9): each loads its newest
// snapshot file and the log after it, delivers the snapshot to its
// application, then the commands after it.
func TestDiskSnap_RestartFromSnapshotPlusSuffix(t *testing.T) {
	disks := newFaultDisks(t, crashKill, true, 2)
	var snaps snapCounter
	opts := snapOptions(7, 1<<10, &snaps)
	opts.Persister = disks.options().Persister
	c := rafttest.NewCluster(t, 3, opts)
	c.Leader()
	for i := range 40 {
		c.One(fmt.Appendf(nil, "c%d", i), 3, true)
	}
	suffixes := 0
	for _, id := range c.IDs {
		before := snaps.count(id)
		c.Crash(id)
		st := disks.get(id).durable(t)
		diskCheckState(t, id, st)
		require.Positive(t, st.Snapshot.Index, "node %d restarts from a snapshot", id)
		if len(st.Entries) > 0 {
			suffixes++
		}
		t.Logf("node %d restarts from snapshot %d/%d and %d entries after it", id, st.Snapshot.Index, st.Snapshot.Term, len(st.Entries))
		c.Restart(id)
		snapWait(t, fmt.Sprintf("node %d to restore its snapshot", id), func() bool { return snaps.count(id) > before })
		c.Leader()
		c.One(fmt.Appendf(nil, "after-%d", id), 3, true) // a suffix for the next node
	}
	require.Positive(t, suffixes, "no node restarted with entries after its snapshot")
	last := c.One([]byte("after"), 3, true)
	for _, id := range c.IDs {
		snapWait(t, "every node to apply the last command", func() bool { return c.LastApplied(id) >= last })
		segs, files := diskSnapFiles(t, disks.get(id).dir)
		require.Len(t, files, 1)
		require.LessOrEqual(t, len(segs), diskSnapMaxSegments)
	}
	require.NoError(t, c.Check())
}

// TestDiskSnap_PowerLossChurn is TestDisk_PowerLossChurn with snapshots
// every few commands and snapshots streamed in several chunks: power
// losses strike in the middle of snapshot writes, commits, installs and
// compactions, and every acknowledged command must survive.
func TestDiskSnap_PowerLossChurn(t *testing.T) {
	var (
		snaps      snapCounter
		snapFailed atomic.Int64
	)
	diskPowerLossChurn(t, 9, func(o *rafttest.Options) {
		so := snapOptions(5, 9<<10, &snaps)
		o.SnapshotEvery, o.SnapshotPadding, o.Config, o.OnApply = so.SnapshotEvery, so.SnapshotPadding, so.Config, so.OnApply
		// A snapshot fails when the machine dies under it, or after.
		o.SnapshotErrorOK = func(id raft.NodeID, err error) bool {
			if errors.Is(err, faultfs.ErrCrashed) || errors.Is(err, raft.ErrPersist) {
				snapFailed.Add(1)
				return true
			}
			return false
		}
	})
	t.Logf("%d snapshots failed because the machine died under them", snapFailed.Load())
	t.Logf("snapshots delivered on ApplyCh: %s", snaps.String())
}
