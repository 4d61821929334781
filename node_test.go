package raft_test

// The Node API and bad input: Config validation, corrupt persisted state,
// the errors of Propose and ProposeWait, Stop, Status, a failing or
// stalled disk (pitfall 10), messages from strangers, the apply backlog
// bound and ProposeWait on a deposed leader (pitfall 18). Real-time tests
// use generous deadlines and never assert speed: "promptly" means well
// within nodeWait.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/rafttest"
)

// nodeWait bounds every wait of these tests.
const nodeWait = 10 * time.Second

var errNodeDisk = errors.New("node test: disk failed")

// nodeNopTransport is a Transport that loses everything.
type nodeNopTransport struct{}

func (nodeNopTransport) Send(raft.Message)            {}
func (nodeNopTransport) Receive() <-chan raft.Message { return nil }

func nodeValidConfig() raft.Config {
	return raft.Config{ID: 1, Peers: []raft.NodeID{1, 2, 3}, Transport: nodeNopTransport{}, Persister: raft.NewMemoryPersister()}
}

// nodeConfigFields returns the Field of every *ConfigError in err's tree.
func nodeConfigFields(err error) []string {
	var out []string
	var walk func(error)
	walk = func(e error) {
		var ce *raft.ConfigError
		if errors.As(e, &ce) && e == error(ce) {
			out = append(out, ce.Field)
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
		}
	}
	walk(err)
	slices.Sort(out)
	return slices.Compact(out)
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(c *raft.Config)
		want []string // the invalid fields, sorted; nil for a valid config
	}{
		{"minimal", func(c *raft.Config) {}, nil},
		{"single voter", func(c *raft.Config) { c.Peers = []raft.NodeID{1} }, nil},
		{"election timeout exactly twice heartbeat", func(c *raft.Config) {
			c.ElectionTimeout, c.HeartbeatInterval = 200*time.Millisecond, 100*time.Millisecond
		}, nil},
		{"uncommitted bytes equal to entry size", func(c *raft.Config) { c.MaxEntrySize, c.MaxUncommittedBytes = 100, 100 }, nil},
		{"zero ID", func(c *raft.Config) { c.ID = 0 }, []string{"ID", "Peers"}},
		{"ID not in Peers", func(c *raft.Config) { c.ID = 4 }, []string{"Peers"}},
		{"no Peers", func(c *raft.Config) { c.Peers = nil }, []string{"Peers"}},
		{"duplicate peer", func(c *raft.Config) { c.Peers = []raft.NodeID{1, 2, 2} }, []string{"Peers"}},
		{"zero peer", func(c *raft.Config) { c.Peers = []raft.NodeID{1, 0, 2} }, []string{"Peers"}},
		{"negative ElectionTimeout", func(c *raft.Config) { c.ElectionTimeout = -time.Second }, []string{"ElectionTimeout"}},
		{"negative HeartbeatInterval", func(c *raft.Config) { c.HeartbeatInterval = -time.Second }, []string{"HeartbeatInterval"}},
		{"ElectionTimeout below twice HeartbeatInterval", func(c *raft.Config) {
			c.ElectionTimeout, c.HeartbeatInterval = 150*time.Millisecond, 100*time.Millisecond
		}, []string{"ElectionTimeout"}},
		{"default ElectionTimeout below twice HeartbeatInterval", func(c *raft.Config) {
			c.HeartbeatInterval = 600 * time.Millisecond
		}, []string{"ElectionTimeout"}},
		{"nil Transport", func(c *raft.Config) { c.Transport = nil }, []string{"Transport"}},
		{"nil Persister", func(c *raft.Config) { c.Persister = nil }, []string{"Persister"}},
		{"negative MaxEntrySize", func(c *raft.Config) { c.MaxEntrySize = -1 }, []string{"MaxEntrySize"}},
		{"negative MaxMsgBytes", func(c *raft.Config) { c.MaxMsgBytes = -1 }, []string{"MaxMsgBytes"}},
		{"negative MaxInflightMsgs", func(c *raft.Config) { c.MaxInflightMsgs = -1 }, []string{"MaxInflightMsgs"}},
		{"negative MaxInflightBytes", func(c *raft.Config) { c.MaxInflightBytes = -1 }, []string{"MaxInflightBytes"}},
		{"negative MaxUncommittedBytes", func(c *raft.Config) { c.MaxUncommittedBytes = -1 }, []string{"MaxUncommittedBytes"}},
		{"negative MaxApplyBacklog", func(c *raft.Config) { c.MaxApplyBacklog = -1 }, []string{"MaxApplyBacklog"}},
		{"MaxUncommittedBytes below MaxEntrySize", func(c *raft.Config) {
			c.MaxEntrySize, c.MaxUncommittedBytes = 2<<20, 1<<20
		}, []string{"MaxUncommittedBytes"}},
		{"MaxUncommittedBytes below default MaxEntrySize", func(c *raft.Config) { c.MaxUncommittedBytes = 1000 }, []string{"MaxUncommittedBytes"}},
		{"MaxEntrySize above default MaxUncommittedBytes", func(c *raft.Config) { c.MaxEntrySize = 128 << 20 }, []string{"MaxUncommittedBytes"}},
		{"several at once", func(c *raft.Config) {
			c.Transport, c.Persister, c.MaxInflightMsgs = nil, nil, -4
		}, []string{"MaxInflightMsgs", "Persister", "Transport"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := nodeValidConfig()
			tt.mod(&cfg)
			peers := slices.Clone(cfg.Peers)
			before := cfg
			err := cfg.Validate()
			require.Equal(t, peers, cfg.Peers, "Validate modified Peers")
			require.Equal(t, fmt.Sprint(before), fmt.Sprint(cfg), "Validate modified the config")
			if tt.want == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, raft.ErrInvalidConfig)
			var ce *raft.ConfigError
			require.ErrorAs(t, err, &ce)
			require.Contains(t, tt.want, ce.Field)
			require.Contains(t, ce.Error(), ce.Field)
			require.Equal(t, tt.want, nodeConfigFields(err), "fields reported by %v", err)
		})
	}
}

