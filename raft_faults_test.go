package raft_test

// Fault scenarios on real-time rafttest clusters: the Figure 8 and churn
// tests of MIT 6.824, fast log backtracking, message counts, a slow
// application, a stalled leader disk (pitfall 10) and proposals during
// leader changes (pitfall 18). Every command the nodes apply is also judged
// by internal/check through the Cluster, so each test asserts agreement
// beyond its own checks. Waits poll against generous deadlines; a sleep
// only lets time pass between injected faults, or models a slow consumer.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/rafttest"
)

// faultWait bounds the waits of these tests: generous multiples of the
// election timeout, for -race on a loaded two-core machine.
const faultWait = 20 * time.Second

// faultSeed returns RAFT_TEST_SEED if set, else def, and logs it. The seed
// drives the cluster's network faults and the test's own fault choices;
// goroutine scheduling still varies between runs.
func faultSeed(t *testing.T, def uint64) uint64 {
	t.Helper()
	seed := def
	if s := os.Getenv("RAFT_TEST_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, "RAFT_TEST_SEED")
		seed = v
	}
	t.Logf("seed %d (rerun: RAFT_TEST_SEED=%d go test -race -run '^%s$' .)", seed, seed, t.Name())
	return seed
}

// faultWaitFor polls cond every 10ms until it holds, failing the test after
// timeout.
func faultWaitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
}

// faultSleep lets time pass between injected faults.
func faultSleep(rng *rand.Rand, maxMs int) {
	time.Sleep(time.Duration(rng.IntN(maxMs+1)) * time.Millisecond)
}

// faultTracker records, through Options.OnApply, the command each node
// applied at each index. Unlike the Cluster's helpers it never touches the
// test, so goroutines other than the test's may use it.
type faultTracker struct {
	mu sync.Mutex
	at map[uint64]map[raft.NodeID][]byte
}

func newFaultTracker() *faultTracker {
	return &faultTracker{at: map[uint64]map[raft.NodeID][]byte{}}
}

func (tr *faultTracker) onApply(id raft.NodeID, msg raft.ApplyMsg) {
	if !msg.CommandValid {
		return
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.at[msg.CommandIndex] == nil {
		tr.at[msg.CommandIndex] = map[raft.NodeID][]byte{}
	}
	tr.at[msg.CommandIndex][id] = msg.Command
}

// command returns the command some node applied at index.
func (tr *faultTracker) command(index uint64) ([]byte, bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, cmd := range tr.at[index] {
		return cmd, true
	}
	return nil, false
}

// appliedOn returns the command node id applied at index.
func (tr *faultTracker) appliedOn(id raft.NodeID, index uint64) ([]byte, bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	cmd, ok := tr.at[index][id]
	return cmd, ok
}

// nodes returns how many distinct nodes ever applied index.
func (tr *faultTracker) nodes(index uint64) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.at[index])
}

// faultTryOne gets cmd committed (applied on at least one node), proposing
// it on whichever node accepts, and returns its index. It is One without
// the test: safe on any goroutine.
func faultTryOne(c *rafttest.Cluster, tr *faultTracker, cmd []byte, timeout time.Duration) (uint64, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, id := range c.IDs {
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			index, _, err := c.Propose(ctx, id, cmd)
			cancel()
			if err != nil {
				continue
			}
			for wait := time.Now().Add(2 * time.Second); time.Now().Before(wait); {
				if got, ok := tr.command(index); ok {
					if bytes.Equal(got, cmd) {
						return index, nil
					}
					break // another command took the index: propose again
				}
				time.Sleep(10 * time.Millisecond) // poll interval
			}
			break
		}
		time.Sleep(20 * time.Millisecond) // no leader yet: try again shortly
	}
	return 0, fmt.Errorf("%q not committed within %v", cmd, timeout)
}

