package raft

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// Core unit tests, each named after the rule it checks and citing the paper
// (Ongaro and Ousterhout, extended version) or Ongaro's thesis. Each builds a
// core directly, feeds it inputs and checks its outputs on both routes:
// takeMessages (may be sent now) and readyToPersist().afterDurable (only once
// the batch is durable).

// §5.4.1: a voter denies its vote if its own log is more up-to-date than the
// candidate's: a later last term wins; with equal last terms, the longer log.
func TestVote_RejectsShorterLog(t *testing.T) {
	// The voter's log ends at index 3, term 2.
	tests := []struct {
		name                string
		lastIndex, lastTerm uint64
		grant               bool
	}{
		{"same term shorter", 2, 2, false},
		{"lower last term same length", 3, 1, false},
		{"lower last term longer", 10, 1, false},
		{"same term same length", 3, 2, true},
		{"same term longer", 4, 2, true},
		{"higher last term shorter", 1, 3, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCore(t, 1, ids(3), withLog(1, 1, 2))
			stepOK(t, c, Message{Type: MsgVote, From: 2, To: 1, Term: 3, Index: tt.lastIndex, LogTerm: tt.lastTerm})
			resp := filterMsgs(drain(t, c), MsgVoteResp, 2)
			require.Len(t, resp, 1)
			require.Equal(t, !tt.grant, resp[0].Reject)
			require.Equal(t, uint64(3), resp[0].Term)
			require.Equal(t, uint64(3), c.term, "a higher-term request raises the term either way")
			if tt.grant {
				require.Equal(t, NodeID(2), c.vote)
			} else {
				require.Equal(t, NodeID(0), c.vote)
			}
		})
	}
}

// §5.2: "each server will vote for at most one candidate in a given term, on
// a first-come-first-served basis". Repeating a grant to the same candidate
// is harmless (a lost response); a new term allows a new vote.
func TestVote_GrantsAtMostOncePerTerm(t *testing.T) {
	c := newTestCore(t, 1, ids(3))
	steps := []struct {
		from  NodeID
		term  uint64
		grant bool
	}{
		{2, 2, true},
		{3, 2, false}, // already voted for 2 in term 2
		{2, 2, true},  // a retry by the same candidate
		{3, 2, false},
		{3, 3, true}, // a new term
		{2, 3, false},
	}
	for i, s := range steps {
		stepOK(t, c, Message{Type: MsgVote, From: s.from, To: 1, Term: s.term})
		resp := filterMsgs(drain(t, c), MsgVoteResp, s.from)
		require.Len(t, resp, 1, "step %d", i)
		require.Equal(t, !s.grant, resp[0].Reject, "step %d: vote from %d in term %d", i, s.from, s.term)
	}
	require.Equal(t, HardState{Term: 3, Vote: 3}, c.persistedHS)
}

// Figure 2 ("Persistent state ... updated on stable storage before responding
// to RPCs"), thesis §3.8, pitfall 3: a vote grant leaves only once the
// batch recording the vote is durable.
func TestVote_GrantNotSentBeforeDurable(t *testing.T) {
	c := newTestCore(t, 1, ids(3))
	stepOK(t, c, Message{Type: MsgVote, From: 2, To: 1, Term: 2})
	require.Empty(t, filterMsgs(c.takeMessages(), MsgVoteResp, 0), "grant sent before the vote is durable")

	b := c.readyToPersist()
	require.True(t, b.saveHardState)
	require.Equal(t, HardState{Term: 2, Vote: 2}, b.hardState)
	require.True(t, b.mustSync, "a new vote must be synced")
	grants := filterMsgs(b.afterDurable, MsgVoteResp, 2)
	require.Len(t, grants, 1)
	require.False(t, grants[0].Reject)
	c.persisted(b.num)
	require.Empty(t, c.takeMessages())
}

// §5.2: a candidate votes for itself and issues RequestVote. Its vote and term
// must be durable first (Figure 2; vesoft-inc/nebula#3415), so MsgVote leaves
// only after the batch that records them.
func TestCandidate_SelfVoteDurableBeforeRequestVote(t *testing.T) {
	c := newTestCore(t, 1, ids(3), withLog(1, 1))
	for i := 0; i < 2*testElectionTicks && c.role == RoleFollower; i++ {
		c.tick()
	}
	require.Equal(t, RoleCandidate, c.role)
	require.Empty(t, filterMsgs(c.takeMessages(), MsgVote, 0), "MsgVote sent before the self-vote is durable")

	b := c.readyToPersist()
	require.Equal(t, HardState{Term: 2, Vote: 1}, b.hardState)
	require.True(t, b.saveHardState)
	require.True(t, b.mustSync)
	votes := filterMsgs(b.afterDurable, MsgVote, 0)
	require.Len(t, votes, 2)
	for _, m := range votes {
		require.Equal(t, uint64(2), m.Term)
		require.Equal(t, uint64(2), m.Index)
		require.Equal(t, uint64(1), m.LogTerm)
	}
}

