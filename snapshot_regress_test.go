package raft_test

// Regression tests for bugs a review found in the first version of
// snapshots (d42c33e); each failed there.

import (
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/rafttest"
)

func snapTestNode(t *testing.T, p raft.Persister, net *rafttest.Network) *raft.Node {
	t.Helper()
	n, err := raft.NewNode(raft.Config{
		ID: 1, Peers: []raft.NodeID{1}, Transport: net.Endpoint(1), Persister: p,
		ElectionTimeout: 100 * time.Millisecond, HeartbeatInterval: 20 * time.Millisecond, Seed: 1,
	})
	require.NoError(t, err)
	return n
}

// startDrained starts a one-node cluster on p and records the commands it
// applies, by index, in got. stop stops the node and waits until ApplyCh
// is drained; read got only after it.
func startDrained(t *testing.T, p raft.Persister, net *rafttest.Network) (n *raft.Node, got map[uint64]string, stop func()) {
	t.Helper()
	n = snapTestNode(t, p, net)
	got = map[uint64]string{}
	done := make(chan struct{})
	go func() { // owner: the test; exits when stop stops the node
		defer close(done)
		for msg := range n.ApplyCh() {
			if msg.SnapshotValid {
				msg.Snapshot.Close()
			}
			if msg.CommandValid {
				got[msg.CommandIndex] = string(msg.Command)
			}
		}
	}()
	return n, got, func() { n.Stop(); <-done }
}

// proposeOnce proposes cmd with ProposeWait until the node leads and
// commits it, and returns its index.
func proposeOnce(t *testing.T, n *raft.Node, cmd string, msgAndArgs ...any) uint64 {
	t.Helper()
	var idx uint64
	require.Eventually(t, func() bool {
		var err error
		idx, _, err = n.ProposeWait(context.Background(), []byte(cmd))
		return err == nil
	}, 5*time.Second, 20*time.Millisecond, msgAndArgs...)
	return idx
}

// persisterAfterInstallCrash builds the Persister state a follower has when
// it stops (or crashes) after its snapshot receiver committed a leader's
// snapshot and before the run loop's persist batch (TruncateFrom+Compact)
// reached the disk: the snapshot is durable (Commit), the old log is not
// touched. Here the old log holds index 3 at term 1, and the snapshot is
// at 3 with term 2 (a new leader overwrote the uncommitted entry 3).
func persisterAfterInstallCrash(t *testing.T, snapIndex uint64) *raft.MemoryPersister {
	p := raft.NewMemoryPersister()
	require.NoError(t, p.Append([]raft.Entry{{Index: 1, Term: 1}, {Index: 2, Term: 1}, {Index: 3, Term: 1}}))
	require.NoError(t, p.SetHardState(raft.HardState{Term: 2, Commit: 2}))
	require.NoError(t, p.Sync())
	w, err := p.CreateSnapshot(raft.SnapshotMeta{Index: snapIndex, Term: 2})
	require.NoError(t, err)
	_, _ = w.Write([]byte("state"))
	require.NoError(t, w.Commit())
	return p
}

// A node restarted on a Persister whose log does not lead to its snapshot
// (entry 3 has another term) must not append after the stale entry: the
// next Load would drop what it acknowledged. It compacts and truncates the
// Persister's log first.
func TestSnapshot_RestartAfterUnreconciledInstallKeepsCommittedEntries(t *testing.T) {
	p := persisterAfterInstallCrash(t, 3)
	net := rafttest.NewNetwork(1)
	defer net.Close()

	n, got, stop := startDrained(t, p, net)
	idx := proposeOnce(t, n, "x")
	stop()
	require.Equal(t, "x", got[idx])

	n, _, stop = startDrained(t, p, net)
	defer stop()
	st := n.Status()
	require.GreaterOrEqual(t, st.LastIndex, idx, "committed entry %d (ProposeWait returned nil) must survive a restart; persister log vs snapshot disagree", idx)
}

// If the old log ends before the snapshot, the node's first Append must
// still fit the Persister's log (it compacts to the snapshot first).
func TestSnapshot_RestartAfterUnreconciledInstallAppends(t *testing.T) {
	p := persisterAfterInstallCrash(t, 10)
	net := rafttest.NewNetwork(1)
	defer net.Close()
	n, _, stop := startDrained(t, p, net)
	defer stop()
	idx := proposeOnce(t, n, "y", "the node must accept proposals after the snapshot")
	require.Equal(t, uint64(12), idx, "appended after the snapshot (10) and the new term's empty entry")
	require.NoError(t, n.Status().Err)
}

