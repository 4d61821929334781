package raft_test

// Linearizability of a replicated key-value store (internal/kv) on the
// goroutine runtime: rafttest clusters of 3 and 5 nodes whose leaders and
// followers crash and restart, whose leader is cut off in a minority, on a
// reliable or a lossy, reordering network, while concurrent clerks get, put
// and append on a few keys. Every operation a clerk calls is recorded and
// the whole history is judged by porcupine (internal/kv/kvcheck); a history
// it cannot linearize fails the test and leaves an HTML visualization.
//
// Each node applies what it commits to its own kv.Store. A clerk proposes
// on the node it believes leads, waits for that node's Store to apply the
// index it got, and takes the result from there; after a refusal, a
// timeout, a crash or a replaced entry it retries the same (ClientID, Seq)
// on another node, and the Store applies it once. An operation a clerk gives
// up on is recorded with an unknown outcome. Once the faults are undone,
// every clerk must complete an operation again (liveness, with a generous
// deadline). Sleeps only pace the faults and the clerks' retries.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/internal/kv"
	"github.com/raftkit/raft/internal/kv/kvcheck"
	"github.com/raftkit/raft/rafttest"
)

const (
	// linzHistoriesDefault histories run by default (the crash, partition
	// and unreliable scenarios, each on 3 and on 5 nodes);
	// RAFT_LINZ_HISTORIES=N runs N, cycling through every scenario.
	linzHistoriesDefault = 6
	// linzFaultPhase is how long each history injects faults under load.
	linzFaultPhase = 1500 * time.Millisecond
	// linzHealWait bounds how long, once every fault is undone, the
	// cluster may take to complete an operation for every clerk: generous,
	// for -race on a loaded two-core machine.
	linzHealWait = 20 * time.Second
	linzClerks   = 5
	linzKeys     = 3
	// linzAttemptTimeout bounds one attempt on one node: a few commit
	// round trips even on the lossy network, well under a leader change.
	linzAttemptTimeout = time.Second
	// linzGiveUp is when a clerk abandons an operation (its outcome is
	// then unknown) and moves on.
	linzGiveUp = 5 * time.Second
	// linzCheckTimeout bounds porcupine; its Unknown is a failure.
	linzCheckTimeout = time.Minute
)

// linzScenario is a family of faults; each history draws faults from one.
type linzScenario struct {
	name       string
	unreliable bool
	// snapshotEvery, if positive, has every replica snapshot its store
	// every so many commands (rafttest.Options.SnapshotEvery).
	snapshotEvery int
	faults        []linzFault
}

type linzFault func(h *linzHistory, rng *rand.Rand) string

// linzScenarios: the default histories run the first three, on 3 and on
// 5 nodes; longer runs cycle through all of them.
var linzScenarios = []linzScenario{
	{name: "crash", faults: []linzFault{linzCrashLeader, linzCrashFollower, linzCrashAll}},
	{name: "partition", faults: []linzFault{linzIsolateLeader, linzDisconnectFollower}},
	{name: "unreliable-snapshots", unreliable: true, snapshotEvery: 3, faults: []linzFault{linzCrashLeader, linzIsolateLeader, linzCrashFollower, linzDisconnectFollower}},
	{name: "mixed-snapshots", snapshotEvery: 13, faults: []linzFault{linzCrashLeader, linzCrashFollower, linzCrashAll, linzIsolateLeader, linzDisconnectFollower}},
}

// TestLinearizability runs RAFT_LINZ_HISTORIES histories (default
// linzHistoriesDefault), history i with seed RAFT_TEST_SEED+i on 3 nodes
// when i is even, 5 when odd, in scenario i/2 (mod the scenarios).
func TestLinearizability(t *testing.T) {
	histories := linzHistoriesDefault
	if s := os.Getenv("RAFT_LINZ_HISTORIES"); s != "" {
		v, err := strconv.Atoi(s)
		require.NoError(t, err, "RAFT_LINZ_HISTORIES")
		require.Positive(t, v, "RAFT_LINZ_HISTORIES")
		histories = v
	}
	seed := linzSeed(t, 100)
	var total linzTotals
	for i := range histories {
		size := 3 + 2*(i%2)
		sc := linzScenarios[(i/2)%len(linzScenarios)]
		hseed := seed + uint64(i)
		name := fmt.Sprintf("h%02d-n%d-%s", i, size, sc.name)
		rerun := fmt.Sprintf("RAFT_TEST_SEED=%d RAFT_LINZ_HISTORIES=%d go test -race -run '^TestLinearizability$/^%s$' .", seed, i+1, name)
		t.Run(name, func(t *testing.T) {
			res := linzRun(t, hseed, size, sc, rerun)
			total.add(res)
		})
	}
	t.Logf("%d histories checked by porcupine: %d operations (%d with unknown outcome), %d failed",
		total.histories, total.ops, total.unknown, total.failed)
}