// Figure 2, Rules for Servers: "If RPC request or response contains term T >
// currentTerm: set currentTerm = T, convert to follower" (§5.1), whatever the
// role. A message from a leader also names the leader.
func TestFollower_UpdatesTermFromMessage(t *testing.T) {
	msgs := []struct {
		typ      MessageType
		wantLead NodeID
	}{
		{MsgApp, 2},
		{MsgHeartbeat, 2},
		{MsgVote, 0},
		{MsgAppResp, 0},
		{MsgVoteResp, 0},
		{MsgHeartbeatResp, 0},
	}
	roles := []Role{RoleFollower, RoleCandidate, RoleLeader}
	for _, role := range roles {
		for _, mm := range msgs {
			t.Run(role.String()+"/"+mm.typ.String(), func(t *testing.T) {
				c := newTestCore(t, 1, ids(3))
				switch role {
				case RoleCandidate:
					c.campaign()
					drain(t, c)
				case RoleLeader:
					electStandalone(t, c)
				}
				require.Equal(t, role, c.role)
				stepOK(t, c, Message{Type: mm.typ, From: 2, To: 1, Term: 7})
				require.Equal(t, uint64(7), c.term)
				require.Equal(t, RoleFollower, c.role)
				require.Equal(t, mm.wantLead, c.lead)
				drain(t, c)
				require.Equal(t, uint64(7), c.persistedHS.Term, "the new term is persisted")
			})
		}
	}
}

// §5.1: "If a server receives a request with a stale term number, it rejects
// the request." Without PreVote and CheckQuorum the core drops it; with
// either, a stale leader is told the current term (pitfall 9, tested in
// pitfalls_test.go). Nothing of the receiver's state changes.
func TestStaleTermMessageIgnored(t *testing.T) {
	stale := []Message{
		{Type: MsgApp, Index: 2, LogTerm: 1, Entries: []Entry{{Index: 3, Term: 3}}, Commit: 3},
		{Type: MsgHeartbeat, Commit: 2},
		{Type: MsgVote, Index: 9, LogTerm: 4},
		{Type: MsgVoteResp},
		{Type: MsgAppResp, Index: 2},
		{Type: MsgHeartbeatResp},
	}
	for _, m := range stale {
		t.Run(m.Type.String(), func(t *testing.T) {
			c := newTestCore(t, 1, ids(3), withLog(1, 1), withHardState(HardState{Term: 5, Vote: 3}))
			m.From, m.To, m.Term = 2, 1, 4
			stepOK(t, c, m)
			require.Empty(t, drain(t, c))
			require.Equal(t, HardState{Term: 5, Vote: 3}, c.hardState())
			require.Equal(t, []uint64{1, 1}, logTerms(c))
			require.Equal(t, NodeID(0), c.lead)
		})
	}
}

// §5.2: election timeouts are chosen randomly from a fixed interval; here
// [T, 2T), and each node's draw depends on its seed, so different seeds and
// IDs give different timeouts.
func TestElectionTimeoutRandomized(t *testing.T) {
	seen := map[int]bool{}
	for seed := uint64(1); seed <= 20; seed++ {
		for _, id := range ids(3) {
			c := newTestCore(t, id, ids(3), withConfig(func(cc *coreConfig) { cc.seed = seed }))
			ticks := 0
			for c.role == RoleFollower {
				c.tick()
				ticks++
				require.LessOrEqual(t, ticks, 2*testElectionTicks, "no election after 2T ticks")
			}
			require.GreaterOrEqual(t, ticks, testElectionTicks, "seed %d id %d", seed, id)
			require.Less(t, ticks, 2*testElectionTicks, "seed %d id %d", seed, id)
			seen[ticks] = true
		}
	}
	require.Greater(t, len(seen), 3, "timeouts hardly vary: %v", seen)
}

