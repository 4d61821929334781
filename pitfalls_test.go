package raft

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// One regression test per pitfall of /work/shared/RAFT-PITFALLS.md that the
// core can show. Not here: 7 and 13 (no snapshots yet), 8 (no membership
// changes yet), 11 (partial connectivity: a simulator property), 15 and 16
// (no reads or leases yet), 18 and 19 (runtime level).

// Pitfall 1 (§5.4.2, Figure 8; logcabin/logcabin#44): an entry of an earlier
// term stored on a majority is not committed by counting. Here the leader's
// message limit splits the old entry from the new no-op, so a majority holds
// entry 2 (term 2) while the no-op (term 4) is still in flight.
func TestPitfall01_CommitPreviousTermByCounting(t *testing.T) {
	old := Entry{Index: 2, Term: 2, Data: make([]byte, 100)}
	net := newTestNetPer(t, 3, map[NodeID][]testOpt{
		1: {withEntries(Entry{Index: 1, Term: 1}, old), withTerm(3)},
		2: {withLog(1), withTerm(3)},
		3: {withLog(1), withTerm(3)},
	}, withConfig(func(cc *coreConfig) { cc.maxMsgBytes = 50 }))
	// The no-op is lost to any follower that would accept it.
	net.drop = func(m Message) bool {
		if m.Type != MsgApp || net.nodes[m.To].raftLog.lastIndex() < 2 {
			return false
		}
		for _, e := range m.Entries {
			if e.Index == 3 {
				return true
			}
		}
		return false
	}
	net.elect(1)
	n1 := net.nodes[1]
	require.Equal(t, uint64(4), n1.term)
	for _, id := range []NodeID{2, 3} {
		require.Equal(t, []uint64{1, 2}, logTerms(net.nodes[id]), "node %d", id)
		require.Equal(t, uint64(2), n1.prs[id].match)
	}
	require.Equal(t, uint64(0), n1.raftLog.committed, "committed a term-2 entry by counting replicas")
	for _, id := range ids(3) {
		require.Equal(t, uint64(0), net.nodes[id].raftLog.committed, "node %d", id)
	}

	// Once the no-op reaches a majority it commits, and entry 2 with it.
	net.drop = nil
	for i := 0; i < 2*testElectionTicks && n1.raftLog.committed < 3; i++ {
		net.tick(1)
	}
	require.Equal(t, uint64(3), n1.raftLog.committed)
}

// Pitfall 2 (vesoft-inc/nebula#2483, etcd-io/etcd#1811): a duplicated or
// reordered AppendEntries whose entries all match changes nothing: no
// truncation, no disk write, and the acknowledgement covers prevIndex +
// len(entries), not the follower's last index.
func TestPitfall02_StaleAppendDoesNotTruncate(t *testing.T) {
	app := func(prev, prevTerm, commit uint64, ents ...Entry) Message {
		return Message{Type: MsgApp, From: 2, To: 1, Term: 2, Index: prev, LogTerm: prevTerm, Entries: ents, Commit: commit}
	}
	e := func(i, tm uint64) Entry { return Entry{Index: i, Term: tm} }
	tests := []struct {
		name     string
		first    *Message // delivered and persisted first, if set
		stale    Message
		want     []uint64
		wantResp uint64
		wantCmt  uint64
	}{
		{name: "duplicate of an old append", stale: app(2, 1, 5, e(3, 2)),
			want: []uint64{1, 1, 2, 2, 2}, wantResp: 3, wantCmt: 3},
		{name: "reordered behind a longer one", first: &[]Message{app(3, 2, 1, e(4, 2), e(5, 2), e(6, 2))}[0],
			stale: app(2, 1, 1, e(3, 2), e(4, 2)), want: []uint64{1, 1, 2, 2, 2, 2}, wantResp: 4, wantCmt: 1},
		{name: "empty append", stale: app(4, 2, 1),
			want: []uint64{1, 1, 2, 2, 2}, wantResp: 4, wantCmt: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCore(t, 1, ids(3), withLog(1, 1, 2, 2, 2), withHardState(HardState{Term: 2, Commit: 1}))
			if tt.first != nil {
				stepOK(t, c, *tt.first)
				drain(t, c)
			}
			durable := c.raftLog.durable
			stepOK(t, c, tt.stale)
			require.Equal(t, tt.want, logTerms(c))
			require.Equal(t, tt.wantCmt, c.raftLog.committed)
			b := c.readyToPersist()
			require.Zero(t, b.truncateFrom, "a matching append truncated the log")
			require.Empty(t, b.entries, "a matching append rewrote entries")
			resp := filterMsgs(b.afterDurable, MsgAppResp, 2)
			require.Len(t, resp, 1)
			require.False(t, resp[0].Reject)
			require.Equal(t, tt.wantResp, resp[0].Index)
			c.persisted(b.num)
			require.Equal(t, durable, c.raftLog.durable)
		})
	}
}

