package raft_test

// Cluster scenario tests in the spirit of the MIT 6.824 Raft lab tests. Every
// command applied is also judged by internal/check through the harness. Waits
// poll against generous deadlines; sleeps only let time pass.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/rafttest"
)

// maxElectionTimeout is the longest a node waits before campaigning:
// timeouts are drawn from [ElectionTimeout, 2*ElectionTimeout).
const maxElectionTimeout = 2 * rafttest.ElectionTimeout

func TestInitialElection(t *testing.T) {
	c := rafttest.NewCluster(t, 3, rafttest.Options{})

	// One leader, known to every node, within 5s (5-10 election timeouts).
	leader := waitStableLeader(t, c, 5*time.Second, c.IDs...)
	term := mustTerm(t, c, leader)
	if term == 0 {
		t.Fatalf("leader %d has term 0", leader)
	}

	// While idle for two maximal election timeouts, nobody campaigns: every
	// node stays in that term and the leader stays leader.
	deadline := time.Now().Add(2 * maxElectionTimeout)
	for time.Now().Before(deadline) {
		for _, id := range c.IDs {
			st := c.Node(id).Status()
			if st.Term != term || st.Leader != leader {
				t.Fatalf("idle cluster changed: node %d at term %d with leader %d, want term %d leader %d",
					id, st.Term, st.Leader, term, leader)
			}
		}
		if _, ok := c.Node(leader).State(); !ok {
			t.Fatalf("node %d lost leadership while idle", leader)
		}
		time.Sleep(20 * time.Millisecond) // poll interval: the assertion is about the whole window
	}
	if got := c.Leader(); got != leader {
		t.Fatalf("leader after idle period = %d, want %d", got, leader)
	}
}

func TestReElection(t *testing.T) {
	c := rafttest.NewCluster(t, 3, rafttest.Options{})
	leader1 := waitStableLeader(t, c, rafttest.LeaderWait, c.IDs...)

	// The leader disconnects: the other two elect a new one.
	c.Disconnect(leader1)
	leader2 := waitStableLeader(t, c, rafttest.LeaderWait, others(c.IDs, leader1)...)
	if leader2 == leader1 {
		t.Fatalf("disconnected node %d still counted as leader", leader1)
	}

	// The old leader rejoins: one leader, all three agree on it and its term.
	c.Connect(leader1)
	leader3 := waitStableLeader(t, c, rafttest.LeaderWait, c.IDs...)
	if leader3 != leader2 {
		t.Logf("leader changed from %d to %d after the old leader rejoined", leader2, leader3)
	}

	// Both followers disconnected: the leader, left alone, steps down
	// (CheckQuorum) and cannot win an election again.
	a, b := peer(leader3, 1, 3), peer(leader3, 2, 3)
	remaining := leader3
	c.Disconnect(a)
	c.Disconnect(b)
	c.WaitNoLeader()
	stayNoLeader(t, c, 2*maxElectionTimeout, remaining)

	// One reconnects: a majority again, so a leader.
	c.Connect(b)
	waitStableLeader(t, c, rafttest.LeaderWait, b, remaining)
	// All reconnected: still one leader that everyone follows.
	c.Connect(a)
	waitStableLeader(t, c, rafttest.LeaderWait, c.IDs...)
}

func TestManyElections(t *testing.T) {
	const servers = 7
	seed := faultSeed(t, uint64(time.Now().UnixNano()))
	rng := rand.New(rand.NewPCG(seed, 0))
	c := rafttest.NewCluster(t, servers, rafttest.Options{Seed: seed})
	waitStableLeader(t, c, rafttest.LeaderWait, c.IDs...)

	for iter := range 7 {
		// Disconnect 3 nodes (the rest is a majority, so it elects a leader)
		// or, now and then, 4 (the rest is a minority and must not).
		k := 3
		if rng.IntN(3) == 0 {
			k = 4
		}
		var down []raft.NodeID
		for _, i := range rng.Perm(servers)[:k] {
			down = append(down, c.IDs[i])
		}
		up := others(c.IDs, down...)
		t.Logf("iteration %d: disconnect %v", iter, down)
		for _, id := range down {
			c.Disconnect(id)
		}
		if k == 3 {
			waitStableLeader(t, c, rafttest.LeaderWait, up...)
		} else {
			// A leader among up (if any) steps down by CheckQuorum.
			c.WaitNoLeader(up...)
			stayNoLeader(t, c, maxElectionTimeout, up...)
		}
		// Each disconnected node is alone: an isolated leader steps down.
		c.WaitNoLeader(down...)
		for _, id := range down {
			c.Connect(id)
		}
	}
	waitStableLeader(t, c, rafttest.LeaderWait, c.IDs...)
	c.One([]byte("many-elections-final"), servers, true)
}

