package raft

import (
	"fmt"
	"log/slog"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// Helpers for driving the deterministic core in unit tests: building a core,
// draining its two output routes, a tiny synchronous network in the spirit of
// etcd-io/raft's `network` harness, and election shortcuts.

// Default test timing: an election timeout of 10 ticks and a heartbeat every
// tick, as the runtime configures it.
const (
	testElectionTicks  = 10
	testHeartbeatTicks = 1
)

// testSetup is what a testOpt may change before newCore runs.
type testSetup struct {
	cfg coreConfig
	st  PersistentState
}

type testOpt func(*testSetup)

func defaultTestSetup() testSetup {
	return testSetup{cfg: coreConfig{
		electionTicks:       testElectionTicks,
		heartbeatTicks:      testHeartbeatTicks,
		maxMsgBytes:         1 << 20,
		maxInflightMsgs:     4,
		maxInflightBytes:    8 << 20,
		maxUncommittedBytes: 64 << 20,
		seed:                1,
	}}
}

func withPreVote() testOpt     { return func(s *testSetup) { s.cfg.preVote = true } }
func withCheckQuorum() testOpt { return func(s *testSetup) { s.cfg.checkQuorum = true } }
func withConfig(f func(*coreConfig)) testOpt {
	return func(s *testSetup) { f(&s.cfg) }
}

// withLog loads entries 1..len(terms) with the given terms and raises the
// persisted term to the last one if it is lower.
func withLog(terms ...uint64) testOpt {
	return func(s *testSetup) {
		s.st.Entries = nil
		for i, tm := range terms {
			s.st.Entries = append(s.st.Entries, Entry{Index: uint64(i) + 1, Term: tm})
		}
		if n := len(terms); n > 0 && s.st.HardState.Term < terms[n-1] {
			s.st.HardState.Term = terms[n-1]
		}
	}
}

// withEntries loads the given entries as the log.
func withEntries(ents ...Entry) testOpt {
	return func(s *testSetup) {
		s.st.Entries = ents
		if n := len(ents); n > 0 && s.st.HardState.Term < ents[n-1].Term {
			s.st.HardState.Term = ents[n-1].Term
		}
	}
}

// withHardState sets the persisted hard state (apply it after withLog).
func withHardState(hs HardState) testOpt { return func(s *testSetup) { s.st.HardState = hs } }

// withTerm sets the persisted term (apply it after withLog).
func withTerm(term uint64) testOpt { return func(s *testSetup) { s.st.HardState.Term = term } }

// newTestCore builds a core as newCore would after loading the state the
// options describe. It logs nowhere.
func newTestCore(t *testing.T, id NodeID, peers []NodeID, opts ...testOpt) *core {
	t.Helper()
	s := defaultTestSetup()
	for _, o := range opts {
		o(&s)
	}
	c, err := newCore(id, peers, s.cfg, s.st, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.NoError(t, c.checkInvariants())
	return c
}

// ids returns 1..n.
func ids(n int) []NodeID {
	out := make([]NodeID, n)
	for i := range out {
		out[i] = NodeID(i + 1)
	}
	return out
}

// persistAll hands everything pending to a perfect disk: each batch is
// reported durable at once. It returns the messages released by durability.
func persistAll(t *testing.T, c *core) []Message {
	t.Helper()
	var out []Message
	for i := 0; c.hasPersistWork(); i++ {
		require.Less(t, i, 100, "persist work never ends")
		b := c.readyToPersist()
		c.persisted(b.num)
		out = append(out, b.afterDurable...)
	}
	return out
}

// drain collects every outgoing message of c from both routes, completing
// persistence as a perfect disk would, until c has nothing more to say.
func drain(t *testing.T, c *core) []Message {
	t.Helper()
	var out []Message
	for i := 0; ; i++ {
		require.Less(t, i, 100, "core never goes quiet")
		now := c.takeMessages()
		out = append(out, now...)
		if c.hasPersistWork() {
			out = append(out, persistAll(t, c)...)
			continue
		}
		if len(now) == 0 {
			return out
		}
	}
}

// filterMsgs returns the messages of type typ (any type if 0) to `to` (anyone if 0).
func filterMsgs(msgs []Message, typ MessageType, to NodeID) []Message {
	var out []Message
	for _, m := range msgs {
		if (typ == 0 || m.Type == typ) && (to == 0 || m.To == to) {
			out = append(out, m)
		}
	}
	return out
}

// stepOK steps m into c and checks c's invariants.
func stepOK(t *testing.T, c *core, m Message) {
	t.Helper()
	require.NoError(t, c.step(m))
	require.NoError(t, c.checkInvariants())
}

// electStandalone makes a lone core leader by campaigning and stepping grants
// from its peers as if they had voted for it, then persists and discards all
// output. The peers' cores do not exist.
func electStandalone(t *testing.T, c *core) {
	t.Helper()
	c.campaign()
	if c.role == RolePreCandidate {
		next := c.term + 1
		for _, p := range c.peers {
			if p != c.id && c.role == RolePreCandidate {
				stepOK(t, c, Message{Type: MsgPreVoteResp, From: p, To: c.id, Term: next})
			}
		}
	}
	for _, p := range c.peers {
		if p != c.id && c.role == RoleCandidate {
			stepOK(t, c, Message{Type: MsgVoteResp, From: p, To: c.id, Term: c.term})
		}
	}
	require.Equal(t, RoleLeader, c.role)
	drain(t, c)
}

// logTerms returns the terms of c's log, index 1 first.
func logTerms(c *core) []uint64 {
	var out []uint64
	for i := uint64(1); i <= c.raftLog.lastIndex(); i++ {
		tm, _ := c.raftLog.term(i)
		out = append(out, tm)
	}
	return out
}

// testNet delivers messages between cores synchronously, in FIFO order, until
// the network is quiet. Disks are perfect unless a node's disk is stalled.
// After every step it checks each core's invariants and Election Safety (at
// most one leader per term, Figure 3).
type testNet struct {
	t     *testing.T
	ids   []NodeID
	nodes map[NodeID]*core

	// drop, when set, decides whether a message is lost. isolated nodes
	// neither send nor receive.
	drop     func(m Message) bool
	isolated map[NodeID]bool
	// stalled nodes hand batches to their disk, which never completes them;
	// held keeps those batches so unstall can complete them.
	stalled map[NodeID]bool
	held    map[NodeID][]*persistBatch

	// delivered records every message stepped into a node, in order.
	delivered []Message
	leaders   map[uint64]NodeID
}

// newTestNet builds a cluster of n nodes, all with the same options.
func newTestNet(t *testing.T, n int, opts ...testOpt) *testNet {
	return newTestNetPer(t, n, nil, opts...)
}

// newTestNetPer builds a cluster of n nodes; per adds options for some nodes
// (applied after the common ones).
func newTestNetPer(t *testing.T, n int, per map[NodeID][]testOpt, common ...testOpt) *testNet {
	t.Helper()
	net := &testNet{
		t: t, ids: ids(n), nodes: map[NodeID]*core{},
		isolated: map[NodeID]bool{}, stalled: map[NodeID]bool{},
		held: map[NodeID][]*persistBatch{}, leaders: map[uint64]NodeID{},
	}
	for _, id := range net.ids {
		net.nodes[id] = newTestCore(t, id, net.ids, append(slices.Clone(common), per[id]...)...)
	}
	return net
}

// outbox takes what node id would put on the wire now. It also plays the
// runtime's part in snapshot transfers: a snapshot the core asks to send
// goes out as one MsgSnap chunk (Done) naming the sender's snapshot, and a
// chunk the receiving core accepts is committed and installed at once.
func (net *testNet) outbox(id NodeID) []Message {
	c := net.nodes[id]
	if !net.stalled[id] {
		var out []Message
		for i := 0; ; i++ {
			require.Less(net.t, i, 100, "snapshot hand-offs never end")
			out = append(out, drain(net.t, c)...)
			sends, chunks := c.takeSnapshotSends(), c.takeSnapshotChunks()
			for _, s := range sends {
				out = append(out, Message{Type: MsgSnap, From: id, To: s.to, Term: c.term,
					Index: s.meta.Index, LogTerm: s.meta.Term, Done: true})
			}
			for _, m := range chunks {
				if m.Done {
					c.installSnapshot(SnapshotMeta{Index: m.Index, Term: m.LogTerm}, m.From)
				}
			}
			if len(sends) == 0 && len(chunks) == 0 {
				return out
			}
		}
	}
	msgs := c.takeMessages()
	if c.hasPersistWork() {
		net.held[id] = append(net.held[id], c.readyToPersist())
	}
	return msgs
}

func (net *testNet) lost(m Message) bool {
	return net.isolated[m.From] || net.isolated[m.To] || (net.drop != nil && net.drop(m))
}

// deliver steps the given messages, then keeps delivering what they cause
// until no node has anything to send.
func (net *testNet) deliver(msgs ...Message) {
	net.t.Helper()
	queue := msgs
	for round := 0; ; round++ {
		require.Less(net.t, round, 1000, "network never goes quiet")
		for _, id := range net.ids {
			queue = append(queue, net.outbox(id)...)
		}
		if len(queue) == 0 {
			return
		}
		batch := queue
		queue = nil
		for _, m := range batch {
			if net.lost(m) {
				continue
			}
			net.delivered = append(net.delivered, m)
			require.NoError(net.t, net.nodes[m.To].step(m), "step %s %d->%d", m.Type, m.From, m.To)
			net.check()
		}
	}
}

// stabilize delivers until the network is quiet.
func (net *testNet) stabilize() { net.t.Helper(); net.deliver() }

// tick ticks the given nodes (every node if none) once, then stabilizes.
func (net *testNet) tick(which ...NodeID) {
	net.t.Helper()
	if len(which) == 0 {
		which = net.ids
	}
	for _, id := range which {
		net.nodes[id].tick()
	}
	net.check()
	net.stabilize()
}

// check verifies every node's own invariants and Election Safety.
func (net *testNet) check() {
	net.t.Helper()
	for _, id := range net.ids {
		c := net.nodes[id]
		require.NoError(net.t, c.checkInvariants(), "node %d", id)
		if c.role == RoleLeader {
			if l, ok := net.leaders[c.term]; ok {
				require.Equal(net.t, l, id, "two leaders in term %d", c.term)
			}
			net.leaders[c.term] = id
		}
	}
}

// elect makes node id campaign now and requires it to win.
func (net *testNet) elect(id NodeID) {
	net.t.Helper()
	net.nodes[id].campaign()
	net.stabilize()
	require.Equal(net.t, RoleLeader, net.nodes[id].role, "node %d did not win", id)
}

// leader returns the node that is leader in the highest term, or 0.
func (net *testNet) leader() NodeID {
	var best NodeID
	for _, id := range net.ids {
		c := net.nodes[id]
		if c.role == RoleLeader && (best == 0 || c.term > net.nodes[best].term) {
			best = id
		}
	}
	return best
}

// tickUntilLeader ticks every node until some node other than not is leader
// and every node agrees on it, for at most maxTicks; it returns the leader.
func (net *testNet) tickUntilLeader(maxTicks int, not NodeID) NodeID {
	net.t.Helper()
	for i := 0; i < maxTicks; i++ {
		net.tick()
		if l := net.leader(); l != 0 && l != not && net.agreeOn(l) {
			return l
		}
	}
	net.t.Fatalf("no leader after %d ticks: %s", maxTicks, net)
	return 0
}

// agreeOn reports whether every reachable node follows lead in lead's term.
func (net *testNet) agreeOn(lead NodeID) bool {
	term := net.nodes[lead].term
	for _, id := range net.ids {
		c := net.nodes[id]
		if net.isolated[id] {
			continue
		}
		if c.term != term || c.lead != lead {
			return false
		}
	}
	return true
}

// propose proposes one entry with data on the leader id.
func (net *testNet) propose(id NodeID, data []byte) uint64 {
	net.t.Helper()
	idx, _, err := net.nodes[id].propose([]Entry{{Type: EntryNormal, Data: data}})
	require.NoError(net.t, err)
	return idx
}

// unstall completes every batch the node's disk was holding.
func (net *testNet) unstall(id NodeID) {
	net.t.Helper()
	net.stalled[id] = false
	var msgs []Message
	for _, b := range net.held[id] {
		net.nodes[id].persisted(b.num)
		msgs = append(msgs, b.afterDurable...)
	}
	net.held[id] = nil
	net.deliver(msgs...)
}

// deliveredMatching returns the delivered messages of type typ from `from`
// (anyone if 0) whose Reject flag equals reject.
func (net *testNet) deliveredMatching(typ MessageType, from NodeID, reject bool) []Message {
	var out []Message
	for _, m := range net.delivered {
		if m.Type == typ && (from == 0 || m.From == from) && m.Reject == reject {
			out = append(out, m)
		}
	}
	return out
}

func (net *testNet) String() string {
	s := ""
	for _, id := range net.ids {
		c := net.nodes[id]
		s += fmt.Sprintf("[%d %s term=%d lead=%d last=%d commit=%d] ", id, c.role, c.term, c.lead,
			c.raftLog.lastIndex(), c.raftLog.committed)
	}
	return s
}