// Pitfall 3: the vote is durable before the grant leaves (Figure 2;
// vesoft-inc/nebula#3415), and is never cleared within its term: not on
// learning the leader (camunda/camunda#5356), not when a leader or candidate
// steps down (hazelcast/hazelcast#16643), not across a restart.
func TestPitfall03_VoteDurableBeforeReply(t *testing.T) {
	t.Run("grant after durable", func(t *testing.T) {
		c := newTestCore(t, 1, ids(5))
		stepOK(t, c, Message{Type: MsgVote, From: 2, To: 1, Term: 2})
		require.Empty(t, c.takeMessages())
		b := c.readyToPersist()
		require.Equal(t, HardState{Term: 2, Vote: 2}, b.hardState)
		require.True(t, b.mustSync)
		require.Len(t, filterMsgs(b.afterDurable, MsgVoteResp, 2), 1)
	})
	voteRejected := func(t *testing.T, c *core, from NodeID) {
		t.Helper()
		stepOK(t, c, Message{Type: MsgVote, From: from, To: c.id, Term: c.term})
		resp := filterMsgs(drain(t, c), MsgVoteResp, from)
		require.Len(t, resp, 1)
		require.True(t, resp[0].Reject, "voted twice in term %d", c.term)
	}
	t.Run("learning the leader", func(t *testing.T) {
		c := newTestCore(t, 1, ids(5))
		stepOK(t, c, Message{Type: MsgVote, From: 2, To: 1, Term: 2})
		drain(t, c)
		// Node 3 won term 2 with the votes of 3, 4 and 5.
		stepOK(t, c, Message{Type: MsgApp, From: 3, To: 1, Term: 2})
		require.Equal(t, NodeID(3), c.lead)
		drain(t, c)
		require.Equal(t, NodeID(2), c.persistedHS.Vote)
		voteRejected(t, c, 4)
		require.Equal(t, NodeID(2), c.vote)
	})
	t.Run("leader steps down", func(t *testing.T) {
		c := newTestCore(t, 1, ids(3), withCheckQuorum())
		electStandalone(t, c)
		for i := 0; i < 2*testElectionTicks && c.role == RoleLeader; i++ {
			c.tick()
			drain(t, c)
		}
		require.Equal(t, RoleFollower, c.role, "CheckQuorum should depose a leader nobody answers")
		require.Equal(t, NodeID(1), c.vote)
		voteRejected(t, c, 2)
	})
	t.Run("candidate loses", func(t *testing.T) {
		c := newTestCore(t, 1, ids(3))
		c.campaign()
		drain(t, c)
		for _, p := range []NodeID{2, 3} {
			stepOK(t, c, Message{Type: MsgVoteResp, From: p, To: 1, Term: c.term, Reject: true})
		}
		require.Equal(t, RoleFollower, c.role)
		require.Equal(t, NodeID(1), c.vote)
		voteRejected(t, c, 2)
	})
	t.Run("restart", func(t *testing.T) {
		c := newTestCore(t, 1, ids(3), withHardState(HardState{Term: 2, Vote: 2}))
		voteRejected(t, c, 3)
		stepOK(t, c, Message{Type: MsgVote, From: 2, To: 1, Term: 2})
		resp := filterMsgs(drain(t, c), MsgVoteResp, 2)
		require.Len(t, resp, 1)
		require.False(t, resp[0].Reject, "a retry by the candidate we voted for is granted")
	})
}