func TestConfigZeroInvalidMinimalValid(t *testing.T) {
	var zero raft.Config
	err := zero.Validate()
	require.ErrorIs(t, err, raft.ErrInvalidConfig)
	require.Equal(t, []string{"ID", "Peers", "Persister", "Transport"}, nodeConfigFields(err),
		"Validate reports every problem at once")

	minimal := raft.Config{ID: 2, Peers: []raft.NodeID{1, 2, 3}, Transport: nodeNopTransport{}, Persister: raft.NewMemoryPersister()}
	require.NoError(t, minimal.Validate())
}

// TestConfigElectionTimeoutBelowDefaultHeartbeat: ElectionTimeout "must be
// at least 2*HeartbeatInterval", whose zero value means 100ms.
func TestConfigElectionTimeoutBelowDefaultHeartbeat(t *testing.T) {
	cfg := nodeValidConfig()
	cfg.Peers = []raft.NodeID{1}
	cfg.ElectionTimeout = 50 * time.Millisecond // HeartbeatInterval left zero: 100ms
	err := cfg.Validate()
	if err == nil {
		var panicked any
		func() {
			defer func() { panicked = recover() }()
			if n, err := raft.NewNode(cfg); err == nil {
				n.Stop()
			}
		}()
		t.Fatalf("Config{ElectionTimeout: 50ms} with HeartbeatInterval zero (default 100ms) passes Validate; "+
			"NewNode then panics: %v", panicked)
	}
	require.ErrorIs(t, err, raft.ErrInvalidConfig)
	require.Equal(t, []string{"ElectionTimeout"}, nodeConfigFields(err))
}

func TestNodeNewInvalidConfigStartsNothing(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cfg := nodeValidConfig()
	cfg.ID = 0
	n, err := raft.NewNode(cfg)
	require.ErrorIs(t, err, raft.ErrInvalidConfig)
	require.Nil(t, n)
}

// nodeStatePersister is a Persister whose Load returns st, or err.
type nodeStatePersister struct {
	*raft.MemoryPersister
	st  raft.PersistentState
	err error
}

func (p nodeStatePersister) Load() (raft.PersistentState, error) { return p.st, p.err }