// §8: a leader does not know which earlier-term entries are committed, so it
// appends a no-op entry of its own term at the start of its term and sends it.
func TestLeader_AppendsNoopOnElection(t *testing.T) {
	c := newTestCore(t, 1, ids(3), withLog(1, 2), withTerm(3))
	c.campaign()
	drain(t, c)
	stepOK(t, c, Message{Type: MsgVoteResp, From: 2, To: 1, Term: 4})
	require.Equal(t, RoleLeader, c.role)
	last := *c.raftLog.at(c.raftLog.lastIndex())
	require.Equal(t, Entry{Index: 3, Term: 4, Type: EntryNoop}, last)
	apps := filterMsgs(drain(t, c), MsgApp, 0)
	require.Len(t, apps, 2)
	for _, m := range apps {
		require.Equal(t, []Entry{last}, m.Entries, "to %d", m.To)
		require.Equal(t, uint64(2), m.Index)
		require.Equal(t, uint64(2), m.LogTerm)
	}
}

// Figure 2, Rules for Leaders: "repeat during idle periods to prevent election
// timeouts" (§5.2): a heartbeat to every follower each heartbeat interval,
// carrying no more commit than the follower is known to hold.
func TestLeader_HeartbeatEveryInterval(t *testing.T) {
	for _, hb := range []int{1, 3} {
		c := newTestCore(t, 1, ids(3), withConfig(func(cc *coreConfig) { cc.heartbeatTicks = hb }))
		electStandalone(t, c)
		// Follower 2 holds the no-op, follower 3 nothing.
		stepOK(t, c, Message{Type: MsgAppResp, From: 2, To: 1, Term: c.term, Index: 1})
		drain(t, c)
		require.Equal(t, uint64(1), c.raftLog.committed)
		for round := 0; round < 3; round++ {
			for i := 1; i < hb; i++ {
				c.tick()
				require.Empty(t, filterMsgs(drain(t, c), MsgHeartbeat, 0), "hb=%d: heartbeat after %d ticks", hb, i)
			}
			c.tick()
			beats := filterMsgs(drain(t, c), MsgHeartbeat, 0)
			require.Len(t, beats, 2, "hb=%d round %d", hb, round)
			for _, m := range beats {
				require.Equal(t, c.term, m.Term)
				if m.To == 2 {
					require.Equal(t, uint64(1), m.Commit)
				} else {
					require.Equal(t, uint64(0), m.Commit, "commit beyond what follower 3 holds")
				}
			}
		}
	}
}

// Figure 2, AppendEntries receiver step 2 and §5.3: reject when the log has
// no entry at prevLogIndex with prevLogTerm, with a hint for the leader: the
// follower's term there and the first index it holds of that term (or its
// last index + 1 when the log is too short).
func TestAppend_ConsistencyCheckRejectsMismatch(t *testing.T) {
	// Follower log terms: 1 1 2 2 3.
	tests := []struct {
		name          string
		prevIndex     uint64
		prevTerm      uint64
		reject        bool
		conflictIndex uint64
		conflictTerm  uint64
		wantRespIndex uint64
	}{
		{"log too short", 7, 4, true, 6, 0, 7},
		{"mismatch at last", 5, 4, true, 5, 3, 5},
		{"mismatch in term-2 run", 4, 3, true, 3, 2, 4},
		{"mismatch in term-1 run", 2, 2, true, 1, 1, 2},
		{"match", 4, 2, false, 0, 0, 5},
		{"match at zero", 0, 0, false, 0, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCore(t, 1, ids(3), withLog(1, 1, 2, 2, 3), withTerm(4))
			m := Message{Type: MsgApp, From: 2, To: 1, Term: 4, Index: tt.prevIndex, LogTerm: tt.prevTerm,
				Entries: []Entry{{Index: tt.prevIndex + 1, Term: 4}}}
			stepOK(t, c, m)
			resp := filterMsgs(drain(t, c), MsgAppResp, 2)
			require.Len(t, resp, 1)
			require.Equal(t, tt.reject, resp[0].Reject)
			require.Equal(t, tt.wantRespIndex, resp[0].Index)
			if tt.reject {
				require.Equal(t, tt.conflictIndex, resp[0].ConflictIndex)
				require.Equal(t, tt.conflictTerm, resp[0].ConflictTerm)
				require.Equal(t, []uint64{1, 1, 2, 2, 3}, logTerms(c), "a rejected append changed the log")
			}
		})
	}
}