func TestBasicAgree(t *testing.T) {
	for _, servers := range []int{3, 5} {
		t.Run(fmt.Sprintf("nodes=%d", servers), func(t *testing.T) {
			c := rafttest.NewCluster(t, servers, rafttest.Options{})
			waitStableLeader(t, c, rafttest.LeaderWait, c.IDs...)
			var prev uint64
			for i := range 5 {
				next := prev + 1
				if n, _ := c.Applied(next); n > 0 {
					t.Fatalf("%d nodes applied index %d before it was proposed", n, next)
				}
				termBefore := maxTerm(c)
				index := c.One(fmt.Appendf(nil, "basic-%d-%d", servers, i), servers, false)
				// Indexes increase; they are consecutive unless a new leader
				// slipped its no-op in between, which needs a new term.
				if index <= prev {
					t.Fatalf("command %d at index %d, not after previous index %d", i, index, prev)
				}
				if prev != 0 && index != prev+1 && maxTerm(c) == termBefore {
					t.Fatalf("command %d at index %d, want %d: no term change to explain the gap", i, index, prev+1)
				}
				prev = index
			}
		})
	}
}

func TestFailAgree(t *testing.T) { testFailAgree(t, rafttest.Options{}) }

// testFailAgree is TestFailAgree on a cluster made with opts (which
// chooses the persister).
func testFailAgree(t *testing.T, opts rafttest.Options) {
	c := rafttest.NewCluster(t, 3, opts)
	c.One([]byte("fail-agree-101"), 3, false)

	// A follower disconnects; the other two still agree.
	leader := waitStableLeader(t, c, rafttest.LeaderWait, c.IDs...)
	f := peer(leader, 1, 3)
	c.Disconnect(f)
	var indexes []uint64
	for i := 102; i <= 105; i++ {
		indexes = append(indexes, c.One(fmt.Appendf(nil, "fail-agree-%d", i), 2, true))
		if i == 103 {
			time.Sleep(rafttest.ElectionTimeout) // let the follower's election timer fire meanwhile
		}
	}
	if last := c.LastApplied(f); last >= indexes[0] {
		t.Fatalf("disconnected node %d applied up to %d, past index %d it cannot have", f, last, indexes[0])
	}

	// It reconnects and catches up on everything it missed.
	c.Connect(f)
	indexes = append(indexes, c.One([]byte("fail-agree-106"), 3, true))
	for i, index := range indexes {
		if got, want := string(c.WaitApplied(index, 3)), fmt.Sprintf("fail-agree-%d", 102+i); got != want {
			t.Fatalf("index %d holds %q, want %q", index, got, want)
		}
	}
	c.One([]byte("fail-agree-107"), 3, true)
}

func TestFailNoAgree(t *testing.T) {
	tr := newApplyTracker()
	c := rafttest.NewCluster(t, 5, rafttest.Options{OnApply: tr.onApply})
	first := c.One([]byte("fail-no-agree-10"), 5, false)

	// Three of five followers disconnect: the leader still accepts a
	// proposal, but it can never commit.
	leader := waitStableLeader(t, c, rafttest.LeaderWait, c.IDs...)
	for k := 1; k <= 3; k++ {
		c.Disconnect(peer(leader, k, 5))
	}
	stuck := []byte("fail-no-agree-20")
	index, _ := proposeOn(t, c, leader, stuck)
	if index <= first {
		t.Fatalf("proposal got index %d, not after committed index %d", index, first)
	}
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if n, _ := c.Applied(index); n > 0 {
			t.Fatalf("%d nodes applied index %d without a majority", n, index)
		}
		if where := tr.where(stuck); len(where) > 0 {
			t.Fatalf("%q applied without a majority: %v", stuck, where)
		}
		if commit := c.Node(leader).Status().Commit; commit >= index {
			t.Fatalf("leader %d committed up to %d (>= %d) without a majority", leader, commit, index)
		}
		time.Sleep(20 * time.Millisecond) // poll interval: the assertion is about the whole window
	}

	// Reconnected, the cluster agrees again; the stuck index may be reused.
	for k := 1; k <= 3; k++ {
		c.Connect(peer(leader, k, 5))
	}
	next := c.One([]byte("fail-no-agree-30"), 5, true)
	if next <= first {
		t.Fatalf("new command at index %d, not after committed index %d", next, first)
	}
	c.One([]byte("fail-no-agree-1000"), 5, true)
	for _, at := range tr.where(stuck) {
		if at.index != index {
			t.Fatalf("stuck command applied at index %d on node %d, proposed at %d", at.index, at.node, index)
		}
	}
}

