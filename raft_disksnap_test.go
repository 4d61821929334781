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
	"strings"
	"sync/atomic"
	"testing"
	"time"

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

// diskSnapSlowWrites slows down the writes of snapshot files on d's
// current file system, so that a test can crash a node while a transfer is
// under way. A power loss replaces the file system: call it again after.
func diskSnapSlowWrites(d *faultDisk) {
	d.FS().SetFault(func(op, path string) error {
		if op == "write" && strings.Contains(filepath.Base(path), "snap-") && strings.HasSuffix(path, ".tmp") {
			time.Sleep(30 * time.Millisecond) // holds that machine's file system: only that node waits
		}
		return nil
	})
}

// diskSnapWaitTmp waits until d's directory holds a snapshot file being
// received (a .tmp), and reports whether it saw one.
func diskSnapWaitTmp(d *faultDisk) bool {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		names, _ := d.FS().ReadDir(d.dir)
		for _, n := range names {
			if strings.HasPrefix(n, "snap-") && strings.HasSuffix(n, ".tmp") {
				return true
			}
		}
	}
	return false
}

// TestDiskSnap_CrashDuringTransfer crashes both sides of a snapshot
// transfer on faultfs, with a power loss each time: first the follower
// while it writes the snapshot it receives (what it had written must not
// count as a snapshot), then the leader while it streams one (the new
// leader sends its own). The follower must catch up all the same.
func TestDiskSnap_CrashDuringTransfer(t *testing.T) {
	seed := faultSeed(t, 11)
	disks := newFaultDisks(t, crashPowerLoss, false, seed)
	var snaps snapCounter
	opts := snapOptions(10, 200<<10, &snaps)
	opts.Persister = disks.options().Persister
	opts.Seed = seed
	c := rafttest.NewCluster(t, 3, opts)
	leader := c.Leader()
	follower := others(c.IDs, leader)[0]
	fd := disks.get(follower)

	// Receiver side.
	c.Disconnect(follower)
	for i := range 40 {
		c.One(fmt.Appendf(nil, "r%d", i), 2, true)
	}
	before := fd.durable(t).Snapshot
	diskSnapSlowWrites(fd)
	c.Connect(follower)
	require.True(t, diskSnapWaitTmp(fd), "the follower never started receiving a snapshot")
	c.Crash(follower)
	st := fd.durable(t)
	diskCheckState(t, follower, st)
	require.Equal(t, before, st.Snapshot, "a snapshot cut by the crash must not count")
	_, files := faultDiskFiles(fd.FS(), fd.dir)
	t.Logf("follower %d crashed while receiving; after the power loss its snapshot files are %v", follower, files)
	c.Restart(follower)
	last := c.One([]byte("after-receiver-crash"), 3, true)
	snapWait(t, "the follower to catch up", func() bool { return c.LastApplied(follower) >= last })
	require.Positive(t, snaps.count(follower), "the follower caught up by a snapshot")

	// Sender side.
	c.Disconnect(follower)
	leader = c.Leader()
	for i := range 40 {
		c.One(fmt.Appendf(nil, "s%d", i), 2, true)
	}
	diskSnapSlowWrites(fd)
	got := snaps.count(follower)
	c.Connect(follower)
	require.True(t, diskSnapWaitTmp(fd), "the follower never started receiving a snapshot")
	c.Crash(leader)
	t.Logf("leader %d crashed while sending", leader)
	last = c.One([]byte("after-sender-crash"), 2, true)
	snapWait(t, "the follower to catch up", func() bool { return c.LastApplied(follower) >= last })
	c.Restart(leader)
	last = c.One([]byte("all"), 3, true)
	for _, id := range c.IDs {
		snapWait(t, "every node to apply the last command", func() bool { return c.LastApplied(id) >= last })
	}
	require.Greater(t, snaps.count(follower), got, "the follower caught up by a snapshot again")
	require.NoError(t, c.Check())
}