// linzSeed returns RAFT_TEST_SEED if set, else def.
func linzSeed(t *testing.T, def uint64) uint64 {
	t.Helper()
	seed := def
	if s := os.Getenv("RAFT_TEST_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, "RAFT_TEST_SEED")
		seed = v
	}
	t.Logf("seed %d; history i uses seed %d+i", seed, seed)
	return seed
}

type linzTotals struct {
	mu                              sync.Mutex
	histories, ops, unknown, failed int
}

func (tt *linzTotals) add(r linzResult) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	tt.histories++
	tt.ops += r.ops
	tt.unknown += r.ops - r.returned
	if !r.ok {
		tt.failed++
	}
}

type linzResult struct {
	ops, returned int
	ok            bool
}

// linzHistory is one run: a cluster, its replicas, the clerks and the
// history they record.
type linzHistory struct {
	c     *rafttest.Cluster
	kv    *linzKV
	rec   *kvcheck.Recorder
	start time.Time
	ctx   context.Context // cancelled to stop the clerks
	size  int

	nextPID atomic.Int64 // porcupine client IDs
	// served[i] is the Call time of clerk i+1's latest operation that
	// returned (-1: none yet).
	served [linzClerks]atomic.Int64

	// Counters, for the log.
	attempts, notLeader, timeouts, replaced, snapshotted, stopped, dups atomic.Int64

	mu         sync.Mutex
	violations []string
}

func (h *linzHistory) now() int64 { return time.Since(h.start).Nanoseconds() }

// violation records a broken promise of the library or of the store, seen
// on a clerk's goroutine; the test fails with it at the end.
func (h *linzHistory) violation(format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.violations = append(h.violations, fmt.Sprintf(format, args...))
}