// Pitfall 4 (etcd-io/etcd#14370): a one-node cluster is its own majority, so
// the only thing between a proposal and its commit is the leader's own disk.
// Nothing commits, and nothing is applied, before persisted().
func TestPitfall04_SingleNodeAcksOnlyAfterDurable(t *testing.T) {
	c := newTestCore(t, 1, []NodeID{1})
	c.campaign()
	require.Equal(t, RoleLeader, c.role)
	first, _, err := c.propose([]Entry{{Data: []byte("a")}})
	require.NoError(t, err)
	require.Equal(t, uint64(2), first)
	require.Zero(t, c.raftLog.committed, "committed before anything is durable")
	require.False(t, c.hasApply())
	require.Empty(t, c.nextApply(1<<20))

	b := c.readyToPersist()
	require.True(t, b.mustSync)
	require.Len(t, b.entries, 2)
	require.Zero(t, c.raftLog.committed, "committed while the batch is being written")
	c.persisted(b.num)
	require.Equal(t, uint64(2), c.raftLog.committed)
	require.Len(t, c.nextApply(1<<20), 2)

	// A second proposal waits for its own batch, not the previous one.
	second, _, err := c.propose([]Entry{{Data: []byte("b")}})
	require.NoError(t, err)
	b2 := c.readyToPersist()
	c.persisted(b.num) // a repeat of the old acknowledgement
	require.Equal(t, uint64(2), c.raftLog.committed)
	c.persisted(b2.num)
	require.Equal(t, second, c.raftLog.committed)
}

// Pitfall 5 (etcd-io/raft async_storage_writes_append_aba_race.txt): a disk
// acknowledgement for index 3 of term 1 must not count for the different
// entry at index 3, of term 3, that this node appended later as leader. With
// an index-only acknowledgement the leader would count itself and commit the
// no-op with one follower.
func TestPitfall05_StaleDurableAckABA(t *testing.T) {
	c := newTestCore(t, 1, ids(3))
	stepOK(t, c, Message{Type: MsgApp, From: 2, To: 1, Term: 1,
		Entries: []Entry{{Index: 1, Term: 1}, {Index: 2, Term: 1}, {Index: 3, Term: 1}}})
	c.takeMessages()
	a := c.readyToPersist() // covers index 3, term 1
	stepOK(t, c, Message{Type: MsgApp, From: 3, To: 1, Term: 2, Index: 1, LogTerm: 1,
		Entries: []Entry{{Index: 2, Term: 2}}})
	c.readyToPersist() // truncates from 2
	c.campaign()
	c.takeMessages()
	cand := c.readyToPersist()
	stepOK(t, c, Message{Type: MsgVoteResp, From: 2, To: 1, Term: 3})
	require.Equal(t, RoleLeader, c.role)
	require.Equal(t, Entry{Index: 3, Term: 3, Type: EntryNoop}, *c.raftLog.at(3))

	c.persisted(a.num) // the old write of index 3 (term 1) completes
	require.Less(t, c.raftLog.durable, uint64(3), "a term-1 ack made the term-3 entry durable")
	stepOK(t, c, Message{Type: MsgAppResp, From: 2, To: 1, Term: 3, Index: 3})
	require.Zero(t, c.raftLog.committed, "committed the no-op on a stale durability ack")

	c.persisted(cand.num)
	require.Zero(t, c.raftLog.committed)
	noop := c.readyToPersist()
	c.persisted(noop.num)
	require.Equal(t, uint64(3), c.raftLog.durable)
	require.Equal(t, uint64(3), c.raftLog.committed)
}