func TestConcurrentStarts(t *testing.T) {
	c := rafttest.NewCluster(t, 3, rafttest.Options{})
	for _, n := range []int{5, 20, 50} {
		ok := false
		for attempt := 0; attempt < 5 && !ok; attempt++ {
			ok = concurrentStarts(t, c, n, attempt)
		}
		if !ok {
			t.Fatalf("%d concurrent proposals: leader changed in 5 attempts out of 5", n)
		}
	}
}

// concurrentStarts proposes n commands at once on the leader and checks
// that those accepted in the leader's term are applied where they were
// placed. It reports false if the term changed, so the caller can retry.
func concurrentStarts(t *testing.T, c *rafttest.Cluster, n, attempt int) bool {
	t.Helper()
	leader := waitStableLeader(t, c, rafttest.LeaderWait, c.IDs...)
	term := mustTerm(t, c, leader)
	type result struct {
		cmd         string
		index, term uint64
		err         error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() { // owner: this function; exits when Propose returns
			defer wg.Done()
			cmd := fmt.Sprintf("concurrent-%d-%d-%d", n, attempt, i)
			ctx, cancel := context.WithTimeout(context.Background(), rafttest.AgreementWait)
			defer cancel()
			index, term, err := c.Propose(ctx, leader, []byte(cmd))
			results[i] = result{cmd, index, term, err}
		}()
	}
	wg.Wait()

	byIndex := map[uint64]string{}
	for _, r := range results {
		switch {
		case r.err != nil && !errors.Is(r.err, raft.ErrNotLeader):
			t.Fatalf("Propose(%q) on leader %d: %v", r.cmd, leader, r.err)
		case r.err != nil || r.term != term:
			return false // leadership moved during the burst
		}
		if prev, dup := byIndex[r.index]; dup {
			t.Fatalf("%q and %q both got index %d in term %d", prev, r.cmd, r.index, term)
		}
		byIndex[r.index] = r.cmd
	}
	deadline := time.Now().Add(rafttest.AgreementWait)
	for index, want := range byIndex {
		for {
			count, got := c.Applied(index)
			if count == 3 {
				if string(got) != want {
					if tm, ok := c.Node(leader).State(); ok && tm == term {
						t.Fatalf("index %d holds %q, want %q proposed there in term %d, which is still current", index, got, want, term)
					}
					return false
				}
				break
			}
			if tm, ok := c.Node(leader).State(); !ok || tm != term {
				return false
			}
			if time.Now().After(deadline) {
				t.Fatalf("index %d (%q) applied on %d of 3 nodes after %v", index, want, count, rafttest.AgreementWait)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return true
}

func TestRejoin(t *testing.T) { testRejoin(t, rafttest.Options{}) }

// testRejoin is TestRejoin on a cluster made with opts; it sets OnApply.
func testRejoin(t *testing.T, opts rafttest.Options) {
	tr := newApplyTracker()
	opts.OnApply = tr.onApply
	c := rafttest.NewCluster(t, 3, opts)
	c.One([]byte("rejoin-101"), 3, true)

	// The leader is partitioned away and accepts proposals that cannot
	// commit.
	leader1 := waitStableLeader(t, c, rafttest.LeaderWait, c.IDs...)
	c.Disconnect(leader1)
	stale := [][]byte{[]byte("rejoin-stale-102"), []byte("rejoin-stale-103"), []byte("rejoin-stale-104")}
	for _, cmd := range stale {
		proposeOn(t, c, leader1, cmd)
	}

	// The other two elect a leader and commit.
	c.One([]byte("rejoin-103"), 2, true)

	// The new leader is partitioned away and the old one rejoins: it must
	// lose its uncommitted entries to the remaining node's log.
	leader2 := waitStableLeader(t, c, rafttest.LeaderWait, others(c.IDs, leader1)...)
	c.Disconnect(leader2)
	c.Connect(leader1)
	c.One([]byte("rejoin-104"), 2, true)

	// Everyone together again.
	c.Connect(leader2)
	last := c.One([]byte("rejoin-105"), 3, true)
	if got := c.LastApplied(leader1); got < last {
		t.Fatalf("old leader %d applied up to %d, want at least %d", leader1, got, last)
	}
	for _, cmd := range stale {
		if where := tr.where(cmd); len(where) > 0 {
			t.Fatalf("uncommitted %q of the partitioned leader was applied: %v", cmd, where)
		}
	}
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
}

// TestPersist1 crashes and restarts all nodes, then the leader, then a
// follower; after each, agreement resumes and the restarted nodes replay.
func TestPersist1(t *testing.T) { testPersist1(t, rafttest.Options{}) }

// testPersist1 is TestPersist1 on a cluster made with opts.
func testPersist1(t *testing.T, opts rafttest.Options) {
	c := rafttest.NewCluster(t, 3, opts)
	i11 := c.One([]byte("persist1-11"), 3, true)

	// All nodes down at once, then back.
	for _, id := range c.IDs {
		c.Crash(id)
	}
	for _, id := range c.IDs {
		c.Restart(id)
	}
	c.One([]byte("persist1-12"), 3, true)
	wantApplied(t, c, i11, 3, "persist1-11") // every new incarnation replayed it

	// The leader restarts.
	leader1 := c.Leader()
	c.Restart(leader1)
	c.One([]byte("persist1-13"), 3, true)
	wantApplied(t, c, i11, 3, "persist1-11")

	// The leader is down while the others commit, then comes back.
	leader2 := c.Leader()
	c.Crash(leader2)
	i14 := c.One([]byte("persist1-14"), 2, true)
	c.Restart(leader2)
	wantApplied(t, c, i14, 3, "persist1-14")

	// A follower is down while the others commit, then comes back.
	f := peer(c.Leader(), 1, 3)
	c.Crash(f)
	i15 := c.One([]byte("persist1-15"), 2, true)
	c.Restart(f)
	c.One([]byte("persist1-16"), 3, true)
	wantApplied(t, c, i15, 3, "persist1-15")
}

// TestPersist2 crashes a minority, then the majority that committed without
// it, and restarts the minority first: it cannot elect a leader until a node
// holding the latest committed entry is back, and that entry survives.
func TestPersist2(t *testing.T) { testPersist2(t, rafttest.Options{}) }

// testPersist2 is TestPersist2 on a cluster made with opts.
func testPersist2(t *testing.T, opts rafttest.Options) {
	const servers = 5
	c := rafttest.NewCluster(t, servers, opts)
	for iter := range 3 {
		c.One(fmt.Appendf(nil, "persist2-%d-all", iter), servers, true)
		l := c.Leader()
		p := func(k int) raft.NodeID { return peer(l, k, servers) }

		c.Crash(p(1))
		c.Crash(p(2))
		cmd := fmt.Sprintf("persist2-%d-majority", iter)
		committed := c.One([]byte(cmd), servers-2, true)

		c.Crash(p(0))
		c.Crash(p(3))
		c.Crash(p(4))
		// The two stale nodes are a minority: no leader, however long.
		c.Restart(p(1))
		c.Restart(p(2))
		stayNoLeader(t, c, maxElectionTimeout, p(1), p(2))
		// With a node that holds the committed entry, a leader emerges,
		// and the entry is not lost.
		c.Restart(p(3))
		c.One(fmt.Appendf(nil, "persist2-%d-after", iter), servers-2, true)
		wantApplied(t, c, committed, 3, cmd)

		c.Restart(p(4))
		c.Restart(p(0))
	}
	c.One([]byte("persist2-final"), servers, true)
}

// TestPersist3 restarts a leader that committed with one follower while the
// other follower was partitioned away; the restarted leader must still hold
// that entry.
func TestPersist3(t *testing.T) { testPersist3(t, rafttest.Options{}) }

// testPersist3 is TestPersist3 on a cluster made with opts.
func testPersist3(t *testing.T, opts rafttest.Options) {
	c := rafttest.NewCluster(t, 3, opts)
	c.One([]byte("persist3-101"), 3, true)
	leader := c.Leader()
	c.Disconnect(peer(leader, 2, 3))
	i102 := c.One([]byte("persist3-102"), 2, true)

	c.Crash(peer(leader, 0, 3))
	c.Crash(peer(leader, 1, 3))
	c.Connect(peer(leader, 2, 3))
	c.Restart(peer(leader, 0, 3))
	c.One([]byte("persist3-103"), 2, true)

	c.Restart(peer(leader, 1, 3))
	c.One([]byte("persist3-104"), 3, true)
	wantApplied(t, c, i102, 3, "persist3-102")
}

// TestPersistOneNodeKeepsAcknowledged crashes a one-node cluster amid a burst
// of proposals (pitfall 4's sharpest case): whatever it applied before the
// crash was durable, so it is applied again, at the same index, after the
// restart.
func TestPersistOneNodeKeepsAcknowledged(t *testing.T) {
	testPersistOneNodeKeepsAcknowledged(t, rafttest.Options{})
}

// testPersistOneNodeKeepsAcknowledged is TestPersistOneNodeKeepsAcknowledged
// on a cluster made with opts; it sets OnApply.
func testPersistOneNodeKeepsAcknowledged(t *testing.T, opts rafttest.Options) {
	tr := newApplyTracker()
	opts.OnApply = tr.onApply
	c := rafttest.NewCluster(t, 1, opts)
	const id = raft.NodeID(1)
	for round := range 5 {
		c.Leader()
		const burst = 40
		for i := range burst {
			proposeOn(t, c, id, fmt.Appendf(nil, "one-node-%d-%d", round, i))
		}
		// Crash once some of the burst has been applied, the rest being
		// somewhere between append and sync.
		faultWaitFor(t, rafttest.AgreementWait, fmt.Sprintf("round %d: %d commands applied", round, round+1), func() bool {
			return tr.countPrefix(id, fmt.Sprintf("one-node-%d-", round)) > round
		})
		c.Crash(id)
		acked := tr.appliedBy(id)
		var top uint64
		for index := range acked {
			top = max(top, index)
		}

		c.Restart(id)
		c.WaitApplied(top, 1)
		for index, cmd := range acked {
			if n, got := c.Applied(index); n != 1 || string(got) != cmd {
				t.Fatalf("round %d: index %d applied before the crash as %q, after restart %d times as %q", round, index, cmd, n, got)
			}
		}
		t.Logf("round %d: %d commands acknowledged before the crash, all replayed", round, len(acked))
	}
	c.One([]byte("one-node-final"), 1, false)
}

func TestLeaderChangedNotifies(t *testing.T) {
	c := rafttest.NewCluster(t, 3, rafttest.Options{})
	leader1 := waitStableLeader(t, c, rafttest.LeaderWait, c.IDs...)
	obs := peer(leader1, 1, 3)
	before := c.Node(obs).Status()
	chObs := c.Node(obs).LeaderChanged()
	chOld := c.Node(leader1).LeaderChanged()

	c.Disconnect(leader1)
	waitClosed(t, chObs, "follower's LeaderChanged after its leader was disconnected")
	waitClosed(t, chOld, "isolated leader's LeaderChanged (CheckQuorum step-down)")
	leader2 := waitStableLeader(t, c, rafttest.LeaderWait, others(c.IDs, leader1)...)
	if st := c.Node(obs).Status(); st.Leader != leader2 || st.Term <= before.Term {
		t.Fatalf("node %d after the change: leader %d term %d, want leader %d and term > %d", obs, st.Leader, st.Term, leader2, before.Term)
	}
	if _, ok := c.Node(leader1).State(); ok {
		t.Fatalf("isolated node %d still leader after its LeaderChanged fired", leader1)
	}

	// A channel obtained after the change is a new one and fires on the next.
	c.Connect(leader1)
	leader3 := waitStableLeader(t, c, rafttest.LeaderWait, c.IDs...)
	obs = peer(leader3, 1, 3)
	ch2 := c.Node(obs).LeaderChanged()
	if ch2 == chObs {
		t.Fatal("LeaderChanged returned the channel that was already closed")
	}
	term3 := mustTerm(t, c, obs)
	c.Disconnect(leader3)
	waitClosed(t, ch2, "second LeaderChanged channel after the next leader was disconnected")
	leader4 := waitStableLeader(t, c, rafttest.LeaderWait, others(c.IDs, leader3)...)
	if st := c.Node(obs).Status(); st.Leader != leader4 || st.Term <= term3 {
		t.Fatalf("node %d after the second change: leader %d term %d, want leader %d and term > %d", obs, st.Leader, st.Term, leader4, term3)
	}
}

// TestNodePitfall19_LeadershipObservationNeverBlocks: channels from
// LeaderChanged that nobody reads, and an observer far slower than the
// changes, never stall elections or commits; the slow observer misses
// intermediate states but always ends up seeing the latest one.
func TestNodePitfall19_LeadershipObservationNeverBlocks(t *testing.T) {
	c := rafttest.NewCluster(t, 3, rafttest.Options{})
	waitStableLeader(t, c, rafttest.LeaderWait, c.IDs...)

	const watched = raft.NodeID(1)
	o := &slowObserver{}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go o.run(&wg, done, c.Node(watched)) // owner: this test; exits when done closes
	defer func() { close(done); wg.Wait() }()

	for round := range 4 {
		leader := waitStableLeader(t, c, rafttest.LeaderWait, c.IDs...)
		var unread []<-chan struct{}
		for _, id := range c.IDs {
			unread = append(unread, c.Node(id).LeaderChanged(), c.Node(id).LeaderChanged())
		}
		c.Disconnect(leader)
		waitStableLeader(t, c, rafttest.LeaderWait, others(c.IDs, leader)...)
		c.One(fmt.Appendf(nil, "pitfall19-%d", round), 2, true)
		c.Connect(leader)
		waitStableLeader(t, c, rafttest.LeaderWait, c.IDs...)
		// Every node changed term or role since: every unread channel fired.
		for i, ch := range unread {
			select {
			case <-ch:
			default:
				t.Fatalf("round %d: unread channel %d not closed after a leader change", round, i)
			}
		}
	}
	c.One([]byte("pitfall19-final"), 3, true)

	// Level-triggered: the slow observer converges on the node's state.
	n := c.Node(watched)
	faultWaitFor(t, rafttest.LeaderWait, "slow observer sees the latest state", func() bool {
		last, _ := o.seen()
		st := n.Status()
		return last.Term == st.Term && last.Leader == st.Leader && last.Role == st.Role
	})
	if _, woken := o.seen(); woken == 0 {
		t.Fatal("slow observer was never woken")
	}
}

// --- helpers ---

// waitStableLeader waits until every node in ids reports the same term and
// the same leader, which is one of ids and believes it leads that term, and
// returns it.
func waitStableLeader(t *testing.T, c *rafttest.Cluster, timeout time.Duration, ids ...raft.NodeID) raft.NodeID {
	t.Helper()
	var leader raft.NodeID
	faultWaitFor(t, timeout, fmt.Sprintf("nodes %v to agree on one leader", ids), func() bool {
		var sts []raft.Status
		for _, id := range ids {
			n := c.Node(id)
			if n == nil {
				t.Fatalf("waitStableLeader: node %d is crashed", id)
			}
			sts = append(sts, n.Status())
		}
		leader = sts[0].Leader
		for _, st := range sts {
			if st.Term != sts[0].Term || st.Leader != leader || leader == 0 {
				return false
			}
			if st.ID == leader && st.Role != raft.RoleLeader {
				return false
			}
		}
		return slices.Contains(ids, leader)
	})
	return leader
}

// stayNoLeader fails the test if any of ids becomes leader within d.
func stayNoLeader(t *testing.T, c *rafttest.Cluster, d time.Duration, ids ...raft.NodeID) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for _, id := range ids {
			if n := c.Node(id); n != nil {
				if term, ok := n.State(); ok {
					t.Fatalf("node %d became leader of term %d without a majority (nodes %v)", id, term, ids)
				}
			}
		}
		time.Sleep(10 * time.Millisecond) // poll interval: the assertion is about the whole window
	}
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(rafttest.LeaderWait):
		t.Fatalf("%s: not closed within %v", what, rafttest.LeaderWait)
	}
}