// End to end: a lagging follower's receiver commits the leader's snapshot,
// then the node crashes before the persist batch that truncates and
// compacts its log is synced. After the restart it must reconcile its
// Persister's log with the snapshot and catch up (it used to fail its
// first Append and stay out for good).
func TestSnapshot_FollowerCrashAfterSnapshotCommitBeforeLogSync(t *testing.T) {
	var snaps snapCounter
	opts := snapOptions(10, 40<<10, &snaps)
	fps := map[raft.NodeID]*rafttest.FaultyPersister{}
	opts.Persister = func(id raft.NodeID) raft.Persister {
		fps[id] = rafttest.NewFaultyPersister(t, raft.NewMemoryPersister())
		return fps[id]
	}
	c := rafttest.NewCluster(t, 3, opts)
	leader := c.Leader()
	follower := c.IDs[0]
	if follower == leader {
		follower = c.IDs[1]
	}
	c.Disconnect(follower)
	for i := range 100 {
		c.One([]byte{byte(i)}, 2, true)
	}
	fp := fps[follower]
	fp.Stall() // the follower's disk stops completing syncs
	c.Connect(follower)
	snapWait(t, "the follower's receiver to commit the snapshot", func() bool {
		m, r, err := fp.Inner().OpenSnapshot()
		if err == nil {
			r.Close()
		}
		return err == nil && m.Index > 0
	})
	fp.FailAlways(io.ErrUnexpectedEOF) // the machine dies: nothing more is synced
	fp.Resume()
	c.Crash(follower)
	fp.FailAlways(nil)
	c.Restart(follower)
	last := c.One([]byte("after"), 3, true)
	snapWait(t, "the follower to apply the last command", func() bool { return c.LastApplied(follower) >= last })
	require.NoError(t, c.Node(follower).Status().Err)
}

// readerCountingPersister counts snapshot readers opened and not closed.
type readerCountingPersister struct {
	*raft.MemoryPersister
	mu   sync.Mutex
	open int
}

type countedReader struct {
	io.Reader
	p    *readerCountingPersister
	once sync.Once
}

func (r *countedReader) Close() error {
	r.once.Do(func() { r.p.mu.Lock(); r.p.open--; r.p.mu.Unlock() })
	return nil
}

func (p *readerCountingPersister) OpenSnapshot() (raft.SnapshotMeta, io.ReadCloser, error) {
	m, r, err := p.MemoryPersister.OpenSnapshot()
	if err != nil {
		return m, r, err
	}
	p.mu.Lock()
	p.open++
	p.mu.Unlock()
	return m, &countedReader{Reader: r, p: p}, nil
}

// Stop right after NewNode on a node that starts from a snapshot: a reader
// the run loop has taken for the apply loop, but not yet handed over, must
// be closed too (on FilePersister each is an open file).
func TestSnapshot_StopClosesPendingRestoreReader(t *testing.T) {
	mp := raft.NewMemoryPersister()
	w, err := mp.CreateSnapshot(raft.SnapshotMeta{Index: 5, Term: 1})
	require.NoError(t, err)
	_, _ = w.Write([]byte("state"))
	require.NoError(t, w.Commit())
	require.NoError(t, mp.SetHardState(raft.HardState{Term: 1}))
	require.NoError(t, mp.Sync())
	p := &readerCountingPersister{MemoryPersister: mp}
	net := rafttest.NewNetwork(1)
	defer net.Close()
	leaks := 0
	for range 300 {
		n := snapTestNode(t, p, net)
		n.Stop()
		for range n.ApplyCh() {
		}
		p.mu.Lock()
		leaks += p.open
		p.open = 0
		p.mu.Unlock()
	}
	require.Zero(t, leaks, "snapshot readers left open after Stop")
}

// The README pattern (snapshot when SnapshotDue) must go on compacting after
// one failed Node.Snapshot: SnapshotDue recurs every interval until a
// snapshot is taken.
func TestSnapshot_SnapshotDueAgainAfterAFailure(t *testing.T) {
	net := rafttest.NewNetwork(1)
	defer net.Close()
	n, err := raft.NewNode(raft.Config{
		ID: 1, Peers: []raft.NodeID{1}, Transport: net.Endpoint(1), Persister: raft.NewMemoryPersister(),
		ElectionTimeout: 100 * time.Millisecond, HeartbeatInterval: 20 * time.Millisecond, Seed: 1,
		SnapshotInterval: 10, TrailingEntries: 1,
	})
	require.NoError(t, err)
	dues := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		failed := false
		for msg := range n.ApplyCh() {
			if msg.CommandValid && msg.SnapshotDue {
				dues++
				_ = n.Snapshot(context.Background(), msg.CommandIndex, func(w io.Writer) error {
					if !failed {
						failed = true
						return io.ErrShortWrite // a transient failure (disk full for a moment)
					}
					_, err := w.Write([]byte("s"))
					return err
				})
			}
		}
	}()
	require.Eventually(t, func() bool { _, l := n.State(); return l }, 5*time.Second, 10*time.Millisecond)
	for i := range 200 {
		_, _, err := n.ProposeWait(context.Background(), []byte{byte(i)})
		require.NoError(t, err)
	}
	st := n.Status()
	n.Stop()
	<-done
	require.Greater(t, st.Snapshot.Index, uint64(0), "200 commands with SnapshotInterval 10: the log was never compacted (SnapshotDue fired %d times)", dues)
}

// Status.Snapshot is the newest snapshot taken or installed, not the log's
// compaction point (which TrailingEntries keeps below it).
func TestSnapshot_StatusReportsNewestSnapshot(t *testing.T) {
	net := rafttest.NewNetwork(1)
	defer net.Close()
	n, _, stop := startDrained(t, raft.NewMemoryPersister(), net)
	defer stop()
	idx := proposeOnce(t, n, "x")
	require.NoError(t, n.Snapshot(context.Background(), idx, func(w io.Writer) error { _, err := w.Write([]byte("s")); return err }))
	require.Equal(t, idx, n.Status().Snapshot.Index, "Status().Snapshot after a successful Node.Snapshot(%d)", idx)
}