// Figure 2, AppendEntries receiver steps 3-4: delete an existing entry and all
// that follow only if it conflicts (same index, different term); append any
// entries not already in the log. Persist batches truncate only then.
func TestAppend_TruncatesOnlyOnRealConflict(t *testing.T) {
	// Follower log terms: 1 1 2 2 2.
	tests := []struct {
		name          string
		prevIndex     uint64
		prevTerm      uint64
		ents          []Entry
		want          []uint64
		wantTruncate  uint64
		wantPersisted []uint64 // indexes of the entries handed to the disk
		wantResp      uint64
	}{
		{"all match", 1, 1, []Entry{{Index: 2, Term: 1}, {Index: 3, Term: 2}},
			[]uint64{1, 1, 2, 2, 2}, 0, nil, 3},
		{"overlap then new", 4, 2, []Entry{{Index: 5, Term: 2}, {Index: 6, Term: 3}},
			[]uint64{1, 1, 2, 2, 2, 3}, 0, []uint64{6}, 6},
		{"conflict at 4", 3, 2, []Entry{{Index: 4, Term: 3}},
			[]uint64{1, 1, 2, 3}, 4, []uint64{4}, 4},
		{"match then conflict at 3", 1, 1, []Entry{{Index: 2, Term: 1}, {Index: 3, Term: 3}},
			[]uint64{1, 1, 3}, 3, []uint64{3}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCore(t, 1, ids(3), withLog(1, 1, 2, 2, 2), withTerm(3))
			stepOK(t, c, Message{Type: MsgApp, From: 2, To: 1, Term: 3, Index: tt.prevIndex, LogTerm: tt.prevTerm, Entries: tt.ents})
			require.Equal(t, tt.want, logTerms(c))
			b := c.readyToPersist()
			require.Equal(t, tt.wantTruncate, b.truncateFrom)
			var got []uint64
			for _, e := range b.entries {
				got = append(got, e.Index)
			}
			require.Equal(t, tt.wantPersisted, got)
			resp := filterMsgs(b.afterDurable, MsgAppResp, 2)
			require.Len(t, resp, 1)
			require.False(t, resp[0].Reject)
			require.Equal(t, tt.wantResp, resp[0].Index)
		})
	}
}

// §5.4.2, Figure 8: a leader commits by counting replicas only entries of its
// current term. An earlier-term entry on a majority stays uncommitted until a
// current-term entry above it is on a majority.
func TestCommit_OnlyCurrentTermByCounting(t *testing.T) {
	c := newTestCore(t, 1, ids(3), withLog(1, 2), withTerm(3))
	electStandalone(t, c) // term 4, no-op at 3, durable
	require.Equal(t, uint64(4), c.term)
	require.Equal(t, uint64(3), c.raftLog.durable)

	// Follower 2 holds entries 1 and 2: entry 2 (term 2) is on a majority.
	stepOK(t, c, Message{Type: MsgAppResp, From: 2, To: 1, Term: 4, Index: 2})
	drain(t, c)
	require.Equal(t, uint64(2), c.prs[2].match)
	require.Equal(t, uint64(0), c.raftLog.committed, "committed an earlier-term entry by counting")

	// The no-op (term 4) reaches a majority: it commits, and entries 1-2 with it.
	stepOK(t, c, Message{Type: MsgAppResp, From: 2, To: 1, Term: 4, Index: 3})
	require.Equal(t, uint64(3), c.raftLog.committed)
}

// Figure 2, AppendEntries receiver step 5: "If leaderCommit > commitIndex,
// set commitIndex = min(leaderCommit, index of last new entry)": entries past
// what the message covers may not match the leader's.
func TestCommit_FollowerUsesMinOfLeaderCommitAndLastNew(t *testing.T) {
	tests := []struct {
		name       string
		prevIndex  uint64
		ents       []Entry
		leaderCmt  uint64
		wantCommit uint64
	}{
		{"leader commit past last new", 1, []Entry{{Index: 2, Term: 1}}, 5, 2},
		{"empty append", 3, nil, 5, 3},
		{"leader commit below last new", 5, []Entry{{Index: 6, Term: 1}}, 4, 4},
		{"commit never decreases", 0, nil, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCore(t, 1, ids(3), withLog(1, 1, 1, 1, 1), withHardState(HardState{Term: 1, Commit: 1}))
			prevTerm := uint64(1)
			if tt.prevIndex == 0 {
				prevTerm = 0
			}
			stepOK(t, c, Message{Type: MsgApp, From: 2, To: 1, Term: 1, Index: tt.prevIndex, LogTerm: prevTerm,
				Entries: tt.ents, Commit: tt.leaderCmt})
			require.Equal(t, tt.wantCommit, c.raftLog.committed)
		})
	}
}

