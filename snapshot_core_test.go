package raft

import (
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
)

// Unit tests of the core's snapshot logic (snapshot_core.go, raftLog.compact
// and restore), driven without goroutines.

// applyAll hands every committed entry of c out for applying, as the
// runtime's apply loop would, so that compaction may cover them.
func applyAll(c *core) {
	for c.hasApply() {
		if _, ok := c.takeRestored(); ok {
			continue
		}
		c.nextApply(1 << 30)
	}
}

// proposeN has the leader propose n entries and stabilizes the network.
func proposeN(net *testNet, lead NodeID, n int) {
	net.t.Helper()
	for i := range n {
		net.propose(lead, []byte{byte(i)})
	}
	net.stabilize()
}

func TestSnapshot_CompactDropsAppliedPrefix(t *testing.T) {
	net := newTestNet(t, 3)
	net.elect(1)
	proposeN(net, 1, 20)
	c := net.nodes[1]
	last := c.raftLog.lastIndex()
	require.Equal(t, last, c.raftLog.committed)

	c.compact(5) // nothing applied yet: a snapshot cannot cover it
	require.Zero(t, c.raftLog.offset)

	applyAll(c)
	term5, _ := c.raftLog.term(5)
	c.compact(5)
	require.Equal(t, uint64(5), c.raftLog.offset)
	require.Equal(t, SnapshotMeta{Index: 5, Term: term5}, c.raftLog.snapshot())
	require.Equal(t, last, c.raftLog.lastIndex(), "compaction keeps every later entry")
	for i := c.raftLog.first; i <= 5; i++ {
		require.Nil(t, c.raftLog.chunks[0][i-c.raftLog.first].Data, "compacted entry %d keeps its command", i)
	}
	_, ok := c.raftLog.term(4)
	require.False(t, ok, "entries below the offset are gone")
	require.NoError(t, c.checkInvariants())

	b := c.readyToPersist()
	require.Equal(t, uint64(5), b.compactTo, "the persister compacts too")
	c.persisted(b.num)

	c.compact(3) // compaction never moves back
	require.Equal(t, uint64(5), c.raftLog.offset)
	c.compact(last + 1) // nor past what was applied
	require.Equal(t, uint64(5), c.raftLog.offset)
}

// A follower that missed entries the leader has compacted catches up by a
// snapshot, then by the log (paper §7), and a stale copy of the same
// snapshot changes nothing afterwards.
func TestSnapshot_LaggingFollowerCatchesUpBySnapshot(t *testing.T) {
	net := newTestNet(t, 3)
	net.elect(1)
	net.isolated[3] = true
	proposeN(net, 1, 20)
	lead := net.nodes[1]
	applyAll(lead)
	compactTo := lead.raftLog.committed - 5
	lead.compact(compactTo)
	snap := lead.raftLog.snapshot()

	net.isolated[3] = false
	// Heartbeats find the follower behind (after the leader gives up on
	// the window it filled while 3 was away, and probes).
	for i := 0; i < 3*testElectionTicks && net.nodes[3].raftLog.committed < lead.raftLog.committed; i++ {
		net.tick(1)
	}
	f := net.nodes[3]
	require.Equal(t, lead.raftLog.committed, f.raftLog.committed)
	require.Equal(t, snap.Index, f.raftLog.offset, "the follower starts from the snapshot")
	require.Equal(t, logTerms(lead), logTerms(f))
	restored, ok := f.takeRestored()
	require.True(t, ok, "the application must receive the snapshot")
	require.Equal(t, snap, restored)
	require.Equal(t, stateReplicate, lead.prs[3].state)
	require.Len(t, net.deliveredMatching(MsgSnap, 1, false), 1, "one snapshot was enough")

	// The same snapshot again, delayed: it covers less than the follower
	// has committed and is answered with the commit index.
	require.False(t, f.installSnapshot(snap, 1))
	stepOK(t, f, Message{Type: MsgSnap, From: 1, To: 3, Term: lead.term, Index: snap.Index, LogTerm: snap.Term, Done: true})
	require.Empty(t, f.takeSnapshotChunks())
	resp := filterMsgs(drain(t, f), MsgAppResp, 1)
	require.Len(t, resp, 1)
	require.Equal(t, f.raftLog.committed, resp[0].Index)
}