func TestNodeNewCorruptState(t *testing.T) {
	e := func(index, term uint64) raft.Entry { return raft.Entry{Index: index, Term: term} }
	tests := []struct {
		name string
		hs   raft.HardState
		ents []raft.Entry
	}{
		{"gap in entries", raft.HardState{Term: 1}, []raft.Entry{e(1, 1), e(3, 1)}},
		{"log not starting at 1", raft.HardState{Term: 1}, []raft.Entry{e(2, 1), e(3, 1)}},
		{"term going backwards", raft.HardState{Term: 2}, []raft.Entry{e(1, 2), e(2, 1)}},
		{"vote for a non-peer", raft.HardState{Term: 1, Vote: 9}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			cfg := nodeValidConfig()
			cfg.Persister = nodeStatePersister{MemoryPersister: raft.NewMemoryPersister(),
				st: raft.PersistentState{HardState: tt.hs, Entries: tt.ents}}
			n, err := raft.NewNode(cfg)
			require.ErrorIs(t, err, raft.ErrCorrupt)
			require.Nil(t, n)
		})
	}

	t.Run("log term above hard state term is a crash outcome, not corruption", func(t *testing.T) {
		defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
		cfg := nodeValidConfig()
		cfg.Persister = nodeStatePersister{MemoryPersister: raft.NewMemoryPersister(),
			st: raft.PersistentState{HardState: raft.HardState{Term: 2}, Entries: []raft.Entry{e(1, 3)}}}
		n, err := raft.NewNode(cfg)
		require.NoError(t, err)
		defer n.Stop()
		require.Equal(t, uint64(3), n.Status().Term)
	})

	t.Run("load error", func(t *testing.T) {
		defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
		cfg := nodeValidConfig()
		cfg.Persister = nodeStatePersister{MemoryPersister: raft.NewMemoryPersister(), err: errNodeDisk}
		n, err := raft.NewNode(cfg)
		require.ErrorIs(t, err, errNodeDisk)
		require.NotErrorIs(t, err, raft.ErrCorrupt)
		require.Nil(t, n)
	})

	t.Run("commit beyond the log is clamped, not corrupt", func(t *testing.T) {
		cfg := nodeValidConfig()
		cfg.Persister = nodeStatePersister{MemoryPersister: raft.NewMemoryPersister(),
			st: raft.PersistentState{HardState: raft.HardState{Term: 1, Commit: 10}, Entries: []raft.Entry{e(1, 1), e(2, 1)}}}
		n, err := raft.NewNode(cfg)
		require.NoError(t, err)
		defer n.Stop()
		st := n.Status()
		require.EqualValues(t, 2, st.LastIndex)
		require.LessOrEqual(t, st.Commit, st.LastIndex)
	})
}

// nodeSingle starts a one-node cluster with short timeouts; it stops at the
// end of the test.
func nodeSingle(t *testing.T, mod func(*raft.Config)) *raft.Node {
	t.Helper()
	nw := rafttest.NewNetwork(1)
	t.Cleanup(nw.Close)
	cfg := raft.Config{
		ID: 1, Peers: []raft.NodeID{1}, Transport: nw.Endpoint(1), Persister: raft.NewMemoryPersister(),
		ElectionTimeout: 100 * time.Millisecond, HeartbeatInterval: 10 * time.Millisecond, Seed: 1,
	}
	if mod != nil {
		mod(&cfg)
	}
	n, err := raft.NewNode(cfg)
	require.NoError(t, err)
	t.Cleanup(n.Stop) // before nw.Close: cleanups run in reverse
	return n
}

func nodeWaitLeader(t *testing.T, n *raft.Node) {
	t.Helper()
	faultWaitFor(t, nodeWait, fmt.Sprintf("node %d to lead", n.ID()), func() bool {
		_, leader := n.State()
		return leader
	})
}

// nodeConsumer receives everything n delivers on ApplyCh, until it closes.
type nodeConsumer struct {
	mu   sync.Mutex
	msgs []raft.ApplyMsg
	done chan struct{}
}

func nodeConsume(n *raft.Node) *nodeConsumer {
	c := &nodeConsumer{done: make(chan struct{})}
	go func() { // owner: the test; exits when Stop closes ApplyCh
		defer close(c.done)
		for msg := range n.ApplyCh() {
			c.mu.Lock()
			c.msgs = append(c.msgs, msg)
			c.mu.Unlock()
		}
	}()
	return c
}

func (c *nodeConsumer) received() []raft.ApplyMsg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.msgs)
}

func TestProposeOnFollowerNotLeader(t *testing.T) {
	c := rafttest.NewCluster(t, 3, rafttest.Options{Seed: 31})
	leader := c.Leader()
	c.One([]byte("nl-first"), 3, true)
	f := faultPeer(leader, 1, 3)
	node := c.Node(f)
	faultWaitFor(t, nodeWait, "the follower to know the leader", func() bool { return node.Status().Leader == leader })

	for _, propose := range []func(context.Context, []byte) (uint64, uint64, error){node.Propose, node.ProposeWait} {
		_, _, err := propose(context.Background(), []byte("nl-refused"))
		require.ErrorIs(t, err, raft.ErrNotLeader)
		var nle *raft.NotLeaderError
		require.ErrorAs(t, err, &nle)
		require.Equal(t, leader, nle.Leader, "the error names the leader")
		require.Contains(t, err.Error(), fmt.Sprint(leader))
	}

	// Cut off, the follower forgets the leader once it times out.
	c.Disconnect(f)
	faultWaitFor(t, nodeWait, "the cut-off follower to forget the leader", func() bool { return node.Status().Leader == 0 })
	_, _, err := node.Propose(context.Background(), []byte("nl-refused"))
	var nle *raft.NotLeaderError
	require.ErrorAs(t, err, &nle)
	require.Zero(t, nle.Leader)
	require.Contains(t, err.Error(), "unknown")
}