// Thesis §10.2.1: the leader may write to its disk in parallel with
// replication, but counts itself in a majority only for entries durable on its
// own disk (invariant 7). With 3 nodes and one follower acknowledging, commit
// waits for the leader's persisted().
func TestLeader_CountsSelfOnlyWhenDurable(t *testing.T) {
	c := newTestCore(t, 1, ids(3))
	electStandalone(t, c)
	stepOK(t, c, Message{Type: MsgAppResp, From: 2, To: 1, Term: c.term, Index: 1})
	drain(t, c)
	require.Equal(t, uint64(1), c.raftLog.committed)

	idx, _, err := c.propose([]Entry{{Data: []byte("x")}})
	require.NoError(t, err)
	apps := filterMsgs(c.takeMessages(), MsgApp, 2)
	require.Len(t, apps, 1, "the leader replicates before its own write completes")
	b := c.readyToPersist()
	require.Equal(t, idx, b.entries[len(b.entries)-1].Index)

	stepOK(t, c, Message{Type: MsgAppResp, From: 2, To: 1, Term: c.term, Index: idx})
	require.Equal(t, uint64(1), c.raftLog.committed, "committed with the leader's copy not durable")
	for _, e := range c.nextApply(1 << 20) {
		require.LessOrEqual(t, e.Index, uint64(1), "applied an entry that is not committed")
	}

	c.persisted(b.num)
	require.Equal(t, idx, c.raftLog.committed)
	// The new commit index goes out at once.
	for _, m := range filterMsgs(c.takeMessages(), MsgApp, 0) {
		require.Equal(t, idx, m.Commit)
	}
}

// §5.3 (last paragraphs) and the conflict hints: when a follower's log
// diverges over a long run of few terms, the leader backs up a whole term per
// rejection, not one entry.
func TestFastBacktracking_OneRoundTripPerTerm(t *testing.T) {
	run := func(from, to uint64, term uint64) []uint64 {
		var out []uint64
		for i := from; i <= to; i++ {
			out = append(out, term)
		}
		return out
	}
	cat := func(parts ...[]uint64) []uint64 {
		var out []uint64
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	tests := []struct {
		name         string
		leader       []uint64
		follower     []uint64
		maxRejection int
	}{
		// The leader holds none of the follower's divergent terms.
		{"leader lacks follower terms",
			cat(run(1, 2, 1), run(3, 60, 4)),
			cat(run(1, 2, 1), run(3, 52, 2), run(53, 102, 3)), 3},
		// The leader holds a shorter run of one of the follower's terms.
		{"leader shares a term",
			cat(run(1, 1, 1), run(2, 5, 2), run(6, 30, 4)),
			cat(run(1, 1, 1), run(2, 10, 2), run(11, 50, 3)), 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			net := newTestNetPer(t, 3, map[NodeID][]testOpt{
				1: {withLog(tt.leader...), withTerm(5)},
				2: {withLog(tt.follower...), withTerm(5)},
				3: {withLog(tt.leader...), withTerm(5)},
			})
			net.elect(1)
			rejections := len(net.deliveredMatching(MsgAppResp, 2, true))
			require.Positive(t, rejections, "the follower's log should have diverged")
			require.LessOrEqual(t, rejections, tt.maxRejection)
			require.Equal(t, logTerms(net.nodes[1]), logTerms(net.nodes[2]))
			require.Equal(t, net.nodes[1].raftLog.lastIndex(), net.nodes[1].raftLog.committed)
		})
	}
}

// Thesis §9.6: a PreVote round changes no term. The pre-candidate keeps its
// term and vote, asks for term+1 without persisting anything, and voters keep
// theirs whatever they answer.
func TestPreVote_DoesNotBumpTerm(t *testing.T) {
	net := newTestNetPer(t, 3, map[NodeID][]testOpt{
		// Node 1's log is behind: it will lose the pre-vote.
		1: {withLog(1), withTerm(2)},
		2: {withLog(1, 2), withTerm(2)},
		3: {withLog(1, 2), withTerm(2)},
	}, withPreVote())
	n1 := net.nodes[1]
	for i := 0; i < 2*testElectionTicks && n1.role == RoleFollower; i++ {
		n1.tick()
	}
	require.Equal(t, RolePreCandidate, n1.role)
	require.Equal(t, uint64(2), n1.term)
	require.False(t, n1.hasPersistWork(), "a pre-vote must not touch the disk")
	pre := filterMsgs(n1.takeMessages(), MsgPreVote, 0)
	require.Len(t, pre, 2)
	for _, m := range pre {
		require.Equal(t, uint64(3), m.Term, "pre-vote asks for the term it would campaign in")
	}

	net.deliver(pre...)
	rejects := net.deliveredMatching(MsgPreVoteResp, 0, true)
	require.Len(t, rejects, 2, "both voters have a longer log")
	require.Equal(t, RoleFollower, n1.role, "a lost pre-vote returns to follower")
	for _, id := range ids(3) {
		require.Equal(t, uint64(2), net.nodes[id].term, "node %d", id)
		require.Equal(t, NodeID(0), net.nodes[id].vote, "node %d", id)
	}
}