// Pitfall 6 (hashicorp/raft#549): a restarted node applies only what it knows
// is committed (the persisted commit index, clamped to its log), and the rest
// only once a leader says so.
func TestPitfall06_RestartAppliesOnlyCommitted(t *testing.T) {
	tests := []struct {
		name      string
		commit    uint64
		wantApply uint64
	}{
		{"nothing committed", 0, 0},
		{"prefix committed", 3, 3},
		{"commit beyond log clamped", 9, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCore(t, 1, ids(3), withLog(1, 1, 1, 1, 1), withHardState(HardState{Term: 1, Commit: tt.commit}))
			var applied []uint64
			for _, e := range c.nextApply(1 << 20) {
				applied = append(applied, e.Index)
			}
			require.Len(t, applied, int(tt.wantApply))
			if tt.wantApply > 0 {
				require.Equal(t, tt.wantApply, applied[len(applied)-1])
			}
			for i := 0; i < testElectionTicks-1; i++ {
				c.tick()
			}
			require.Empty(t, c.nextApply(1<<20), "applied more without hearing from a leader")

			stepOK(t, c, Message{Type: MsgHeartbeat, From: 2, To: 1, Term: 1, Commit: 5})
			ents := c.nextApply(1 << 20)
			if tt.wantApply < 5 {
				require.NotEmpty(t, ents)
				require.Equal(t, tt.wantApply+1, ents[0].Index)
				require.Equal(t, uint64(5), ents[len(ents)-1].Index)
			}
		})
	}
}

// Pitfall 9 (etcd-io/etcd#8243, #9586, fixed by #8334): with PreVote and
// CheckQuorum, a node at a higher term must not wedge the cluster. It rejects
// a lower-term PreVote at its own term, and answers a lower-term leader's
// MsgApp or heartbeat with its term, so the others catch up and elect a
// leader it can follow.
func TestPitfall09_PreVoteCheckQuorumNoDeadlock(t *testing.T) {
	t.Run("lower-term PreVote rejected with the higher term", func(t *testing.T) {
		c := newTestCore(t, 3, ids(3), withPreVote(), withCheckQuorum(), withTerm(5))
		stepOK(t, c, Message{Type: MsgPreVote, From: 1, To: 3, Term: 3, Index: 9, LogTerm: 2})
		resp := filterMsgs(c.takeMessages(), MsgPreVoteResp, 1)
		require.Len(t, resp, 1)
		require.True(t, resp[0].Reject)
		require.Equal(t, uint64(5), resp[0].Term)
		require.Equal(t, uint64(5), c.term)
	})
	for _, typ := range []MessageType{MsgApp, MsgHeartbeat} {
		t.Run("lower-term "+typ.String()+" answered with the higher term", func(t *testing.T) {
			leader := newTestCore(t, 1, ids(3), withPreVote(), withCheckQuorum())
			electStandalone(t, leader)
			c := newTestCore(t, 3, ids(3), withPreVote(), withCheckQuorum(), withTerm(5))
			stepOK(t, c, Message{Type: typ, From: 1, To: 3, Term: leader.term})
			resp := filterMsgs(drain(t, c), MsgAppResp, 1)
			require.Len(t, resp, 1)
			require.Equal(t, uint64(5), resp[0].Term)
			require.Equal(t, uint64(5), c.term)

			stepOK(t, leader, resp[0])
			require.Equal(t, RoleFollower, leader.role, "the stale leader keeps leading")
			require.Equal(t, uint64(5), leader.term)
		})
	}
	t.Run("cluster elects a leader", func(t *testing.T) {
		// Node 3 is at a higher term with a log too short to win; 1 and 2
		// can win but are at a lower term.
		net := newTestNetPer(t, 3, map[NodeID][]testOpt{
			1: {withLog(1, 2), withTerm(2)},
			2: {withLog(1, 2), withTerm(2)},
			3: {withLog(1), withTerm(5)},
		}, withPreVote(), withCheckQuorum())
		lead := net.tickUntilLeader(20*testElectionTicks, 0)
		require.Contains(t, []NodeID{1, 2}, lead)
		require.Greater(t, net.nodes[lead].term, uint64(5))
		var told bool
		for _, m := range net.deliveredMatching(MsgPreVoteResp, 3, true) {
			told = told || m.Term >= 5
		}
		require.True(t, told, "node 3 never rejected a pre-vote at its higher term")
		idx := net.propose(lead, []byte("x"))
		net.stabilize()
		for _, id := range ids(3) {
			require.Equal(t, idx, net.nodes[id].raftLog.committed, "node %d", id)
		}
	})
}