// faultRecordProposed records cmd in c's history as proposed, without
// proposing it, so that a test may propose it on a Node directly (with
// ProposeWait, which the Cluster does not wrap). Cluster.Propose records
// before it proposes, and Node.Propose fails at once on a done context. It
// reports false if node id is crashed (nothing recorded).
func faultRecordProposed(c *rafttest.Cluster, id raft.NodeID, cmd []byte) bool {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := c.Propose(ctx, id, cmd)
	return errors.Is(err, context.Canceled)
}

// faultProposeAll proposes cmd on every running node, as 6.824's Figure 8
// tests do, and returns the node that accepted it (0 if none did).
func faultProposeAll(c *rafttest.Cluster, cmd []byte) raft.NodeID {
	var leader raft.NodeID
	for _, id := range c.IDs {
		if c.Node(id) == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		_, _, err := c.Propose(ctx, id, cmd)
		cancel()
		if err == nil {
			leader = id
		}
	}
	return leader
}

// faultPeer returns the node k places after id in a cluster of n.
func faultPeer(id raft.NodeID, k, n int) raft.NodeID {
	return raft.NodeID((int(id)-1+k)%n + 1)
}

// TestFigure8 is 6.824's TestFigure82C: leaders crash right after taking
// proposals, leaving uncommitted entries of many terms scattered over the
// logs; a later leader must never commit an earlier term's entry by
// counting replicas (paper §5.4.2, Figure 8; pitfall 1). The checker sees
// every apply; at the end all five nodes agree on a new command.
func TestFigure8(t *testing.T) { faultFigure8(t, rafttest.Options{}, 8, false, 10*time.Second) }

// TestFigure8Unreliable is 6.824's TestFigure8Unreliable2C: the Figure 8
// scenario with leaders cut off (half the time) instead of crashed, on a
// network that loses, delays and reorders messages.
func TestFigure8Unreliable(t *testing.T) {
	faultFigure8(t, rafttest.Options{}, 88, true, 10*time.Second)
}

// faultFigure8 runs the Figure 8 scenario for about d on a cluster made
// with opts (which chooses the persister); it sets Seed. It goes on for up
// to 3d until at least 3 leaders were crashed or cut off: on a lossy
// network finding a leader can take long enough that d alone sometimes
// saw only 2 (1 run in about 20 of TestApplyBatches_Figure8Unreliable).
func faultFigure8(t *testing.T, opts rafttest.Options, defSeed uint64, unreliable bool, d time.Duration) {
	seed := faultSeed(t, defSeed)
	rng := rand.New(rand.NewPCG(seed, 1))
	opts.Seed = seed
	c := rafttest.NewCluster(t, 5, opts)
	c.Net.SetUnreliable(unreliable)
	c.One([]byte("f8-first"), 1, true)

	down := map[raft.NodeID]bool{} // crashed, or cut off when unreliable
	faults := 0
	const minFaults = 3
	start := time.Now()
	for iter := 0; time.Since(start) < d || faults < minFaults && time.Since(start) < 3*d; iter++ {
		leader := faultProposeAll(c, fmt.Appendf(nil, "f8-%d", iter))
		if rng.IntN(1000) < 100 {
			faultSleep(rng, int(rafttest.ElectionTimeout/time.Millisecond)/2)
		} else {
			faultSleep(rng, 13)
		}
		switch {
		case leader == 0 || down[leader]:
		case !unreliable:
			c.Crash(leader)
			down[leader] = true
			faults++
		case rng.IntN(1000) < 500:
			c.Disconnect(leader)
			down[leader] = true
			faults++
		}
		if len(down) > 2 {
			if s := c.IDs[rng.IntN(len(c.IDs))]; down[s] {
				if unreliable {
					c.Connect(s)
				} else {
					c.Restart(s)
				}
				delete(down, s)
			}
		}
	}
	for _, id := range c.IDs {
		if c.Node(id) == nil {
			c.Restart(id)
		}
		c.Connect(id)
	}
	t.Logf("%d leaders crashed or cut off", faults)
	require.GreaterOrEqual(t, faults, minFaults, "the scenario hit too few leaders to mean anything")
	c.One([]byte("f8-last"), 5, true)
}

