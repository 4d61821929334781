package raft_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/rafttest"
)

// Cluster scenarios with snapshots and log compaction (issue 6), on the
// in-memory network with MemoryPersisters. Each node's application takes a
// snapshot every few commands (rafttest.Options.SnapshotEvery); snapshots
// are padded to several chunks, so transfers stream, lose and resume
// chunks; the cluster checker verifies every restored snapshot against the
// state every node had at its index.

// snapOptions returns Options for a snapshotting cluster: a snapshot every
// every commands, padded to padding bytes, with few trailing entries and
// small messages so that chunking and compaction happen early. snaps counts
// the snapshots each node received on ApplyCh.
func snapOptions(every, padding int, snaps *snapCounter) rafttest.Options {
	return rafttest.Options{
		SnapshotEvery:   every,
		SnapshotPadding: padding,
		Config: func(cfg *raft.Config) {
			cfg.TrailingEntries = 5
			cfg.MaxMsgBytes = 4 << 10
		},
		OnApply: snaps.onApply,
	}
}

// snapCounter counts the snapshots each node received on ApplyCh.
type snapCounter struct {
	mu sync.Mutex
	n  map[raft.NodeID]int
}

func (s *snapCounter) onApply(id raft.NodeID, msg raft.ApplyMsg) {
	if !msg.SnapshotValid {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == nil {
		s.n = map[raft.NodeID]int{}
	}
	s.n[id]++
}

// String lists the counts by node.
func (s *snapCounter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprint(s.n)
}

func (s *snapCounter) count(id raft.NodeID) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n[id]
}

// snapWait polls cond until it holds, failing after a generous deadline.
func snapWait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// snapLogBound is how many entries past its compaction point a node may
// hold in these tests: the snapshot interval, the trailing entries, and
// the commands in flight.
const snapLogBound = 10 + 5 + 20

func TestSnapshot_DisconnectedFollowerCatchesUpBySnapshot(t *testing.T) {
	testSnapshotDisconnectedFollower(t, nil)
}

// testSnapshotDisconnectedFollower is the scenario of
// TestSnapshot_DisconnectedFollowerCatchesUpBySnapshot, with persister (if
// set) as the Options' Persister. It returns the cluster (stopped at the
// test's end), its leader and the follower.
func testSnapshotDisconnectedFollower(t *testing.T, persister func(raft.NodeID) raft.Persister) (c *rafttest.Cluster, leader, follower raft.NodeID) {
	var snaps snapCounter
	opts := snapOptions(10, 20<<10, &snaps)
	opts.Persister = persister
	c = rafttest.NewCluster(t, 3, opts)
	leader = c.Leader()
	follower = c.IDs[0]
	if follower == leader {
		follower = c.IDs[1]
	}
	c.Disconnect(follower)
	for i := range 100 {
		c.One(fmt.Appendf(nil, "a%d", i), 2, true)
	}
	st := c.Node(leader).Status()
	require.Greater(t, st.Snapshot.Index, uint64(50), "the leader compacted its log")
	require.LessOrEqual(t, st.LastIndex-st.Snapshot.Index, uint64(snapLogBound))

	c.Connect(follower)
	last := c.One([]byte("after"), 3, true)
	require.GreaterOrEqual(t, snaps.count(follower), 1, "the follower must catch up by a snapshot")
	snapWait(t, "the follower to apply the last command", func() bool { return c.LastApplied(follower) >= last })
	require.NoError(t, c.Check())
	return c, leader, follower
}

// A node that has been down since the cluster started (its log is empty,
// as a new node's would be) catches up by a snapshot.
func TestSnapshot_EmptyNodeCatchesUpBySnapshot(t *testing.T) {
	var snaps snapCounter
	c := rafttest.NewCluster(t, 3, snapOptions(10, 50<<10, &snaps))
	leader := c.Leader()
	fresh := c.IDs[0]
	if fresh == leader {
		fresh = c.IDs[1]
	}
	c.Crash(fresh)
	for i := range 60 {
		c.One(fmt.Appendf(nil, "b%d", i), 2, true)
	}
	c.Restart(fresh)
	last := c.One([]byte("after"), 3, true)
	require.GreaterOrEqual(t, snaps.count(fresh), 1)
	st := c.Node(fresh).Status()
	require.Greater(t, st.Snapshot.Index, uint64(0), "the node starts from a snapshot")
	require.GreaterOrEqual(t, st.Commit, last)
	require.NoError(t, c.Check())
}

// A restarted node loads its snapshot and the log after it: the application
// first receives the snapshot, then the commands after it.
func TestSnapshot_NodeRestartsFromSnapshot(t *testing.T) {
	var snaps snapCounter
	c := rafttest.NewCluster(t, 3, snapOptions(7, 1<<10, &snaps))
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

// Snapshots streamed over a network that drops, duplicates and reorders
// messages, while nodes crash and restart: the churn scenario of
// raft_faults_test.go with snapshots on.
func TestSnapshot_UnreliableChurn(t *testing.T) {
	var snaps snapCounter
	faultChurn(t, snapOptions(5, 9<<10, &snaps), 61, true)
	t.Logf("snapshots delivered: %s", snaps.String())
}

func TestSnapshot_ReliableChurn(t *testing.T) {
	var snaps snapCounter
	faultChurn(t, snapOptions(5, 9<<10, &snaps), 62, false)
	t.Logf("snapshots delivered: %s", snaps.String())
}

func TestSnapshot_Figure8Unreliable(t *testing.T) {
	var snaps snapCounter
	faultFigure8(t, snapOptions(3, 5<<10, &snaps), 63, true, 10*time.Second)
	t.Logf("snapshots delivered: %s", snaps.String())
}