func linzRun(t *testing.T, seed uint64, size int, sc linzScenario, rerun string) linzResult {
	t.Logf("seed %d, %d nodes, scenario %s, %d clerks on %d keys", seed, size, sc.name, linzClerks, linzKeys)
	rng := rand.New(rand.NewPCG(seed, 2))
	kvs := newLinzKV(size)
	c := rafttest.NewCluster(t, size, rafttest.Options{Seed: seed, OnApply: kvs.onApply,
		SnapshotEvery: sc.snapshotEvery, SnapshotState: kvs.snapshot, RestoreState: kvs.restore})
	kvs.bind(c)
	c.Net.SetUnreliable(sc.unreliable)

	ctx, cancel := context.WithCancel(context.Background())
	h := &linzHistory{c: c, kv: kvs, rec: kvcheck.NewRecorder(), start: time.Now(), ctx: ctx, size: size}
	for i := range h.served {
		h.served[i].Store(-1)
	}
	var wg sync.WaitGroup
	stopClerks := sync.OnceFunc(func() { cancel(); wg.Wait() })
	// Registered after NewCluster's Close, so it runs first if the test
	// fails early: the clerks stop before the nodes do.
	t.Cleanup(stopClerks)
	for i := range linzClerks {
		ck := &linzClerk{
			id:     uint64(i + 1),
			pid:    int(h.nextPID.Add(1) - 1),
			leader: c.IDs[i%size],
			rng:    rand.New(rand.NewPCG(seed, uint64(100+i))),
		}
		wg.Add(1)
		go func() { // owner: linzRun; exits when ctx is cancelled (stopClerks)
			defer wg.Done()
			h.runClerk(ck)
		}()
	}

	var faults []string
	c.Leader()
	for phase := time.Now(); time.Since(phase) < linzFaultPhase; {
		f := sc.faults[rng.IntN(len(sc.faults))]
		faults = append(faults, f(h, rng))
		time.Sleep(time.Duration(100+rng.IntN(300)) * time.Millisecond) // let the cluster work between faults
	}
	c.Net.Heal()
	c.Net.SetUnreliable(false)
	for _, id := range c.IDs {
		c.Connect(id)
		if c.Node(id) == nil {
			kvs.restart(id)
		}
	}
	c.Leader()
	// Liveness: the healed cluster serves every clerk an operation called
	// after the heal.
	healed, healStart := h.now(), time.Now()
	live := linzWaitFor(linzHealWait, func() bool {
		for i := range h.served {
			if h.served[i].Load() < healed {
				return false
			}
		}
		return true
	})
	healTook := time.Since(healStart)
	stopClerks()
	if !live {
		t.Errorf("%v after the heal, some clerk had not completed an operation (rerun: %s)", linzHealWait, rerun)
	}

	ops := h.rec.Operations()
	total, returned := h.rec.Counts()
	terms := c.Terms()
	t.Logf("faults: %v; after the heal, every clerk served within %v", faults, healTook.Round(time.Millisecond))
	t.Logf("%d operations, %d returned, %d unknown; %d attempts (%d not leader, %d timed out, %d replaced, %d under a snapshot, %d on a stopped node), %d answered as duplicates, %d stale entries applied, %d snapshots restored; terms %v",
		total, returned, total-returned, h.attempts.Load(), h.notLeader.Load(), h.timeouts.Load(), h.replaced.Load(), h.snapshotted.Load(), h.stopped.Load(),
		h.dups.Load(), kvs.stale.Load(), kvs.restores.Load(), terms)
	for _, v := range h.violations {
		t.Errorf("%s (rerun: %s)", v, rerun)
	}
	checkStart := time.Now()
	ok, err := kvcheck.Check(ops, linzCheckTimeout)
	t.Logf("porcupine: linearizable=%v in %v", ok, time.Since(checkStart).Round(time.Millisecond))
	if !ok {
		t.Errorf("%v (rerun: %s)", err, rerun)
	}
	return linzResult{ops: total, returned: returned, ok: ok}
}

// linzWaitFor polls cond every 10ms until it holds, and reports false if
// it does not within timeout.
func linzWaitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	return true
}

// linzKV holds the current replica of each node: a new one for each
// incarnation, since a restarted node replays its log from the start.
type linzKV struct {
	c        *rafttest.Cluster
	mu       sync.Mutex
	reps     map[raft.NodeID]*linzReplica
	stale    atomic.Int64 // stale entries applied, on any replica
	restores atomic.Int64 // snapshots restored, on any replica
}

func newLinzKV(size int) *linzKV {
	k := &linzKV{reps: map[raft.NodeID]*linzReplica{}}
	for i := 1; i <= size; i++ {
		k.reps[raft.NodeID(i)] = newLinzReplica(k)
	}
	return k
}

// bind attaches the started cluster: its nodes are the first incarnations.
func (k *linzKV) bind(c *rafttest.Cluster) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.c = c
	for id, r := range k.reps {
		r.node = c.Node(id)
	}
}

// onApply is the cluster's OnApply: the node's current replica applies msg.
func (k *linzKV) onApply(id raft.NodeID, msg raft.ApplyMsg) {
	k.mu.Lock()
	r := k.reps[id]
	k.mu.Unlock()
	r.apply(msg)
}

// snapshot is the cluster's SnapshotState: node id's store, encoded.
func (k *linzKV) snapshot(id raft.NodeID) []byte {
	k.mu.Lock()
	r := k.reps[id]
	k.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.store.Snapshot()
}

// restore is the cluster's RestoreState: node id's replica replaces its
// store by the snapshot's, which covers every index up to index.
func (k *linzKV) restore(id raft.NodeID, index uint64, state []byte) error {
	k.mu.Lock()
	r := k.reps[id]
	k.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.store.Restore(state); err != nil {
		return err
	}
	k.restores.Add(1)
	r.last = max(r.last, index)
	r.restoredTo = max(r.restoredTo, index)
	close(r.changed)
	r.changed = make(chan struct{})
	return nil
}