func TestProposeTooLarge(t *testing.T) {
	n := nodeSingle(t, func(c *raft.Config) { c.MaxEntrySize = 16 })
	nodeConsume(n)
	_, _, err := n.Propose(context.Background(), make([]byte, 17))
	require.ErrorIs(t, err, raft.ErrTooLarge, "checked before leadership")
	nodeWaitLeader(t, n)
	_, _, err = n.Propose(context.Background(), make([]byte, 17))
	require.ErrorIs(t, err, raft.ErrTooLarge)
	_, _, err = n.ProposeWait(context.Background(), make([]byte, 17))
	require.ErrorIs(t, err, raft.ErrTooLarge)
	ctx, cancel := context.WithTimeout(context.Background(), nodeWait)
	defer cancel()
	_, _, err = n.ProposeWait(ctx, make([]byte, 16))
	require.NoError(t, err, "exactly MaxEntrySize is allowed")
}

// nodeWithin runs f on another goroutine and returns its result, failing
// the test if f does not return within nodeWait. f must not use t.
func nodeWithin[T any](t *testing.T, what string, f func() T) T {
	t.Helper()
	done := make(chan T, 1)
	go func() { done <- f() }() // owner: the test; exits when f returns
	select {
	case v := <-done:
		return v
	case <-time.After(nodeWait):
		t.Fatalf("%s did not return within %v", what, nodeWait)
		panic("unreachable")
	}
}

// nodeStop stops n within nodeWait.
func nodeStop(t *testing.T, n *raft.Node) {
	t.Helper()
	nodeWithin(t, "Stop", func() struct{} { n.Stop(); return struct{}{} })
}

func TestProposeAfterStop(t *testing.T) {
	n := nodeSingle(t, nil)
	nodeConsume(n)
	nodeWaitLeader(t, n)
	nodeStop(t, n)
	errs := nodeWithin(t, "Propose after Stop", func() [2]error {
		_, _, err1 := n.Propose(context.Background(), []byte("x"))
		_, _, err2 := n.ProposeWait(context.Background(), []byte("x"))
		return [2]error{err1, err2}
	})
	require.ErrorIs(t, errs[0], raft.ErrStopped)
	require.ErrorIs(t, errs[1], raft.ErrStopped)
}