// Pitfall 10 (hashicorp/raft#503): a leader whose disk stalls steps down
// within an election timeout, so its heartbeats stop holding off the
// followers and the cluster fails over; the old leader rejoins as a follower
// once its disk recovers.
func TestPitfall10_DiskStallLeaderStepsDown(t *testing.T) {
	net := newTestNet(t, 3, withPreVote(), withCheckQuorum())
	net.elect(1)
	term := net.nodes[1].term
	net.stalled[1] = true
	net.propose(1, []byte("stuck"))
	net.stabilize()
	for i := 0; i < testElectionTicks; i++ {
		net.tick()
	}
	require.NotEqual(t, RoleLeader, net.nodes[1].role, "leader with a stalled disk still leads")
	lead := net.tickUntilLeader(10*testElectionTicks, 1)
	require.Greater(t, net.nodes[lead].term, term)

	net.unstall(1)
	for i := 0; i < 2 && !net.agreeOn(lead); i++ {
		net.tick(lead)
	}
	require.True(t, net.agreeOn(lead), "%s", net)
	idx := net.propose(lead, []byte("after failover"))
	net.stabilize()
	require.Equal(t, idx, net.nodes[1].raftLog.committed)
}

// Pitfall 12 (hashicorp/raft#411, #524), thesis §9.6: a node cut off from the
// cluster keeps timing out, but with PreVote it never raises its term, so
// rejoining cannot depose a healthy leader.
func TestPitfall12_RejoiningNodeDoesNotInflateTerm(t *testing.T) {
	c := newTestCore(t, 3, ids(3), withPreVote(), withCheckQuorum(), withTerm(4))
	for i := 0; i < 10*testElectionTicks; i++ {
		c.tick()
		drain(t, c) // every message is lost
	}
	require.Equal(t, uint64(4), c.term, "an isolated node inflated its term")
	require.Equal(t, RolePreCandidate, c.role)
}

// Pitfall 12, second defence (thesis §4.2.3): with CheckQuorum, a node that
// has heard from a live leader within the election timeout ignores vote
// requests, even at a higher term; the leader ignores them too.
func TestPitfall12_VoteIgnoredInsideLeaderLease(t *testing.T) {
	net := newTestNet(t, 3, withCheckQuorum())
	net.elect(1)
	net.tick(1)
	term := net.nodes[1].term
	for _, to := range []NodeID{1, 2} {
		stepOK(t, net.nodes[to], Message{Type: MsgVote, From: 3, To: to, Term: term + 5,
			Index: 100, LogTerm: term + 4})
		require.Empty(t, drain(t, net.nodes[to]), "node %d answered a vote inside the lease", to)
		require.Equal(t, term, net.nodes[to].term)
	}
	require.Equal(t, RoleLeader, net.nodes[1].role)
	require.Equal(t, NodeID(1), net.nodes[2].vote, "the vote of this term changed")
}

// Pitfall 14 (hashicorp/raft#612): a follower stops acknowledging while the
// window is full. The leader must not wait forever: after a few heartbeat
// ticks it falls back to probing from match, and replication resumes.
func TestPitfall14_PipelineRecoversAfterStall(t *testing.T) {
	net := newTestNet(t, 3, withConfig(func(cc *coreConfig) { cc.maxInflightMsgs = 2 }))
	net.elect(1)
	n1, n2 := net.nodes[1], net.nodes[2]
	pr := n1.prs[2]
	require.Equal(t, stateReplicate, pr.state)
	match := pr.match

	net.drop = func(m Message) bool { return m.Type == MsgAppResp && m.From == 2 }
	for i := 0; i < 4; i++ {
		net.propose(1, []byte("x"))
		net.stabilize()
	}
	require.True(t, pr.isPaused(), "window should be full")
	require.Equal(t, match, pr.match)
	require.Less(t, n2.raftLog.lastIndex(), n1.raftLog.lastIndex(), "window did not bound what was sent")

	net.drop = nil
	mark := len(net.delivered)
	for i := 0; i < testElectionTicks && pr.match < n1.raftLog.lastIndex(); i++ {
		net.tick(1)
	}
	require.Equal(t, n1.raftLog.lastIndex(), pr.match, "replication did not resume after the stall")
	require.Equal(t, stateReplicate, pr.state)
	var firstApp *Message
	for i := range net.delivered[mark:] {
		if m := net.delivered[mark+i]; m.Type == MsgApp && m.To == 2 && len(m.Entries) > 0 {
			firstApp = &m
			break
		}
	}
	require.NotNil(t, firstApp)
	require.Equal(t, match, firstApp.Index, "the probe must start from what the follower acknowledged")
	require.Equal(t, logTerms(n1), logTerms(n2))

	idx := net.propose(1, []byte("after"))
	net.stabilize()
	require.Equal(t, idx, pr.match, "streaming resumed")
}

