package raft

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Gateway checks: a message from the network is input, not an invariant.
// Malformed messages are rejected with an error and change nothing; none
// may panic, hang or corrupt the log.

func TestAppend_RejectsMalformedEntries(t *testing.T) {
	tests := []struct {
		name string
		m    Message
	}{
		{"index gap after a new entry", Message{Term: 2, Index: 1, LogTerm: 1,
			Entries: []Entry{{Index: 2, Term: 2}, {Index: 7, Term: 2}}}},
		{"first index does not follow prev", Message{Term: 2, Index: 1, LogTerm: 1,
			Entries: []Entry{{Index: 3, Term: 2}}}},
		{"entry term above message term", Message{Term: 2, Index: 1, LogTerm: 1,
			Entries: []Entry{{Index: 2, Term: 9}}}},
		{"entry term below prev term", Message{Term: 3, Index: 1, LogTerm: 2,
			Entries: []Entry{{Index: 2, Term: 1}}}},
		{"decreasing entry terms", Message{Term: 3, Index: 1, LogTerm: 1,
			Entries: []Entry{{Index: 2, Term: 3}, {Index: 3, Term: 2}}}},
		{"prev index 0 with a term", Message{Term: 2, Index: 0, LogTerm: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCore(t, 1, ids(3), withLog(1, 1))
			m := tt.m
			m.Type, m.From, m.To = MsgApp, 2, 1
			before := logTerms(c)
			require.Error(t, c.step(m))
			require.Equal(t, before, logTerms(c), "the log must not change")
			require.NoError(t, c.checkInvariants())
		})
	}
}

// A MsgApp with prev index 0 and a nonzero prev term once sent conflictHint
// into a loop over 2^64 indexes; both must return at once.
func TestAppend_ConflictHintAtIndexZeroReturns(t *testing.T) {
	c := newTestCore(t, 1, ids(3))
	done := make(chan error, 1)
	go func() { // owner: this test; exits when both calls return
		c.raftLog.conflictHint(0)
		done <- c.step(Message{Type: MsgApp, From: 2, To: 1, Term: 1, Index: 0, LogTerm: 5})
	}()
	select {
	case err := <-done:
		require.Error(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("conflictHint or step did not return")
	}
}

// Pitfall 17: the uncommitted budget charges each entry's overhead, so even
// empty commands cannot grow the log without bound.
func TestUncommittedBytesChargesEntryOverhead(t *testing.T) {
	c := newTestCore(t, 1, ids(3), withConfig(func(cc *coreConfig) { cc.maxUncommittedBytes = 1024 }))
	electStandalone(t, c)
	accepted := 0
	for ; accepted < 100000; accepted++ {
		if _, _, err := c.propose([]Entry{{Type: EntryNormal}}); err != nil {
			require.ErrorIs(t, err, ErrBusy)
			break
		}
		c.takeMessages()
	}
	require.LessOrEqual(t, accepted, 1024/entryHeaderBytes+1, "empty entries must be charged")
}

// Thesis §9.6: a PreVote grant answers one round. A delayed grant from an
// earlier round (asking for the term the node is now at) must not count in
// a round that asks for the next term.
func TestPreVote_IgnoresStaleGrant(t *testing.T) {
	c := newTestCore(t, 1, ids(3), withPreVote(), withCheckQuorum(), withTerm(1))
	stepOK(t, c, Message{Type: MsgHeartbeat, From: 3, To: 1, Term: 2})
	drain(t, c)
	for i := 0; i < 3*testElectionTicks && c.role != RolePreCandidate; i++ {
		c.tick()
	}
	require.Equal(t, RolePreCandidate, c.role)
	require.Equal(t, uint64(2), c.term)
	stepOK(t, c, Message{Type: MsgPreVoteResp, From: 2, To: 1, Term: 2}) // asked for term 2, long ago
	require.Equal(t, RolePreCandidate, c.role, "a stale grant won the PreVote")
	stepOK(t, c, Message{Type: MsgPreVoteResp, From: 2, To: 1, Term: 3}) // this round's grant
	require.Equal(t, RoleCandidate, c.role)
	require.Equal(t, uint64(3), c.term)
}