// TestUnreliableAgree is 6.824's TestUnreliableAgree2C: many concurrent
// agreements on a lossy, reordering network, then a reliable one. Every
// command reported committed must end up on all five nodes.
func TestUnreliableAgree(t *testing.T) {
	seed := faultSeed(t, 3)
	tr := newFaultTracker()
	c := rafttest.NewCluster(t, 5, rafttest.Options{Seed: seed, OnApply: tr.onApply})
	c.Net.SetUnreliable(true)

	var (
		mu      sync.Mutex // guards indexes and errs
		wait    sync.WaitGroup
		indexes []uint64
		errs    []error
	)
	for iter := 1; iter < 50; iter++ {
		for j := 0; j < 4; j++ {
			wait.Add(1)
			go func() { // owner: the test; exits when faultTryOne returns
				defer wait.Done()
				index, err := faultTryOne(c, tr, fmt.Appendf(nil, "ua-%d-%d", iter, j), faultWait)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
					return
				}
				indexes = append(indexes, index)
			}()
		}
		index := c.One(fmt.Appendf(nil, "ua-%d", iter), 1, true)
		mu.Lock()
		indexes = append(indexes, index)
		mu.Unlock()
	}
	c.Net.SetUnreliable(false)
	wait.Wait()
	require.Empty(t, errs, "concurrent agreements failed")
	last := c.One([]byte("ua-last"), 5, true)
	require.Len(t, indexes, 49*5)
	for _, index := range indexes {
		require.Less(t, index, last)
		c.WaitApplied(index, 5)
		require.Equal(t, 5, tr.nodes(index), "index %d", index)
	}
}

func TestReliableChurn(t *testing.T)   { faultChurn(t, rafttest.Options{}, 21, false) }
func TestUnreliableChurn(t *testing.T) { faultChurn(t, rafttest.Options{}, 22, true) }

// faultChurn is 6.824's internalChurn: three clients propose on every node
// while nodes crash, restart, disconnect and reconnect at random; then the
// network heals and everything restarts. Every command a client saw
// committed must be on all five nodes at the index where it was seen. The
// cluster is made with opts (which chooses the persister); it sets Seed and
// adds to OnApply.
func faultChurn(t *testing.T, opts rafttest.Options, defSeed uint64, unreliable bool) {
	seed := faultSeed(t, defSeed)
	rng := rand.New(rand.NewPCG(seed, 1))
	tr := newFaultTracker()
	opts.Seed = seed
	if prev := opts.OnApply; prev != nil {
		opts.OnApply = func(id raft.NodeID, msg raft.ApplyMsg) { prev(id, msg); tr.onApply(id, msg) }
	} else {
		opts.OnApply = tr.onApply
	}
	c := rafttest.NewCluster(t, 5, opts)
	c.Net.SetUnreliable(unreliable)

	type committed struct {
		cmd   []byte
		index uint64
	}
	var (
		stop    atomic.Bool
		wg      sync.WaitGroup
		mu      sync.Mutex
		results []committed
	)
	for me := 0; me < 3; me++ {
		wg.Add(1)
		go func() { // owner: the test; exits when stop is set
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				cmd := fmt.Appendf(nil, "churn-%d-%d", me, i)
				var index uint64
				ok := false
				for _, id := range c.IDs {
					ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
					idx, _, err := c.Propose(ctx, id, cmd)
					cancel()
					if err == nil {
						index, ok = idx, true
					}
				}
				if !ok {
					time.Sleep(time.Duration(79+me*17) * time.Millisecond) // no leader: back off
					continue
				}
				for _, to := range []time.Duration{10, 20, 50, 100, 200} {
					if got, applied := tr.command(index); applied {
						if bytes.Equal(got, cmd) {
							mu.Lock()
							results = append(results, committed{cmd, index})
							mu.Unlock()
						}
						break
					}
					time.Sleep(to * time.Millisecond) // poll with back-off
				}
			}
		}()
	}

	for iter := 0; iter < 15; iter++ {
		if rng.IntN(1000) < 200 {
			c.Disconnect(c.IDs[rng.IntN(5)])
		}
		if rng.IntN(1000) < 500 {
			id := c.IDs[rng.IntN(5)]
			if c.Node(id) == nil {
				c.Restart(id)
			}
			c.Connect(id)
		}
		if rng.IntN(1000) < 200 {
			c.Crash(c.IDs[rng.IntN(5)])
		}
		time.Sleep(rafttest.ElectionTimeout * 7 / 10) // let the churn act
	}
	c.Net.SetUnreliable(false)
	for _, id := range c.IDs {
		if c.Node(id) == nil {
			c.Restart(id)
		}
		c.Connect(id)
	}
	stop.Store(true)
	wg.Wait()

	last := c.One([]byte("churn-last"), 5, true)
	t.Logf("%d commands seen committed, last index %d", len(results), last)
	require.NotEmpty(t, results, "no client command committed during the churn")
	for _, r := range results {
		require.Less(t, r.index, last)
		got := c.WaitApplied(r.index, 5)
		require.Equal(t, string(r.cmd), string(got), "index %d lost a committed command", r.index)
	}
}