// Pitfall 17 (cockroachdb/cockroach#90314, etcd-io/etcd#14624): flow control
// counted in messages alone lets large entries blow up memory. With a generous
// message window and a small byte window, bytes in flight to a slow follower
// stay within the byte window plus one message.
func TestPitfall17_InflightBoundedInBytes(t *testing.T) {
	const maxInflightBytes, entryBytes = 4000, 1000
	c := replicatingLeader(t, withConfig(func(cc *coreConfig) {
		cc.maxInflightMsgs, cc.maxInflightBytes, cc.maxMsgBytes = 100, maxInflightBytes, entryBytes
	}))
	for i := 0; i < 20; i++ {
		_, _, err := c.propose([]Entry{{Data: make([]byte, entryBytes)}})
		require.NoError(t, err)
	}
	var inflight []Message
	next := uint64(2)
	maxMsgSize := (&Message{Entries: []Entry{{Data: make([]byte, entryBytes)}}}).Size()
	for i := 0; c.prs[2].match < c.raftLog.lastIndex(); i++ {
		require.Less(t, i, 100)
		for _, m := range filterMsgs(drain(t, c), MsgApp, 2) {
			if len(m.Entries) == 0 {
				continue // carries a commit index; not part of the window
			}
			require.Equal(t, next, m.Entries[0].Index, "entries out of order or resent")
			next = m.Entries[len(m.Entries)-1].Index + 1
			inflight = append(inflight, m)
		}
		bytes := 0
		for _, m := range inflight {
			bytes += m.Size()
		}
		require.LessOrEqual(t, bytes, maxInflightBytes+maxMsgSize, "bytes in flight past the window")
		require.Less(t, len(inflight), 10, "the message count, not bytes, bounded the window")
		// The follower acknowledges the oldest message.
		require.NotEmpty(t, inflight)
		last := inflight[0].Entries[len(inflight[0].Entries)-1].Index
		inflight = inflight[1:]
		stepOK(t, c, Message{Type: MsgAppResp, From: 2, To: 1, Term: c.term, Index: last})
	}
	require.Equal(t, c.raftLog.lastIndex(), c.raftLog.committed)
}

// Pitfall 17, the other half: the uncommitted-bytes budget counts only the
// entries this leader appended in its term. Committing entries of earlier
// terms (with the no-op) must not release budget they never took.
func TestPitfall17_UncommittedBudgetIgnoresEarlierTerms(t *testing.T) {
	c := newTestCore(t, 1, ids(3), withEntries(Entry{Index: 1, Term: 1, Data: make([]byte, 500)}),
		withConfig(func(cc *coreConfig) { cc.maxUncommittedBytes = 1000 }))
	electStandalone(t, c) // term 2, no-op at 2
	_, _, err := c.propose([]Entry{{Data: make([]byte, 500)}})
	require.NoError(t, err)
	drain(t, c)
	cost := 500 + entryHeaderBytes // an entry is charged its data and its header
	require.Equal(t, cost, c.uncommittedBytes)

	// Follower 2 acknowledges the no-op: entries 1-2 commit, entry 3 does not.
	stepOK(t, c, Message{Type: MsgAppResp, From: 2, To: 1, Term: 2, Index: 2})
	require.Equal(t, uint64(2), c.raftLog.committed)
	require.Equal(t, cost, c.uncommittedBytes, "entry 3 (500 bytes) is still uncommitted")

	_, _, err = c.propose([]Entry{{Data: make([]byte, 600)}}) // 524 outstanding: accepted
	require.NoError(t, err)
	_, _, err = c.propose([]Entry{{Data: []byte("x")}}) // 1148 outstanding: refused
	require.ErrorIs(t, err, ErrBusy)
}