// current returns node id's running incarnation and its replica, or a nil
// node while it is crashed or restarting.
func (k *linzKV) current(id raft.NodeID) (*raft.Node, *linzReplica) {
	k.mu.Lock()
	defer k.mu.Unlock()
	r := k.reps[id]
	return r.node, r
}

// crash crashes node id and ends its replica: clerks waiting on it retry.
func (k *linzKV) crash(id raft.NodeID) {
	k.mu.Lock()
	r := k.reps[id]
	r.node = nil
	k.mu.Unlock()
	k.c.Crash(id) // returns once the node's OnApply calls have ended
	r.kill()
}

// restart starts node id again with a new, empty replica, which the node
// fills as it replays its log.
func (k *linzKV) restart(id raft.NodeID) {
	k.crash(id)
	r := newLinzReplica(k)
	k.mu.Lock()
	k.reps[id] = r
	k.mu.Unlock()
	k.c.Restart(id)
	k.mu.Lock()
	r.node = k.c.Node(id)
	k.mu.Unlock()
}

// linzReplica is one node incarnation's kv.Store and what it applied at
// each index.
type linzReplica struct {
	kv   *linzKV
	node *raft.Node // guarded by kv.mu; nil until started and once crashed

	mu         sync.Mutex
	store      *kv.Store
	last       uint64
	restoredTo uint64 // a snapshot stands for every index up to it
	at         map[uint64]linzApplied
	changed    chan struct{} // closed and replaced at each apply, and at kill
	dead       bool
}

type linzApplied struct {
	term uint64
	cmd  kv.Command
	res  kv.Result
	err  error
}

func newLinzReplica(k *linzKV) *linzReplica {
	return &linzReplica{kv: k, store: kv.NewStore(), at: map[uint64]linzApplied{}, changed: make(chan struct{})}
}

func (r *linzReplica) apply(msg raft.ApplyMsg) {
	if !msg.CommandValid {
		return
	}
	a := linzApplied{term: msg.CommandTerm}
	a.cmd, a.err = kv.Decode(msg.Command)
	r.mu.Lock()
	defer r.mu.Unlock()
	if a.err == nil {
		a.res, a.err = r.store.ApplyCommand(a.cmd)
	}
	if errors.Is(a.err, kv.ErrStale) {
		r.kv.stale.Add(1)
	}
	r.last = max(r.last, msg.CommandIndex) // order and gaps: rafttest's checker
	r.at[msg.CommandIndex] = a
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *linzReplica) kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dead = true
	close(r.changed)
	r.changed = make(chan struct{})
}

var (
	errLinzDead     = errors.New("the node crashed before applying the index")
	errLinzReplaced = errors.New("another entry took the index")
	// errLinzSnapshotted: a snapshot from the leader covered the index
	// before the replica applied it; only a retry (deduplicated by the
	// store) tells whether the command is in it.
	errLinzSnapshotted = errors.New("a snapshot covered the index")
)

// wait waits until the replica has applied index and returns what it
// applied there: errLinzReplaced if that was an internal entry, or
// errLinzDead if the incarnation ends first, ctx.Err() if ctx does.
func (r *linzReplica) wait(ctx context.Context, index uint64) (linzApplied, error) {
	for {
		r.mu.Lock()
		if r.last >= index {
			a, ok := r.at[index]
			snapshotted := index <= r.restoredTo
			r.mu.Unlock()
			if !ok && snapshotted {
				return linzApplied{}, errLinzSnapshotted
			}
			if !ok {
				return linzApplied{}, errLinzReplaced
			}
			return a, nil
		}
		dead, changed := r.dead, r.changed
		r.mu.Unlock()
		if dead {
			return linzApplied{}, errLinzDead
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return linzApplied{}, ctx.Err()
		}
	}
}

// linzClerk is one client: one operation at a time, numbered by seq.
type linzClerk struct {
	id     uint64 // kv.Command.ClientID
	seq    uint64
	pid    int         // porcupine ClientId; a new one after an abandoned operation
	leader raft.NodeID // where to try first
	rng    *rand.Rand
}