// faultMsgApps sums the MsgApp messages the given nodes sent since the last
// ResetStats.
func faultMsgApps(c *rafttest.Cluster, ids ...raft.NodeID) int64 {
	var n int64
	for _, id := range ids {
		n += c.Net.Stats(id).SentByType[raft.MsgApp]
	}
	return n
}

// faultWaitCaughtUp waits until leader (still leading) reports every given
// follower matching its whole log.
func faultWaitCaughtUp(t *testing.T, c *rafttest.Cluster, leader raft.NodeID, followers ...raft.NodeID) {
	t.Helper()
	faultWaitFor(t, faultWait, fmt.Sprintf("leader %d to bring %v up to date", leader, followers), func() bool {
		st := c.Node(leader).Status()
		require.Equal(t, raft.RoleLeader, st.Role, "node %d lost leadership during catch-up", leader)
		for _, f := range followers {
			if st.Progress[f].Match != st.LastIndex {
				return false
			}
		}
		return true
	})
}

// TestFastBackup is 6.824's TestBackup2B with the round trips counted: a
// leader catching up a follower whose log diverges by 50 or more entries
// skips a whole conflicting term per round trip (paper §5.3, the
// ConflictIndex/ConflictTerm hint), so it needs a handful of MsgApps, not
// one per entry.
func TestFastBackup(t *testing.T) {
	const n, batch, maxCatchUpMsgs = 5, 50, 20
	seed := faultSeed(t, 5)
	c := rafttest.NewCluster(t, n, rafttest.Options{Seed: seed})
	ctx := context.Background()
	c.One([]byte("fb-first"), n, true)

	// Leader 1 and one follower take 50 entries that cannot commit.
	leader1 := c.Leader()
	p := func(k int) raft.NodeID { return faultPeer(leader1, k, n) }
	c.Disconnect(p(2))
	c.Disconnect(p(3))
	c.Disconnect(p(4))
	var last uint64
	for i := range batch {
		var err error
		last, _, err = c.Propose(ctx, leader1, fmt.Appendf(nil, "fb-lost1-%d", i))
		require.NoError(t, err, "leader %d refused an uncommittable proposal", leader1)
	}
	faultWaitFor(t, faultWait, "the follower to hold the uncommitted entries", func() bool {
		return c.Node(p(1)).Status().LastIndex >= last
	})

	// The other three commit 50 entries in a new term.
	c.Disconnect(p(0))
	c.Disconnect(p(1))
	c.Connect(p(2))
	c.Connect(p(3))
	c.Connect(p(4))
	for i := range batch {
		c.One(fmt.Appendf(nil, "fb-ok1-%d", i), 3, true)
	}

	// Leader 2 and one follower take 50 more that cannot commit.
	leader2 := c.Leader()
	other := p(2)
	if leader2 == other {
		other = faultPeer(leader2, 1, n)
	}
	c.Disconnect(other)
	for i := range batch {
		var err error
		last, _, err = c.Propose(ctx, leader2, fmt.Appendf(nil, "fb-lost2-%d", i))
		require.NoError(t, err, "leader %d refused an uncommittable proposal", leader2)
	}
	partner := leader2
	for _, id := range c.IDs {
		if id != leader2 && id != other && id != p(0) && id != p(1) {
			partner = id
		}
	}
	faultWaitFor(t, faultWait, "leader 2's follower to hold the uncommitted entries", func() bool {
		return c.Node(partner).Status().LastIndex >= last
	})
	require.GreaterOrEqual(t, c.Node(p(0)).Status().LastIndex, uint64(batch), "leader 1's divergent suffix")

	// Leader 1, its follower and other: only other's log is up to date
	// (§5.4.1), so it leads and must back the two others up over 50
	// entries of leader 1's term.
	for _, id := range c.IDs {
		c.Disconnect(id)
	}
	// Leader 1 was cut off less than a second ago and may still believe it
	// leads (CheckQuorum needs up to two election timeouts to notice); wait
	// until it knows better, or Leader() below may report that stale belief.
	c.WaitNoLeader(p(0), p(1))
	c.Net.ResetStats()
	c.Connect(p(0))
	c.Connect(p(1))
	c.Connect(other)
	leader3 := c.Leader()
	require.Equal(t, other, leader3, "only the node with the most up-to-date log can win (§5.4.1)")
	faultWaitCaughtUp(t, c, leader3, p(0), p(1))
	msgs := faultMsgApps(c, p(0), p(1), other)
	t.Logf("catch-up of 2 followers diverging by >= %d entries: %d MsgApps", batch, msgs)
	require.Less(t, msgs, int64(maxCatchUpMsgs), "backtracking takes one round trip per entry, not per term")
	for i := range batch {
		c.One(fmt.Appendf(nil, "fb-ok2-%d", i), 3, true)
	}

	// Everyone: leader 2 and its follower hold 50 stale entries of their
	// term past the current leader's last entry of it.
	leader4 := c.Leader()
	c.Net.ResetStats()
	for _, id := range c.IDs {
		c.Connect(id)
	}
	var followers []raft.NodeID
	for _, id := range c.IDs {
		if id != leader4 {
			followers = append(followers, id)
		}
	}
	faultWaitCaughtUp(t, c, leader4, followers...)
	msgs = faultMsgApps(c, leader4)
	t.Logf("catch-up of 4 followers: %d MsgApps", msgs)
	require.Less(t, msgs, int64(maxCatchUpMsgs), "backtracking takes one round trip per entry, not per term")
	c.One([]byte("fb-last"), n, true)
}