func TestProposeCanceledContext(t *testing.T) {
	n := nodeSingle(t, nil)
	nodeWaitLeader(t, n)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	errs := nodeWithin(t, "Propose with a canceled context", func() [2]error {
		_, _, err1 := n.Propose(ctx, []byte("x"))
		_, _, err2 := n.ProposeWait(ctx, []byte("x"))
		return [2]error{err1, err2}
	})
	require.ErrorIs(t, errs[0], context.Canceled)
	require.ErrorIs(t, errs[1], context.Canceled)
	require.EqualValues(t, 1, n.Status().LastIndex, "a canceled proposal is not appended (the log holds the leader's empty entry only)")

	// Nobody reads ApplyCh: once its buffer is full, delivery stops and a
	// ProposeWait can only wait. Canceling its context ends it.
	for i := range 300 {
		_, _, err := n.Propose(context.Background(), fmt.Appendf(nil, "fill-%d", i))
		require.NoError(t, err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { // owner: the test; exits when ProposeWait returns
		_, _, err := n.ProposeWait(ctx, []byte("blocked"))
		errc <- err
	}()
	faultWaitFor(t, nodeWait, "the blocked proposal to be appended", func() bool { return n.Status().LastIndex >= 302 })
	cancel()
	select {
	case err := <-errc:
		require.ErrorIs(t, err, context.Canceled)
	case <-time.After(nodeWait):
		t.Fatal("ProposeWait ignored the cancellation of its context")
	}
	nodeStop(t, n) // with ApplyCh unread
}

func TestStopTwiceAndConcurrently(t *testing.T) {
	n := nodeSingle(t, nil)
	c := nodeConsume(n)
	nodeWaitLeader(t, n)
	nodeWithin(t, "concurrent Stops", func() struct{} {
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() { defer wg.Done(); n.Stop() }() // owner: the test; exits when Stop returns
		}
		wg.Wait()
		n.Stop()
		return struct{}{}
	})
	select {
	case <-c.done:
	case <-time.After(nodeWait):
		t.Fatal("ApplyCh is still open after Stop")
	}
	_, ok := <-n.ApplyCh()
	require.False(t, ok, "ApplyCh is closed after Stop")
	_, _, err := n.Propose(context.Background(), []byte("x"))
	require.ErrorIs(t, err, raft.ErrStopped)
}

func TestProposeWaitDelivers(t *testing.T) {
	n := nodeSingle(t, nil)
	c := nodeConsume(n)
	nodeWaitLeader(t, n)
	for i := range 5 {
		cmd := fmt.Appendf(nil, "pw-%d", i)
		ctx, cancel := context.WithTimeout(context.Background(), nodeWait)
		index, term, err := n.ProposeWait(ctx, cmd)
		cancel()
		require.NoError(t, err)
		nowTerm, _ := n.State()
		require.Equal(t, nowTerm, term)
		require.GreaterOrEqual(t, n.Status().Applied, index, "ProposeWait returned before the apply")
		want := raft.ApplyMsg{CommandValid: true, Command: cmd, CommandIndex: index, CommandTerm: term}
		faultWaitFor(t, nodeWait, fmt.Sprintf("the application to receive index %d", index), func() bool {
			return slices.ContainsFunc(c.received(), func(m raft.ApplyMsg) bool { return fmt.Sprint(m) == fmt.Sprint(want) })
		})
	}
}

// TestProposeWaitReturnsAfterReceived: ProposeWait "waits until the command
// has been delivered on this node's ApplyCh (received by the application)".
// Here the application receives nothing, so ProposeWait must not succeed.
func TestProposeWaitReturnsAfterReceived(t *testing.T) {
	n := nodeSingle(t, nil)
	nodeWaitLeader(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	index, _, err := n.ProposeWait(ctx, []byte("unreceived"))
	if err == nil {
		t.Fatalf("ProposeWait returned index %d although the application never received from ApplyCh", index)
	}
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestStatusFields(t *testing.T) {
	c := rafttest.NewCluster(t, 3, rafttest.Options{Seed: 32})
	leader := c.Leader()
	c.One([]byte("st-1"), 3, true)
	index := c.One([]byte("st-2"), 3, true)
	ln := c.Node(leader)
	faultWaitFor(t, nodeWait, "every node to apply and the leader to see all matched", func() bool {
		ls := ln.Status()
		for _, id := range c.IDs {
			st := c.Node(id).Status()
			if st.Commit != ls.LastIndex || st.Applied != ls.LastIndex || st.LastIndex != ls.LastIndex {
				return false
			}
			if id != leader && ls.Progress[id].Match != ls.LastIndex {
				return false
			}
		}
		return true
	})

	ls := ln.Status()
	require.Equal(t, leader, ls.ID)
	require.Equal(t, raft.RoleLeader, ls.Role)
	require.Equal(t, "leader", ls.Role.String())
	require.Equal(t, leader, ls.Leader)
	require.Positive(t, ls.Term)
	require.GreaterOrEqual(t, ls.LastIndex, index)
	require.NoError(t, ls.Err)
	term, isLeader := ln.State()
	require.True(t, isLeader)
	require.Equal(t, ls.Term, term)
	var peers []raft.NodeID
	for id, pr := range ls.Progress {
		peers = append(peers, id)
		require.Equal(t, raft.PeerProgress{Match: ls.LastIndex, Next: ls.LastIndex + 1, Probing: false}, pr, "peer %d", id)
	}
	slices.Sort(peers)
	var followers []raft.NodeID
	for _, id := range c.IDs {
		if id != leader {
			followers = append(followers, id)
		}
	}
	require.Equal(t, followers, peers, "progress for every follower, not the leader")

	for _, id := range followers {
		st := c.Node(id).Status()
		require.Equal(t, id, st.ID)
		require.Equal(t, raft.RoleFollower, st.Role)
		require.Equal(t, leader, st.Leader)
		require.Equal(t, ls.Term, st.Term)
		require.Nil(t, st.Progress, "a follower has no progress")
		require.NoError(t, st.Err)
	}

	// Status returns a copy.
	ls.Progress[followers[0]] = raft.PeerProgress{Match: 999}
	require.Equal(t, ls.LastIndex, ln.Status().Progress[followers[0]].Match)

	// A follower cut off falls behind in the leader's view.
	c.Disconnect(followers[0])
	index = c.One([]byte("st-3"), 2, true)
	st := ln.Status()
	require.Less(t, st.Progress[followers[0]].Match, index)
	require.GreaterOrEqual(t, st.Progress[followers[1]].Match, index)
}

// nodeAppendFailer fails Append while fail is set.
type nodeAppendFailer struct {
	raft.Persister
	mu   sync.Mutex
	fail error
}

func (p *nodeAppendFailer) Append(ents []raft.Entry) error {
	p.mu.Lock()
	err := p.fail
	p.mu.Unlock()
	if err != nil {
		return err
	}
	return p.Persister.Append(ents)
}

func (p *nodeAppendFailer) setFail(err error) {
	p.mu.Lock()
	p.fail = err
	p.mu.Unlock()
}

// Crash forwards to the wrapped persister, for Cluster.Crash.
func (p *nodeAppendFailer) Crash() { p.Persister.(interface{ Crash() }).Crash() }

// TestPersistFailureStopsNode: a node whose Persister fails stops taking
// part (it must not vote or acknowledge what it could not persist), reports
// why in Status().Err and refuses proposals; the others go on without it,
// and once restarted on a working disk it rejoins.
func TestPersistFailureStopsNode(t *testing.T) {
	for _, op := range []string{"Sync", "Append"} {
		t.Run(op, func(t *testing.T) {
			var (
				mu  sync.Mutex
				fps = map[raft.NodeID]*nodeAppendFailer{}
			)
			c := rafttest.NewCluster(t, 3, rafttest.Options{
				Seed: 33,
				Persister: func(id raft.NodeID) raft.Persister {
					p := &nodeAppendFailer{Persister: rafttest.NewFaultyPersister(t, raft.NewMemoryPersister())}
					mu.Lock()
					fps[id] = p
					mu.Unlock()
					return p
				},
			})
			victim := c.Leader()
			c.One([]byte("pf-before"), 3, true)
			mu.Lock()
			p := fps[victim]
			mu.Unlock()
			faulty := p.Persister.(*rafttest.FaultyPersister)
			if op == "Sync" {
				faulty.FailAlways(errNodeDisk)
			} else {
				p.setFail(errNodeDisk)
			}
			node := c.Node(victim)
			_, _, _ = c.Propose(context.Background(), victim, []byte("pf-doomed")) // accepted or not, it makes the node persist
			faultWaitFor(t, nodeWait, "the persist failure to surface in Status", func() bool { return node.Status().Err != nil })
			st := node.Status()
			require.ErrorIs(t, st.Err, raft.ErrPersist)
			require.ErrorIs(t, st.Err, errNodeDisk)
			// It leads nothing any more, and says so (pitfall 19: clients
			// routing by State must not keep sending to a dead leader).
			_, isLeader := node.State()
			require.False(t, isLeader, "a failed node reports itself leader")
			require.Equal(t, raft.RoleFollower, st.Role)
			require.Zero(t, st.Leader)
			require.True(t, faultRecordProposed(c, victim, []byte("pf-refused-wait")))
			errs := nodeWithin(t, "Propose on a failed node", func() [2]error {
				_, _, err1 := c.Propose(context.Background(), victim, []byte("pf-refused"))
				_, _, err2 := node.ProposeWait(context.Background(), []byte("pf-refused-wait"))
				return [2]error{err1, err2}
			})
			require.ErrorIs(t, errs[0], raft.ErrPersist)
			require.ErrorIs(t, errs[1], raft.ErrPersist)

			faultWaitFor(t, nodeWait, "the others to elect a leader", func() bool {
				for _, id := range c.IDs {
					if term, ok := c.Node(id).State(); id != victim && ok && term > st.Term {
						return true
					}
				}
				return false
			})
			c.One([]byte("pf-without"), 2, true)
			c.Net.ResetStats()
			time.Sleep(2 * rafttest.ElectionTimeout) // the assertion is about this window
			require.Zero(t, c.Net.Stats(victim).MsgsSent, "a failed node sends nothing")

			faulty.FailAlways(nil)
			p.setFail(nil)
			c.Restart(victim)
			c.One([]byte("pf-after"), 3, true)
			require.NoError(t, c.Node(victim).Status().Err)
		})
	}
}

// TestNodePitfall10_DiskStallLeaderStepsDown: a leader whose disk stops
// completing writes must not keep the cluster captive with heartbeats
// (hashicorp/raft#503). With its Sync stalled, it steps down within an
// election timeout or so and another node leads; the cluster commits
// without it and, once the disk resumes, with it.
func TestNodePitfall10_DiskStallLeaderStepsDown(t *testing.T) {
	const n = 3
	seed := faultSeed(t, 10)
	var (
		mu  sync.Mutex
		fps = map[raft.NodeID]*rafttest.FaultyPersister{}
	)
	c := rafttest.NewCluster(t, n, rafttest.Options{
		Seed: seed,
		Persister: func(id raft.NodeID) raft.Persister {
			fp := rafttest.NewFaultyPersister(t, raft.NewMemoryPersister())
			mu.Lock()
			fps[id] = fp
			mu.Unlock()
			return fp
		},
	})
	old := c.Leader()
	c.One([]byte("p10-before"), n, true)
	term0, _ := c.Node(old).State()
	mu.Lock()
	fp := fps[old]
	mu.Unlock()

	fp.Stall()
	defer fp.Resume()
	_, _, err := c.Propose(context.Background(), old, []byte("p10-stalled"))
	require.NoError(t, err)
	faultWaitFor(t, faultWait, "the leader's Sync to block", func() bool { return fp.Blocked() > 0 })
	stalled := time.Now()

	var next raft.NodeID
	faultWaitFor(t, faultWait, "another node to lead", func() bool {
		if _, isLeader := c.Node(old).State(); isLeader {
			return false
		}
		for _, id := range c.IDs {
			if term, isLeader := c.Node(id).State(); id != old && isLeader && term > term0 {
				next = id
				return true
			}
		}
		return false
	})
	t.Logf("node %d stepped down; node %d leads %v after the stall", old, next, time.Since(stalled))
	require.Positive(t, fp.Blocked(), "the stall was released early")

	c.One([]byte("p10-without"), n-1, true)
	_, isLeader := c.Node(old).State()
	require.False(t, isLeader, "the stalled node took leadership back")

	fp.Resume()
	c.One([]byte("p10-resumed"), n, true)
}

// TestNodeIgnoresUnknownSenders: messages from a node that is not a peer,
// however high their term, change nothing and get no answer.
// NewNode syncs what it loads: a process that crashed after writing but
// before syncing left state that Load returns from the OS cache, and the
// node will act on it (re-send a vote it finds recorded, count entries as
// durable). It must be durable before anything depends on it.
func TestNodeSyncsLoadedState(t *testing.T) {
	p := raft.NewMemoryPersister()
	require.NoError(t, p.Append([]raft.Entry{{Index: 1, Term: 5, Data: []byte("unsynced")}}))
	require.NoError(t, p.SetHardState(raft.HardState{Term: 5, Vote: 2}))
	// No Sync: a crash now would lose both writes.
	nw := rafttest.NewNetwork(1)
	t.Cleanup(nw.Close)
	cfg := nodeValidConfig()
	cfg.Transport, cfg.Persister = nw.Endpoint(cfg.ID), p
	n, err := raft.NewNode(cfg)
	require.NoError(t, err)
	n.Stop()
	p.Crash() // power loss after the node started
	st, err := p.Load()
	require.NoError(t, err)
	require.Equal(t, raft.HardState{Term: 5, Vote: 2}, raft.HardState{Term: st.HardState.Term, Vote: st.HardState.Vote},
		"the loaded vote must have been made durable")
	require.Len(t, st.Entries, 1, "the loaded entry must have been made durable")
}

func TestNodeIgnoresUnknownSenders(t *testing.T) {
	c := rafttest.NewCluster(t, 3, rafttest.Options{Seed: 34})
	leader := c.Leader()
	c.One([]byte("unk-first"), 3, true)
	before := faultStatuses(c)
	ls := before[leader]
	stranger := c.Net.Endpoint(99)
	for _, from := range []raft.NodeID{99, 0} {
		for _, to := range c.IDs {
			term := ls.Term + 10
			for _, m := range []raft.Message{
				{Type: raft.MsgPreVote, Term: term, Index: 1000, LogTerm: term},
				{Type: raft.MsgVote, Term: term, Index: 1000, LogTerm: term},
				{Type: raft.MsgApp, Term: term, Index: ls.LastIndex, LogTerm: ls.Term, Commit: ls.LastIndex + 1,
					Entries: []raft.Entry{{Index: ls.LastIndex + 1, Term: term, Data: []byte("evil")}}},
				{Type: raft.MsgHeartbeat, Term: term, Commit: 1000},
				{Type: raft.MsgAppResp, Term: term, Index: 1000},
			} {
				m.From, m.To = from, to
				stranger.Send(m)
			}
		}
	}
	time.Sleep(3 * rafttest.HeartbeatInterval) // the assertion is that nothing happens meanwhile
	for id, st := range before {
		now := c.Node(id).Status()
		require.Equal(t, st.Term, now.Term, "node %d", id)
		require.Equal(t, st.Role, now.Role, "node %d", id)
		require.Equal(t, st.Leader, now.Leader, "node %d", id)
		require.Equal(t, st.LastIndex, now.LastIndex, "node %d appended a stranger's entry", id)
	}
	require.Zero(t, c.Net.Stats(99).MsgsRecv, "nobody answers a stranger")
	require.Zero(t, c.Net.Stats(0).MsgsRecv)
	c.One([]byte("unk-last"), 3, true)
}

// TestSlowApplyConsumerBacklogBounded: Config.MaxApplyBacklog bounds the
// committed entries waiting "for the application to receive them from
// ApplyCh" before the leader stops accepting proposals. With an
// application that receives nothing, a leader accepts about that many
// proposals, then blocks the rest until their context ends.
func TestSlowApplyConsumerBacklogBounded(t *testing.T) {
	const backlog = 8
	nw := rafttest.NewNetwork(1)
	t.Cleanup(nw.Close)
	node, err := raft.NewNode(raft.Config{
		ID: 1, Peers: []raft.NodeID{1}, Transport: nw.Endpoint(1), Persister: raft.NewMemoryPersister(),
		ElectionTimeout: 100 * time.Millisecond, HeartbeatInterval: 10 * time.Millisecond,
		MaxApplyBacklog: backlog, Seed: 1,
	})
	require.NoError(t, err)
	t.Cleanup(node.Stop) // the application never reads ApplyCh
	faultWaitFor(t, faultWait, "the single node to lead", func() bool { _, l := node.State(); return l })

	accepted := 0
	for i := 0; ; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		_, _, err := node.Propose(ctx, fmt.Appendf(nil, "backlog-%d", i))
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		require.NoError(t, err)
		accepted++
		require.Less(t, accepted, 10000, "the leader never pushed back")
	}
	st := node.Status()
	t.Logf("accepted %d proposals with MaxApplyBacklog %d and nothing received; Status: commit %d applied %d",
		accepted, backlog, st.Commit, st.Applied)
	// Slack: one batch in the apply loop's hands and the proposal that
	// crossed the limit.
	if accepted > backlog+maxApplySlack {
		t.Fatalf("MaxApplyBacklog=%d, yet the leader accepted %d proposals that its application never received",
			backlog, accepted)
	}
}

// maxApplySlack is how far past MaxApplyBacklog a leader may accept
// proposals: the entries of one in-flight hand-off, and the proposal that
// crossed the limit.
const maxApplySlack = 4

// TestNodePitfall18_DeposedLeaderProposeWaitEnds: ProposeWait calls without
// a deadline on a leader that is cut off, deposed and then overwritten must
// all end (ErrProposalDropped), even when the new leader's log is shorter
// and nobody proposes anything more.
func TestNodePitfall18_DeposedLeaderProposeWaitEnds(t *testing.T) {
	const n, waiters = 3, 20
	seed := faultSeed(t, 181)
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // after the Cluster's Close (cleanups run in reverse), which ends every call
	c := rafttest.NewCluster(t, n, rafttest.Options{Seed: seed})
	old := c.Leader()
	c.One([]byte("dep-first"), n, true)
	c.Disconnect(old)

	node := c.Node(old)
	results := make(chan error, waiters)
	for i := range waiters {
		cmd := fmt.Appendf(nil, "dep-%d", i)
		require.True(t, faultRecordProposed(c, old, cmd))
		wg.Add(1)
		go func() { // owner: the test; exits when ProposeWait returns (at the latest when the node stops)
			defer wg.Done()
			_, _, err := node.ProposeWait(context.Background(), cmd)
			results <- err
		}()
	}
	faultWaitFor(t, faultWait, "the cut-off leader to append every proposal", func() bool {
		return node.Status().LastIndex >= uint64(waiters)+2
	})
	oldLast := node.Status().LastIndex

	c.Leader() // the two others elect one of them
	c.One([]byte("dep-majority"), n-1, true)
	c.Connect(old)
	faultWaitFor(t, faultWait, "the old leader to follow the new one", func() bool {
		st := node.Status()
		return st.Role == raft.RoleFollower && st.Leader != 0 && st.Leader != old && st.LastIndex < oldLast
	})

	deadline := time.After(10 * time.Second) // nothing to wait for but the node's own processing
	for i := range waiters {
		select {
		case err := <-results:
			require.ErrorIs(t, err, raft.ErrProposalDropped, "call %d", i)
		case <-deadline:
			t.Fatalf("%d of %d ProposeWait calls (context.Background) on deposed leader %d still block 10s after "+
				"its log was truncated below their indexes (last index %d -> %d) (pitfall 18)",
				waiters-i, waiters, old, oldLast, node.Status().LastIndex)
		}
	}
	c.One([]byte("dep-last"), n, true)
}