// Paper §7, receiver step 6: when the log holds the snapshot's last entry
// with its term, the entries after it stay, and the acknowledgement names
// the snapshot's index, not the last one held.
func TestSnapshot_InstallKeepsMatchingSuffix(t *testing.T) {
	c := newTestCore(t, 2, ids(3), withLog(1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1), withTerm(2))
	stepOK(t, c, Message{Type: MsgHeartbeat, From: 1, To: 2, Term: 2})
	drain(t, c)
	require.True(t, c.installSnapshot(SnapshotMeta{Index: 8, Term: 1}, 1))
	require.Equal(t, uint64(8), c.raftLog.offset)
	require.Equal(t, uint64(12), c.raftLog.lastIndex(), "the matching suffix stays")
	require.Equal(t, uint64(8), c.raftLog.committed)
	b := c.readyToPersist()
	require.Zero(t, b.truncateFrom)
	require.Equal(t, uint64(8), b.compactTo)
	resp := filterMsgs(b.afterDurable, MsgAppResp, 1)
	require.Len(t, resp, 1, "acknowledged only once the batch is durable")
	require.Equal(t, uint64(8), resp[0].Index)
	require.NoError(t, c.checkInvariants())
}

// Paper §7, receiver step 7: a log that does not hold the snapshot's last
// entry with its term is discarded whole, on disk too.
func TestSnapshot_InstallDiscardsConflictingLog(t *testing.T) {
	c := newTestCore(t, 2, ids(3), withLog(1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1), withTerm(3))
	stepOK(t, c, Message{Type: MsgHeartbeat, From: 1, To: 2, Term: 3})
	drain(t, c)
	require.True(t, c.installSnapshot(SnapshotMeta{Index: 10, Term: 3}, 1))
	require.Equal(t, uint64(10), c.raftLog.lastIndex())
	require.Equal(t, uint64(10), c.raftLog.offset)
	require.Equal(t, uint64(3), c.raftLog.lastTerm())
	b := c.readyToPersist()
	require.Equal(t, uint64(1), b.truncateFrom, "the persisted log goes")
	require.Equal(t, uint64(10), b.compactTo)
	require.True(t, b.mustSync)
	require.NoError(t, c.checkInvariants())
}

// A follower whose log runs past the snapshot but not matching it, with
// more of it committed than the snapshot covers, keeps everything.
func TestSnapshot_NeverRollsBack(t *testing.T) {
	c := newTestCore(t, 2, ids(3), withLog(1, 1, 1, 1, 1, 1, 1, 1, 1, 1), withHardState(HardState{Term: 2, Commit: 9}))
	require.Equal(t, uint64(9), c.raftLog.committed)
	require.False(t, c.installSnapshot(SnapshotMeta{Index: 9, Term: 1}, 1))
	require.False(t, c.installSnapshot(SnapshotMeta{Index: 4, Term: 1}, 1))
	require.Zero(t, c.raftLog.offset)
	require.Equal(t, uint64(10), c.raftLog.lastIndex())
	_, ok := c.takeRestored()
	require.False(t, ok)

	// A leader never installs one.
	net := newTestNet(t, 3)
	net.elect(1)
	proposeN(net, 1, 3)
	require.False(t, net.nodes[1].installSnapshot(SnapshotMeta{Index: 50, Term: 1}, 2))
}