// faultTermsStable reports whether every node still has the term and leader
// it had in before.
func faultTermsStable(c *rafttest.Cluster, before map[raft.NodeID]raft.Status) bool {
	for id, st := range before {
		now := c.Node(id).Status()
		if now.Term != st.Term || now.Leader != st.Leader {
			return false
		}
	}
	return true
}

func faultStatuses(c *rafttest.Cluster) map[raft.NodeID]raft.Status {
	out := map[raft.NodeID]raft.Status{}
	for _, id := range c.IDs {
		out[id] = c.Node(id).Status()
	}
	return out
}

// TestCountIdle checks that an idle leader sends heartbeats at its
// heartbeat interval (at most ~10 per second per follower with the
// harness's 100ms), and nothing else of note: an idle cluster's traffic is
// bounded. A window disturbed by an election (a loaded machine) is
// measured again.
func TestCountIdle(t *testing.T) {
	const n, window = 3, 2 * time.Second
	seed := faultSeed(t, 11)
	c := rafttest.NewCluster(t, n, rafttest.Options{Seed: seed})
	for attempt := 1; ; attempt++ {
		leader := c.Leader()
		c.One(fmt.Appendf(nil, "idle-%d", attempt), n, true)
		before := faultStatuses(c)
		c.Net.ResetStats()
		start := time.Now()
		time.Sleep(window) // the assertion is about what happens meanwhile
		elapsed := time.Since(start)
		var total int64
		for _, id := range c.IDs {
			total += c.Net.Stats(id).MsgsSent
		}
		ls := c.Net.Stats(leader)
		if !faultTermsStable(c, before) {
			require.Less(t, attempt, 3, "every measurement window had an election")
			t.Logf("attempt %d: the leader changed during the window; measuring again", attempt)
			continue
		}
		secs := elapsed.Seconds()
		perFollower := float64(ls.SentByType[raft.MsgHeartbeat]) / (n - 1) / secs
		t.Logf("idle %.2fs: %.1f heartbeats/s per follower, %d messages in all", secs, perFollower, total)
		require.LessOrEqual(t, perFollower, 12.0, "heartbeats per follower per second")
		require.Positive(t, ls.SentByType[raft.MsgHeartbeat], "an idle leader heartbeats")
		require.Zero(t, ls.SentByType[raft.MsgApp], "an idle leader sends no MsgApp")
		// Heartbeats and their responses: at most 2 per follower per
		// interval, plus one interval of slack.
		maxTotal := int64(2 * (n - 1) * (int(elapsed/rafttest.HeartbeatInterval) + 2))
		require.LessOrEqual(t, total, maxTotal, "messages of an idle cluster")
		return
	}
}