func (ck *linzClerk) next() kv.Command {
	ck.seq++
	c := kv.Command{ClientID: ck.id, Seq: ck.seq, Key: fmt.Sprintf("k%d", ck.rng.IntN(linzKeys))}
	switch p := ck.rng.IntN(100); {
	case p < 40:
		c.Op = kv.OpGet
	case p < 65:
		c.Op, c.Value = kv.OpPut, fmt.Sprintf("%d.%d;", ck.id, ck.seq)
	default:
		c.Op, c.Value = kv.OpAppend, fmt.Sprintf("%d.%d;", ck.id, ck.seq)
	}
	return c
}

func (h *linzHistory) runClerk(ck *linzClerk) {
	for h.ctx.Err() == nil {
		h.do(ck, ck.next())
	}
}

// do runs one operation to its end: a result, or abandoned (unknown).
func (h *linzHistory) do(ck *linzClerk, cmd kv.Command) {
	data := cmd.Encode()
	call := h.now()
	id := h.rec.Call(ck.pid, kvcheck.InputOf(cmd), call)
	giveUp := time.Now().Add(linzGiveUp)
	for fails := 0; ; fails++ {
		if h.ctx.Err() != nil || time.Now().After(giveUp) {
			h.rec.Note(id, fmt.Sprintf("c%d#%d abandoned after %d attempts", cmd.ClientID, cmd.Seq, fails))
			ck.pid = int(h.nextPID.Add(1) - 1)
			return
		}
		target := ck.leader
		res, note, err := h.attempt(ck, target, cmd, data)
		if err == nil {
			h.rec.Return(id, kvcheck.Output{Value: res.Value}, h.now())
			h.rec.Note(id, fmt.Sprintf("c%d#%d: %s after %d failed attempts", cmd.ClientID, cmd.Seq, note, fails))
			if res.Dup {
				h.dups.Add(1)
			}
			h.served[ck.id-1].Store(call)
			return
		}
		var nle *raft.NotLeaderError
		switch {
		case errors.As(err, &nle) && nle.Leader != 0 && nle.Leader != target:
			ck.leader = nle.Leader
		case errors.Is(err, errLinzReplaced), errors.Is(err, raft.ErrProposalDropped),
			errors.Is(err, errLinzSnapshotted), errors.Is(err, raft.ErrProposalUnknown):
			// The node knows who leads now, or will: ask it again.
		default:
			ck.leader = raft.NodeID(int(target)%h.size + 1)
		}
		if (fails+1)%h.size == 0 {
			time.Sleep(50 * time.Millisecond) // a round of failures: no leader yet, back off
		}
	}
}

// attempt proposes cmd on node id and waits for that node to apply it,
// within linzAttemptTimeout. It returns the Result computed by that node's
// Store, and where it was applied.
func (h *linzHistory) attempt(ck *linzClerk, id raft.NodeID, cmd kv.Command, data []byte) (kv.Result, string, error) {
	h.attempts.Add(1)
	node, rep := h.kv.current(id)
	// The cluster's checker accepts only applied commands it saw proposed;
	// Cluster.Propose records and proposes, but has no ProposeWait.
	if node == nil || !linzRecordProposed(h.c, id, data) {
		h.stopped.Add(1)
		return kv.Result{}, "", raft.ErrStopped
	}
	ctx, cancel := context.WithTimeout(h.ctx, linzAttemptTimeout)
	defer cancel()
	wait := ck.rng.IntN(2) == 0
	propose := node.Propose
	if wait {
		propose = node.ProposeWait
	}
	index, term, err := propose(ctx, data)
	if err == nil {
		var a linzApplied
		a, err = rep.wait(ctx, index)
		if err == nil {
			if a.cmd.ClientID != cmd.ClientID || a.cmd.Seq != cmd.Seq {
				if wait {
					h.violation("ProposeWait(%v) on node %d returned index %d term %d, but the node applied %v (term %d) there", cmd, id, index, term, a.cmd, a.term)
				}
				err = errLinzReplaced
			} else if a.err != nil {
				h.violation("node %d applied %v at index %d: %v", id, cmd, index, a.err)
				err = a.err
			} else {
				if wait && a.term != term {
					h.violation("ProposeWait(%v) on node %d returned index %d term %d, but the node applied it in term %d", cmd, id, index, term, a.term)
				}
				return a.res, fmt.Sprintf("node %d index %d term %d", id, index, a.term), nil
			}
		}
	}
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		h.notLeader.Add(1)
	case errors.Is(err, context.DeadlineExceeded):
		h.timeouts.Add(1)
	case errors.Is(err, errLinzReplaced), errors.Is(err, raft.ErrProposalDropped):
		h.replaced.Add(1)
	case errors.Is(err, errLinzSnapshotted), errors.Is(err, raft.ErrProposalUnknown):
		h.snapshotted.Add(1)
	case errors.Is(err, raft.ErrStopped), errors.Is(err, errLinzDead):
		h.stopped.Add(1)
	case errors.Is(err, context.Canceled), errors.Is(err, raft.ErrBusy):
	default:
		h.violation("propose %v on node %d: unexpected error %v", cmd, id, err)
	}
	return kv.Result{}, "", err
}