// wantApplied waits until n running nodes applied index and checks it holds cmd.
func wantApplied(t *testing.T, c *rafttest.Cluster, index uint64, n int, cmd string) {
	t.Helper()
	if got := c.WaitApplied(index, n); string(got) != cmd {
		t.Fatalf("index %d holds %q, want %q", index, got, cmd)
	}
}

// proposeOn proposes cmd on node id, which must accept it.
func proposeOn(t *testing.T, c *rafttest.Cluster, id raft.NodeID, cmd []byte) (index, term uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), rafttest.AgreementWait)
	defer cancel()
	index, term, err := c.Propose(ctx, id, cmd)
	if err != nil {
		t.Fatalf("Propose(%q) on node %d: %v", cmd, id, err)
	}
	return index, term
}

// mustTerm returns running node id's term.
func mustTerm(t *testing.T, c *rafttest.Cluster, id raft.NodeID) uint64 {
	t.Helper()
	term, _ := c.Node(id).State()
	return term
}

func maxTerm(c *rafttest.Cluster) uint64 {
	var top uint64
	for _, term := range c.Terms() {
		top = max(top, term)
	}
	return top
}

// peer returns the node k places after id in a cluster of n (IDs 1..n).
func peer(id raft.NodeID, k, n int) raft.NodeID {
	return raft.NodeID((int(id)-1+k)%n + 1)
}