// TestCountAgreement checks that agreement costs a bounded number of
// messages per command: N sequential agreements cost at most 10 messages
// each (MsgApp, its response, the commit MsgApp and its response, per
// follower, in a 3-node cluster), plus the heartbeats of the time taken.
func TestCountAgreement(t *testing.T) {
	const n, agreements = 3, 30
	seed := faultSeed(t, 12)
	c := rafttest.NewCluster(t, n, rafttest.Options{Seed: seed})
	for attempt := 1; ; attempt++ {
		c.Leader()
		c.One(fmt.Appendf(nil, "count-warm-%d", attempt), n, true)
		before := faultStatuses(c)
		c.Net.ResetStats()
		start := time.Now()
		for i := range agreements {
			c.One(fmt.Appendf(nil, "count-%d-%d", attempt, i), n, true)
		}
		elapsed := time.Since(start)
		var total, apps int64
		for _, id := range c.IDs {
			s := c.Net.Stats(id)
			total += s.MsgsSent
			apps += s.SentByType[raft.MsgApp]
		}
		if !faultTermsStable(c, before) {
			require.Less(t, attempt, 3, "every measurement window had an election")
			t.Logf("attempt %d: the leader changed; measuring again", attempt)
			continue
		}
		heartbeats := int64(2 * (n - 1) * (int(elapsed/rafttest.HeartbeatInterval) + 2))
		t.Logf("%d agreements in %v: %d messages (%d MsgApp), heartbeat allowance %d",
			agreements, elapsed, total, apps, heartbeats)
		require.LessOrEqual(t, total, int64(10*agreements)+heartbeats, "messages per agreement")
		require.LessOrEqual(t, apps, int64(2*(n-1)*agreements+n), "MsgApps per agreement")
		return
	}
}