// Thesis §9.6 and §4.2.3: a node partitioned away keeps timing out, but with
// PreVote its term never rises, so when it rejoins the leader keeps leading.
func TestPreVote_PartitionedNodeDoesNotDisruptLeader(t *testing.T) {
	net := newTestNet(t, 3, withPreVote(), withCheckQuorum())
	net.elect(1)
	term := net.nodes[1].term

	net.isolated[3] = true
	for i := 0; i < 5*testElectionTicks; i++ {
		net.tick()
		net.propose(1, []byte("during partition"))
		net.stabilize()
	}
	require.Equal(t, term, net.nodes[3].term, "the partitioned node raised its term")

	net.isolated[3] = false
	for i := 0; i < 3*testElectionTicks; i++ {
		net.tick()
	}
	require.Equal(t, RoleLeader, net.nodes[1].role)
	require.Equal(t, term, net.nodes[1].term)
	require.True(t, net.agreeOn(1))
}

// Thesis §6.2: with CheckQuorum, a leader that has not heard from a majority
// within an election timeout steps down; one that has, stays.
func TestCheckQuorum_LeaderStepsDown(t *testing.T) {
	net := newTestNet(t, 3, withCheckQuorum())
	net.elect(1)
	for i := 0; i < 3*testElectionTicks; i++ {
		net.tick(1)
	}
	require.Equal(t, RoleLeader, net.nodes[1].role, "a leader with a live quorum stepped down")

	net.isolated[2], net.isolated[3] = true, true
	steppedDown := 0
	for i := 1; i <= 2*testElectionTicks && steppedDown == 0; i++ {
		net.tick(1)
		if net.nodes[1].role != RoleLeader {
			steppedDown = i
		}
	}
	require.NotZero(t, steppedDown, "isolated leader still leads after 2 election timeouts")
	require.Equal(t, RoleFollower, net.nodes[1].role)
	require.Equal(t, NodeID(0), net.nodes[1].lead)
}

// Pitfall 10 (hashicorp/raft#503): a leader whose own disk has not completed a
// write for an election timeout steps down, instead of heartbeating forever.
// A leader whose disk keeps up does not.
func TestLeader_StepsDownWhenDiskStalls(t *testing.T) {
	c := newTestCore(t, 1, ids(3))
	electStandalone(t, c)
	for i := 0; i < 3*testElectionTicks; i++ {
		c.tick()
		drain(t, c)
	}
	require.Equal(t, RoleLeader, c.role, "a leader with a healthy disk stepped down")

	_, _, err := c.propose([]Entry{{Data: []byte("x")}})
	require.NoError(t, err)
	c.takeMessages()
	c.readyToPersist() // handed to a disk that never completes
	for i := 1; i < testElectionTicks; i++ {
		c.tick()
		require.Equal(t, RoleLeader, c.role, "stepped down after only %d ticks", i)
	}
	c.tick()
	require.Equal(t, RoleFollower, c.role)
	c.takeMessages()
	for i := 0; i < testElectionTicks-1; i++ {
		c.tick()
		require.Empty(t, filterMsgs(c.takeMessages(), MsgHeartbeat, 0), "heartbeats after stepping down")
	}
}

// replicatingLeader returns leader 1 of a 3-node cluster (peer cores absent)
// whose progress for both followers is in stateReplicate at the no-op.
func replicatingLeader(t *testing.T, opts ...testOpt) *core {
	c := newTestCore(t, 1, ids(3), opts...)
	electStandalone(t, c)
	for _, p := range []NodeID{2, 3} {
		stepOK(t, c, Message{Type: MsgAppResp, From: p, To: 1, Term: c.term, Index: 1})
		require.Equal(t, stateReplicate, c.prs[p].state)
	}
	drain(t, c)
	return c
}