// A restarted node loads its snapshot's position and the entries after it,
// and counts the snapshot as committed and applied.
func TestSnapshot_RestartFromSnapshotAndSuffix(t *testing.T) {
	s := defaultTestSetup()
	s.st = PersistentState{
		HardState: HardState{Term: 3, Commit: 4},
		Snapshot:  SnapshotMeta{Index: 10, Term: 2},
		Entries:   []Entry{{Index: 11, Term: 2}, {Index: 12, Term: 3}},
	}
	c, err := newCore(1, ids(3), s.cfg, s.st, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.Equal(t, uint64(10), c.raftLog.offset)
	require.Equal(t, uint64(10), c.raftLog.committed, "a snapshot holds only committed entries")
	require.Equal(t, uint64(10), c.raftLog.applied)
	require.Equal(t, uint64(12), c.raftLog.lastIndex())
	require.NoError(t, c.checkInvariants())

	s.st.Entries = []Entry{{Index: 12, Term: 3}}
	_, err = newCore(1, ids(3), s.cfg, s.st, slog.New(slog.DiscardHandler))
	require.ErrorIs(t, err, ErrCorrupt, "a gap after the snapshot")
	s.st.Entries = []Entry{{Index: 11, Term: 1}}
	_, err = newCore(1, ids(3), s.cfg, s.st, slog.New(slog.DiscardHandler))
	require.ErrorIs(t, err, ErrCorrupt, "a term below the snapshot's")
}

// Pitfall 7 (etcd-io/etcd#2918): a leader probing a follower can be sent
// back, by a rejection hint, to entries it has already compacted. It must
// switch that follower to a snapshot, not fail.
func TestPitfall07_ProbeIntoCompactedPrefixSendsSnapshot(t *testing.T) {
	net := newTestNet(t, 3)
	net.isolated[3] = true // 3 never hears from this leader: it probes 3
	net.elect(1)
	proposeN(net, 1, 10)
	lead := net.nodes[1]
	applyAll(lead)
	lead.compact(8)
	pr := lead.prs[3]
	require.Equal(t, stateProbe, pr.state)
	require.LessOrEqual(t, pr.next, uint64(8), "the probe had backed off below the compaction point")

	// The follower answers a heartbeat: the leader would probe at next,
	// whose predecessor it no longer holds.
	hb := Message{Type: MsgHeartbeatResp, From: 3, To: 1, Term: lead.term}
	stepOK(t, lead, hb)
	require.Empty(t, filterMsgs(lead.takeMessages(), MsgApp, 3))
	sends := lead.takeSnapshotSends()
	require.Len(t, sends, 1)
	require.Equal(t, NodeID(3), sends[0].to)
	require.Equal(t, uint64(8), sends[0].meta.Index)
	require.Equal(t, stateSnapshot, pr.state)
	require.True(t, pr.isPaused(), "no entries while the snapshot streams")
	require.NoError(t, lead.checkInvariants())

	// The transfer fails: the leader probes again and asks for a new one.
	lead.snapshotFailed(3)
	require.Equal(t, stateProbe, pr.state)
	stepOK(t, lead, hb)
	require.Len(t, lead.takeSnapshotSends(), 1)
}

// Pitfall 7: compaction racing appends. Entries handed to the Persister
// and not yet durable, and a message already sent, keep their contents when
// the log compacts beneath them.
func TestPitfall07_CompactionDoesNotDisturbInFlightEntries(t *testing.T) {
	net := newTestNet(t, 3)
	net.elect(1)
	proposeN(net, 1, 5)
	lead := net.nodes[1]
	applyAll(lead)
	for i := range 3 {
		_, _, err := lead.propose([]Entry{{Data: []byte{'x', byte(i)}}})
		require.NoError(t, err)
	}
	sent := lead.takeMessages()
	require.NotEmpty(t, sent)
	b := lead.readyToPersist()
	require.Len(t, b.entries, 3)
	lead.compact(lead.raftLog.applied)
	for i, e := range b.entries {
		require.Equal(t, []byte{'x', byte(i)}, e.Data, "batch entry %d changed under compaction", i)
	}
	for _, m := range sent {
		for _, e := range m.Entries {
			require.Equal(t, byte('x'), e.Data[0])
		}
	}
	lead.persisted(b.num)
	require.Equal(t, lead.raftLog.lastIndex(), lead.raftLog.durable)
	require.NoError(t, lead.checkInvariants())
}

// Pitfall 13: a follower that caught up by a snapshot continues from the
// log; the leader does not send it a snapshot again while the log still
// holds what it needs.
func TestPitfall13_NoSnapshotLoopAfterCatchUp(t *testing.T) {
	net := newTestNet(t, 3)
	net.elect(1)
	net.isolated[3] = true
	proposeN(net, 1, 30)
	lead := net.nodes[1]
	applyAll(lead)
	lead.compact(20)
	net.isolated[3] = false
	for i := 0; i < 3*testElectionTicks && net.nodes[3].raftLog.committed < lead.raftLog.committed; i++ {
		net.tick(1)
	}
	require.Len(t, net.deliveredMatching(MsgSnap, 1, false), 1)
	for range 5 {
		proposeN(net, 1, 10)
		net.tick(1)
	}
	require.Len(t, net.deliveredMatching(MsgSnap, 1, false), 1, "no second snapshot")
	require.Equal(t, lead.raftLog.committed, net.nodes[3].raftLog.committed)
}
