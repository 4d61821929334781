package raft_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
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
	restartFromSnapshot(t, func(o rafttest.Options) rafttest.Options { return o })
}

// restartFromSnapshot runs TestSnapshot_NodeRestartsFromSnapshot on a
// cluster whose options adjust returns.
func restartFromSnapshot(t *testing.T, adjust func(rafttest.Options) rafttest.Options) {
	var snaps snapCounter
	c := rafttest.NewCluster(t, 3, adjust(snapOptions(7, 1<<10, &snaps)))
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

// snapChunkFilter drops chosen snapshot messages and counts the chunks sent
// at each offset. Its methods are safe for concurrent use.
type snapChunkFilter struct {
	mu     sync.Mutex
	sent   map[uint64]int // MsgSnap sent, by offset
	dropIf func(m raft.Message, sentBefore int) bool
}

func (f *snapChunkFilter) drop(m raft.Message) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if m.Type != raft.MsgSnap {
		return false
	}
	if f.sent == nil {
		f.sent = map[uint64]int{}
	}
	before := f.sent[m.Offset]
	f.sent[m.Offset]++
	return f.dropIf != nil && f.dropIf(m, before)
}

func (f *snapChunkFilter) set(dropIf func(m raft.Message, sentBefore int) bool) {
	f.mu.Lock()
	f.dropIf = dropIf
	f.mu.Unlock()
}

// counts returns the chunks sent at offset, and in all.
func (f *snapChunkFilter) counts(offset uint64) (at, total int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range f.sent {
		total += n
	}
	return f.sent[offset], total
}

// snapLaggingFollower starts a 3-node snapshotting cluster whose snapshots
// span several chunks (4 KiB messages, 40 KiB of padding), and leaves one
// follower disconnected while the others commit and compact 100 commands.
func snapLaggingFollower(t *testing.T, snaps *snapCounter, f *snapChunkFilter) (c *rafttest.Cluster, leader, follower raft.NodeID) {
	t.Helper()
	c = rafttest.NewCluster(t, 3, snapOptions(10, 40<<10, snaps))
	c.Net.SetDropFilter(f.drop)
	leader = c.Leader()
	follower = c.IDs[0]
	if follower == leader {
		follower = c.IDs[1]
	}
	c.Disconnect(follower)
	for i := range 100 {
		c.One(fmt.Appendf(nil, "d%d", i), 2, true)
	}
	return c, leader, follower
}

// Pitfall 13 (whole-snapshot transfers restarted from scratch): a lost chunk
// is resent, and the transfer resumes from it rather than from the start.
func TestPitfall13_SnapshotResumesAfterLostChunk(t *testing.T) {
	var snaps snapCounter
	var f snapChunkFilter
	const lost = 3 * 4 << 10 // the fourth chunk
	f.set(func(m raft.Message, before int) bool { return m.Offset == lost && before == 0 })
	c, _, follower := snapLaggingFollower(t, &snaps, &f)
	c.Connect(follower)
	last := c.One([]byte("after"), 3, true)
	snapWait(t, "the follower to apply the last command", func() bool { return c.LastApplied(follower) >= last })
	require.GreaterOrEqual(t, snaps.count(follower), 1)
	atLost, total := f.counts(lost)
	require.Equal(t, 2, atLost, "the lost chunk was sent once more")
	atZero, _ := f.counts(0)
	require.Equal(t, 1, atZero, "the transfer resumed, it did not start over")
	t.Logf("%d chunks sent for a snapshot of about 11", total)
	require.NoError(t, c.Check())
}

// A follower that crashes in the middle of receiving a snapshot restarts
// with no partial snapshot; the leader starts the transfer over and the
// follower catches up.
func TestSnapshot_FollowerCrashDuringInstall(t *testing.T) {
	var snaps snapCounter
	var f snapChunkFilter
	const stall = 5 * 4 << 10
	f.set(func(m raft.Message, _ int) bool { return m.Offset >= stall }) // the transfer stalls there
	c, _, follower := snapLaggingFollower(t, &snaps, &f)
	c.Connect(follower)
	snapWait(t, "the transfer to reach the stall", func() bool { n, _ := f.counts(stall); return n > 0 })
	c.Crash(follower)
	f.set(nil)
	c.Restart(follower)
	last := c.One([]byte("after"), 3, true)
	snapWait(t, "the follower to apply the last command", func() bool { return c.LastApplied(follower) >= last })
	require.GreaterOrEqual(t, snaps.count(follower), 1)
	atZero, _ := f.counts(0)
	require.GreaterOrEqual(t, atZero, 2, "the transfer started over after the crash")
	require.NoError(t, c.Check())
}

// A leader that crashes in the middle of sending a snapshot leaves the
// follower with a partial one; the next leader sends its own, which
// replaces it.
func TestSnapshot_LeaderCrashDuringTransfer(t *testing.T) {
	var snaps snapCounter
	var f snapChunkFilter
	const stall = 5 * 4 << 10
	f.set(func(m raft.Message, _ int) bool { return m.Offset >= stall })
	c, leader, follower := snapLaggingFollower(t, &snaps, &f)
	c.Connect(follower)
	snapWait(t, "the transfer to reach the stall", func() bool { n, _ := f.counts(stall); return n > 0 })
	c.Crash(leader)
	f.set(nil)
	last := c.One([]byte("after"), 2, true)
	snapWait(t, "the follower to apply the last command", func() bool { return c.LastApplied(follower) >= last })
	require.GreaterOrEqual(t, snaps.count(follower), 1)
	c.Restart(leader)
	c.One([]byte("after-restart"), 3, true)
	require.NoError(t, c.Check())
}

// An application that never calls Snapshot still works; the node marks a
// command with SnapshotDue every SnapshotInterval entries, and warns once
// the log is a hundred intervals long.
func TestSnapshot_AppThatNeverSnapshotsIsWarned(t *testing.T) {
	logs := &recordingHandler{}
	var due []uint64
	var mu sync.Mutex
	c := rafttest.NewCluster(t, 1, rafttest.Options{
		Logger: slog.New(logs),
		Config: func(cfg *raft.Config) { cfg.SnapshotInterval = 2 },
		OnApply: func(_ raft.NodeID, msg raft.ApplyMsg) {
			if msg.SnapshotDue {
				mu.Lock()
				due = append(due, msg.CommandIndex)
				mu.Unlock()
			}
		},
	})
	for i := range 420 {
		c.One(fmt.Appendf(nil, "e%d", i), 1, false)
	}
	mu.Lock()
	require.NotEmpty(t, due)
	require.Equal(t, uint64(2), due[0], "SnapshotDue first at the first command two entries in")
	for i := 1; i < len(due); i++ {
		require.Equal(t, due[i-1]+2, due[i], "and again every interval while no snapshot is taken")
	}
	mu.Unlock()
	warnings := logs.count(slog.LevelWarn, "the log keeps growing")
	require.GreaterOrEqual(t, warnings, 1, "a warning past 200 entries")
	require.LessOrEqual(t, warnings, 2, "warnings back off (at 200, then at 400)")
	require.NoError(t, c.Check())
}

// recordingHandler is a slog.Handler that keeps every record's level and
// message.
type recordingHandler struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.recs = append(h.recs, r)
	h.mu.Unlock()
	return nil
}
func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler      { return h }

// count returns how many records at level have a message starting with msg.
func (h *recordingHandler) count(level slog.Level, msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.recs {
		if r.Level == level && strings.HasPrefix(r.Message, msg) {
			n++
		}
	}
	return n
}