// others returns ids without the excluded ones.
func others(ids []raft.NodeID, exclude ...raft.NodeID) []raft.NodeID {
	var out []raft.NodeID
	for _, id := range ids {
		if !slices.Contains(exclude, id) {
			out = append(out, id)
		}
	}
	return out
}

// applyTracker records, through Options.OnApply, what each node applied.
type applyTracker struct {
	mu     sync.Mutex
	byNode map[raft.NodeID]map[uint64]string
}

type appliedAt struct {
	node  raft.NodeID
	index uint64
}

func newApplyTracker() *applyTracker {
	return &applyTracker{byNode: map[raft.NodeID]map[uint64]string{}}
}

func (tr *applyTracker) onApply(id raft.NodeID, msg raft.ApplyMsg) {
	if !msg.CommandValid {
		return
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.byNode[id] == nil {
		tr.byNode[id] = map[uint64]string{}
	}
	tr.byNode[id][msg.CommandIndex] = string(msg.Command)
}

// where returns every (node, index) at which cmd was applied.
func (tr *applyTracker) where(cmd []byte) []appliedAt {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []appliedAt
	for id, m := range tr.byNode {
		for index, got := range m {
			if got == string(cmd) {
				out = append(out, appliedAt{id, index})
			}
		}
	}
	return out
}

// appliedBy returns a copy of what node id applied, by index, in any run.
func (tr *applyTracker) appliedBy(id raft.NodeID) map[uint64]string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	out := make(map[uint64]string, len(tr.byNode[id]))
	for index, cmd := range tr.byNode[id] {
		out[index] = cmd
	}
	return out
}

func (tr *applyTracker) countPrefix(id raft.NodeID, prefix string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := 0
	for _, cmd := range tr.byNode[id] {
		if strings.HasPrefix(cmd, prefix) {
			n++
		}
	}
	return n
}

// slowObserver follows a node's LeaderChanged, dawdling after each wake-up.
type slowObserver struct {
	mu    sync.Mutex
	last  raft.Status
	woken int
}

func (o *slowObserver) run(wg *sync.WaitGroup, done <-chan struct{}, n *raft.Node) {
	defer wg.Done()
	for {
		ch := n.LeaderChanged() // before Status: a change after this closes ch
		st := n.Status()
		o.mu.Lock()
		o.last = st
		o.mu.Unlock()
		select {
		case <-ch:
		case <-done:
			return
		}
		o.mu.Lock()
		o.woken++
		o.mu.Unlock()
		select {
		case <-time.After(3 * rafttest.HeartbeatInterval): // a slow observer
		case <-done:
			return
		}
	}
}

// seen returns the last state the observer read and how often it woke.
func (o *slowObserver) seen() (raft.Status, int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.last, o.woken
}