// linzRecordProposed records cmd in c's history as proposed on node id,
// proposing nothing (Cluster.Propose records, then fails on the cancelled
// context). It reports false if node id is crashed: nothing recorded, and
// the node must not be given cmd.
func linzRecordProposed(c *rafttest.Cluster, id raft.NodeID, cmd []byte) bool {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := c.Propose(ctx, id, cmd)
	return errors.Is(err, context.Canceled)
}

// The faults. Each injects one, lets it act, undoes it, and describes it.

func linzCrashLeader(h *linzHistory, rng *rand.Rand) string {
	l := h.c.Leader()
	h.kv.crash(l)
	d := linzPause(rng, 200, 1000)
	h.kv.restart(l)
	return fmt.Sprintf("crash leader %d %v", l, d)
}

func linzCrashFollower(h *linzHistory, rng *rand.Rand) string {
	f := linzFollower(h, rng)
	h.kv.crash(f)
	d := linzPause(rng, 200, 1000)
	h.kv.restart(f)
	return fmt.Sprintf("crash follower %d %v", f, d)
}

// linzCrashAll crashes every node at once, as a power loss would (writes
// not yet synced are lost), and restarts them: what was acknowledged must
// survive.
func linzCrashAll(h *linzHistory, rng *rand.Rand) string {
	for _, id := range h.c.IDs {
		h.kv.crash(id)
	}
	d := linzPause(rng, 100, 500)
	for _, id := range h.c.IDs {
		h.kv.restart(id)
	}
	return fmt.Sprintf("crash all %v", d)
}

// linzIsolateLeader puts the leader in a minority (alone of 3, with one
// follower of 5) long enough for the majority to elect another, most
// times: the old leader may take proposals it can never commit.
func linzIsolateLeader(h *linzHistory, rng *rand.Rand) string {
	l := h.c.Leader()
	minority := []raft.NodeID{l}
	for len(minority) < (h.size-1)/2 {
		if f := linzFollower(h, rng); !slices.Contains(minority, f) {
			minority = append(minority, f)
		}
	}
	var majority []raft.NodeID
	for _, id := range h.c.IDs {
		if !slices.Contains(minority, id) {
			majority = append(majority, id)
		}
	}
	h.c.Net.Partition(minority, majority)
	d := linzPause(rng, 500, 1500)
	h.c.Net.Heal()
	return fmt.Sprintf("isolate leader in %v %v", minority, d)
}

func linzDisconnectFollower(h *linzHistory, rng *rand.Rand) string {
	f := linzFollower(h, rng)
	h.c.Disconnect(f)
	d := linzPause(rng, 200, 1000)
	h.c.Connect(f)
	return fmt.Sprintf("disconnect follower %d %v", f, d)
}

// linzFollower returns a running node other than the leader.
func linzFollower(h *linzHistory, rng *rand.Rand) raft.NodeID {
	l := h.c.Leader()
	for {
		if id := h.c.IDs[rng.IntN(h.size)]; id != l {
			return id
		}
	}
}

// linzPause lets a fault act for a random time in [lo, hi] milliseconds.
func linzPause(rng *rand.Rand, lo, hi int) time.Duration {
	d := time.Duration(lo+rng.IntN(hi-lo+1)) * time.Millisecond
	time.Sleep(d)
	return d
}