// TestSlowApplyConsumerNoElection runs a cluster whose application takes
// 20ms per command while proposals keep coming. The leader must push back
// on proposals (they block until their context ends) rather than on the
// protocol: no node's term, role or leader changes, and commit runs ahead of
// the application. Afterwards every node applies everything.
func TestSlowApplyConsumerNoElection(t *testing.T) {
	const n, backlog = 3, 8
	seed := faultSeed(t, 13)
	c := rafttest.NewCluster(t, n, rafttest.Options{
		Seed:    seed,
		Config:  func(cfg *raft.Config) { cfg.MaxApplyBacklog = backlog },
		OnApply: func(raft.NodeID, raft.ApplyMsg) { time.Sleep(20 * time.Millisecond) }, // a slow application
	})
	leader := c.Leader()
	c.One([]byte("slow-first"), n, true)
	before := faultStatuses(c)
	changed := map[raft.NodeID]<-chan struct{}{}
	for _, id := range c.IDs {
		changed[id] = c.Node(id).LeaderChanged()
	}
	require.True(t, faultTermsStable(c, before))

	var (
		stop              atomic.Bool
		wg                sync.WaitGroup
		ok, pushed, other atomic.Int64
		otherErr          atomic.Value
	)
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() { // owner: the test; exits when stop is set
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				// Short deadlines: a proposal the leader holds back fails.
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				_, _, err := c.Propose(ctx, leader, fmt.Appendf(nil, "slow-%d-%d", w, i))
				cancel()
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, context.DeadlineExceeded):
					pushed.Add(1)
				default:
					other.Add(1)
					otherErr.Store(err)
				}
			}
		}()
	}
	var maxGap uint64 // committed on the leader, not yet received by its application
	// Run for 3s, and on until the leader has pushed back (it fills the
	// backlog within a second or so).
	for start := time.Now(); time.Since(start) < 3*time.Second || (pushed.Load() == 0 && time.Since(start) < faultWait); {
		commit := c.Node(leader).Status().Commit
		maxGap = max(maxGap, commit-min(commit, c.LastApplied(leader)))
		time.Sleep(20 * time.Millisecond) // sampling interval
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("proposals: %d accepted, %d pushed back; commit ran up to %d entries ahead of the application",
		ok.Load(), pushed.Load(), maxGap)
	require.Zero(t, other.Load(), "unexpected Propose errors, e.g. %v", otherErr.Load())
	require.Positive(t, ok.Load(), "no proposal was accepted")
	require.Positive(t, pushed.Load(), "the leader never pushed back on proposals")
	require.Greater(t, maxGap, uint64(1), "commit never ran ahead of a slow application")

	// Let the application catch up: every node's application receives
	// everything the leader holds.
	faultWaitFor(t, faultWait, "every node's application to receive everything", func() bool {
		ls := c.Node(leader).Status()
		for _, id := range c.IDs {
			if c.LastApplied(id) != ls.LastIndex || c.Node(id).Status().Commit != ls.LastIndex {
				return false
			}
		}
		return true
	})
	for id, ch := range changed {
		select {
		case <-ch:
			t.Fatalf("node %d saw a change of role, term or leader: %+v (before: %+v)", id, c.Node(id).Status(), before[id])
		default:
		}
	}
	require.True(t, faultTermsStable(c, before), "a slow application caused an election")
	c.One([]byte("slow-last"), n, true)
}

// faultOutcome names the result of a proposal.
func faultOutcome(err error) string {
	for _, e := range []struct {
		err  error
		name string
	}{
		{raft.ErrNotLeader, "not leader"}, {raft.ErrStopped, "stopped"},
		{context.DeadlineExceeded, "deadline"}, {raft.ErrProposalDropped, "dropped"},
	} {
		if errors.Is(err, e.err) {
			return e.name
		}
	}
	if err != nil {
		return "unexpected: " + err.Error()
	}
	return "ok"
}