// Thesis §10.2.1: pipelining. Towards a follower in replicate state the leader
// keeps several MsgApps in flight, bounded both in messages and in bytes
// (pitfall 17); an acknowledgement reopens the window.
func TestPipelining_WindowBoundedInMessagesAndBytes(t *testing.T) {
	tests := []struct {
		name      string
		maxMsgs   int
		maxBytes  int
		entrySize int
		wantSent  int
	}{
		{"bounded by messages", 3, 1 << 20, 10, 3},
		// Each message is 64+24+300 = 388 bytes; the window closes once 1000
		// bytes are in flight, i.e. after the third.
		{"bounded by bytes", 100, 1000, 300, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := replicatingLeader(t, withConfig(func(cc *coreConfig) {
				cc.maxInflightMsgs, cc.maxInflightBytes = tt.maxMsgs, tt.maxBytes
			}))
			var sent []Message
			for i := 0; i < 10; i++ {
				_, _, err := c.propose([]Entry{{Data: make([]byte, tt.entrySize)}})
				require.NoError(t, err)
				sent = append(sent, filterMsgs(drain(t, c), MsgApp, 2)...)
			}
			require.Len(t, sent, tt.wantSent)
			bytes := 0
			for _, m := range sent {
				bytes += m.Size()
			}
			require.LessOrEqual(t, bytes-sent[len(sent)-1].Size(), tt.maxBytes,
				"the window was already full before the last message")
			require.True(t, c.prs[2].isPaused())

			// An ack for the first message reopens the window, and the backlog
			// goes out.
			stepOK(t, c, Message{Type: MsgAppResp, From: 2, To: 1, Term: c.term, Index: sent[0].Entries[0].Index})
			more := filterMsgs(drain(t, c), MsgApp, 2)
			require.NotEmpty(t, more)
			require.Equal(t, sent[len(sent)-1].Entries[0].Index+1, more[0].Entries[0].Index)
		})
	}
}

// §5.3 and pitfall 14: on a rejection the leader stops streaming, falls back
// to probing from what the follower is known to hold, one message at a time,
// and resumes streaming once a probe succeeds.
func TestPipelining_FallsBackToProbeOnReject(t *testing.T) {
	c := replicatingLeader(t)
	var sent []Message
	for i := 0; i < 3; i++ {
		_, _, err := c.propose([]Entry{{Data: []byte("x")}})
		require.NoError(t, err)
		sent = append(sent, filterMsgs(drain(t, c), MsgApp, 2)...)
	}
	require.Len(t, sent, 3)
	pr := c.prs[2]
	require.Equal(t, stateReplicate, pr.state)

	// The follower lost entry 2 (it restarted before syncing): it rejects
	// the second message, whose prevIndex is 2.
	stepOK(t, c, Message{Type: MsgAppResp, From: 2, To: 1, Term: c.term, Index: sent[1].Index,
		Reject: true, ConflictIndex: 2})
	require.Equal(t, stateProbe, pr.state)
	require.Equal(t, 0, pr.inflight.count)
	require.Equal(t, uint64(2), pr.next)
	probes := filterMsgs(drain(t, c), MsgApp, 2)
	require.Len(t, probes, 1)
	require.Equal(t, uint64(1), probes[0].Index)

	// A stale rejection of an earlier message changes nothing.
	stepOK(t, c, Message{Type: MsgAppResp, From: 2, To: 1, Term: c.term, Index: sent[2].Index, Reject: true, ConflictIndex: 2})
	require.Equal(t, uint64(2), pr.next)

	// While the probe is outstanding, new proposals do not go to 2.
	_, _, err := c.propose([]Entry{{Data: []byte("y")}})
	require.NoError(t, err)
	require.Empty(t, filterMsgs(drain(t, c), MsgApp, 2))

	// The probe succeeds: stream again from there.
	stepOK(t, c, Message{Type: MsgAppResp, From: 2, To: 1, Term: c.term, Index: probes[0].Entries[len(probes[0].Entries)-1].Index})
	require.Equal(t, stateReplicate, pr.state)
	rest := filterMsgs(drain(t, c), MsgApp, 2)
	require.NotEmpty(t, rest)
	require.Equal(t, c.raftLog.lastIndex(), rest[len(rest)-1].Entries[len(rest[len(rest)-1].Entries)-1].Index)
}