// TestNodePitfall18_EveryProposalEnds: every Propose and ProposeWait call
// ends, with a result or an error, within its context's deadline, while
// leaders crash, restart and get cut off (etcd-io/etcd#8975). A successful
// ProposeWait means the command was delivered on that node at that index.
func TestNodePitfall18_EveryProposalEnds(t *testing.T) {
	const n, workers = 3, 8
	const grace = 3 * time.Second // scheduling slack on a loaded machine, not a speed bound
	seed := faultSeed(t, 18)
	tr := newFaultTracker()
	c := rafttest.NewCluster(t, n, rafttest.Options{Seed: seed, OnApply: tr.onApply})
	c.Leader()

	type waited struct {
		id    raft.NodeID
		index uint64
		cmd   []byte
	}
	var (
		stop       atomic.Bool
		wg         sync.WaitGroup
		mu         sync.Mutex
		violations []string
		waits      []waited
		outcomes   = map[string]int{}
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() { // owner: the test; exits when stop is set
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)+100))
			for i := 0; !stop.Load(); i++ {
				id := c.IDs[rng.IntN(n)]
				cmd := fmt.Appendf(nil, "p18-%d-%d", w, i)
				node := c.Node(id)
				if node == nil || !faultRecordProposed(c, id, cmd) {
					time.Sleep(5 * time.Millisecond) // node down: pick another
					continue
				}
				wait := rng.IntN(2) == 0
				timeout := time.Duration(50+rng.IntN(1500)) * time.Millisecond
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				start := time.Now()
				propose := map[bool]func(context.Context, []byte) (uint64, uint64, error){false: node.Propose, true: node.ProposeWait}[wait]
				index, _, err := propose(ctx, cmd)
				took := time.Since(start)
				cancel()
				outcome := map[bool]string{false: "Propose ", true: "ProposeWait "}[wait] + faultOutcome(err)
				mu.Lock()
				outcomes[outcome]++
				if took > timeout+grace {
					violations = append(violations, fmt.Sprintf("%s on node %d took %v with a %v deadline", outcome, id, took, timeout))
				}
				if wait && err == nil {
					waits = append(waits, waited{id, index, cmd})
				}
				mu.Unlock()
				if errors.Is(err, raft.ErrNotLeader) {
					time.Sleep(2 * time.Millisecond) // do not spin on followers
				}
			}
		}()
	}

	rng := rand.New(rand.NewPCG(seed, 1))
	for start := time.Now(); time.Since(start) < 6*time.Second; {
		leader := c.Leader()
		if rng.IntN(2) == 0 {
			c.Crash(leader)
			faultSleep(rng, 800)
			c.Restart(leader)
		} else {
			c.Disconnect(leader)
			faultSleep(rng, 800)
			c.Connect(leader)
		}
		faultSleep(rng, 500)
	}
	stop.Store(true)
	ended := make(chan struct{})
	go func() { wg.Wait(); close(ended) }() // owner: the test; exits when the workers do
	select {
	case <-ended:
	case <-time.After(faultWait):
		t.Fatal("proposal calls still running long after their deadlines: a proposal hangs")
	}

	t.Logf("outcomes: %v", outcomes)
	require.Empty(t, violations, "calls that outlived their deadline")
	for o := range outcomes {
		require.NotContains(t, o, "unexpected")
	}
	require.Positive(t, outcomes["Propose ok"])
	require.Positive(t, outcomes["ProposeWait ok"])
	require.Positive(t, outcomes["Propose not leader"]+outcomes["ProposeWait not leader"])
	for _, w := range waits {
		faultWaitFor(t, faultWait, fmt.Sprintf("node %d's apply of index %d", w.id, w.index), func() bool {
			_, ok := tr.appliedOn(w.id, w.index)
			return ok
		})
		got, _ := tr.appliedOn(w.id, w.index)
		require.Equal(t, string(w.cmd), string(got), "ProposeWait succeeded, but node %d applied another command at %d", w.id, w.index)
	}
	c.One([]byte("p18-last"), n, true)
}