// Pitfall 17 (etcd-io/etcd#14624): a leader bounds the bytes of entries it has
// appended in its term and not yet committed. The bound holds to within one
// batch (Config.MaxUncommittedBytes): a batch is accepted while the
// outstanding bytes are at most the bound and refused with ErrBusy once they
// are past it; commits release the budget.
func TestUncommittedBytesBound(t *testing.T) {
	const bound = 1000
	c := replicatingLeader(t, withConfig(func(cc *coreConfig) { cc.maxUncommittedBytes = bound }))
	prop := func(n int) error {
		_, _, err := c.propose([]Entry{{Data: make([]byte, n)}})
		drain(t, c)
		return err
	}
	// Each entry costs its data plus entryHeaderBytes, so empty entries are
	// not free.
	cost := func(n int) int { return n + entryHeaderBytes }
	require.NoError(t, prop(600))
	require.False(t, c.canAcceptBytes(bound-cost(600)+1))
	require.True(t, c.canAcceptBytes(bound-cost(600)))
	require.NoError(t, prop(600), "accepted while at most the bound is outstanding")
	require.Equal(t, 2*cost(600), c.uncommittedBytes)
	require.ErrorIs(t, prop(1), ErrBusy)
	require.False(t, c.canAcceptBytes(0))
	require.LessOrEqual(t, c.uncommittedBytes-cost(600), bound, "the bound is exceeded by more than one batch")

	// Follower 2 acknowledges everything: it all commits, the budget is free.
	stepOK(t, c, Message{Type: MsgAppResp, From: 2, To: 1, Term: c.term, Index: c.raftLog.lastIndex()})
	require.Equal(t, c.raftLog.lastIndex(), c.raftLog.committed)
	require.Equal(t, 0, c.uncommittedBytes)
	require.NoError(t, prop(1500), "a single batch over the bound goes when nothing is outstanding")
	require.ErrorIs(t, prop(1), ErrBusy)
	require.Equal(t, cost(1500), c.uncommittedBytes)
}

// Invariant 8 and pitfall 5: durability is acknowledged by (index, term). An
// acknowledgement for a batch whose last entry has since been replaced by an
// entry of another term does not make the replacement durable.
func TestDurableAckByIndexAndTerm(t *testing.T) {
	c := newTestCore(t, 1, ids(3))
	// Leader 2 of term 1 sends entries 1-3; they go to the disk.
	stepOK(t, c, Message{Type: MsgApp, From: 2, To: 1, Term: 1, Index: 0, LogTerm: 0,
		Entries: []Entry{{Index: 1, Term: 1}, {Index: 2, Term: 1}, {Index: 3, Term: 1}}})
	old := c.readyToPersist()
	require.Len(t, old.entries, 3)

	// Before that write completes, leader 3 of term 2 replaces 2-3.
	stepOK(t, c, Message{Type: MsgApp, From: 3, To: 1, Term: 2, Index: 1, LogTerm: 1,
		Entries: []Entry{{Index: 2, Term: 2}, {Index: 3, Term: 2}}})
	require.Equal(t, []uint64{1, 2, 2}, logTerms(c))
	repl := c.readyToPersist()
	require.Equal(t, uint64(2), repl.truncateFrom)

	c.persisted(old.num)
	require.Less(t, c.raftLog.durable, uint64(2), "a stale ack made a term-2 entry durable")

	c.persisted(repl.num)
	require.Equal(t, uint64(3), c.raftLog.durable)
}

// TestRestart_EntriesSurvivedButHardStateLost: a crash kept the entries of a
// persist batch but not the hard state written after them, so the log's last
// term is above the persisted term. The node starts (the state is a legal
// crash outcome, not corruption), in the entries' term with no vote, and its
// first batch makes that term durable before any message that depends on it.
// Found by the simulator (seed 22 of its first run).
func TestRestart_EntriesSurvivedButHardStateLost(t *testing.T) {
	c := newTestCore(t, 1, ids(3), withEntries(Entry{Index: 1, Term: 1}, Entry{Index: 2, Term: 3}),
		withHardState(HardState{Term: 2, Vote: 2, Commit: 1}))
	require.Equal(t, uint64(3), c.term)
	require.Equal(t, NodeID(0), c.vote, "the vote was for term 2, not the adopted term")
	require.Equal(t, uint64(1), c.raftLog.committed)
	require.True(t, c.hasPersistWork())
	b := c.readyToPersist()
	require.True(t, b.saveHardState)
	require.True(t, b.mustSync)
	require.Equal(t, HardState{Term: 3, Commit: 1}, b.hardState)
}
