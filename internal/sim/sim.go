// Package sim is a deterministic simulator for the protocol core of package
// raft. It drives N cores (not the goroutine runtime) on a virtual clock from
// one seeded generator, under crashes that lose unsynced writes, slow disks,
// message loss, duplication, delay and reordering, symmetric, one-way and
// partial partitions, and clock skew. After every event it checks the
// safety properties of Raft (Figure 3 of the paper) and a few of its own;
// once the faults stop it checks that the cluster elects a leader and
// commits again within a bound.
//
// One seed gives one run, event for event: a failure reports its seed and
// the last events before it, and rerunning that seed replays it exactly.
package sim

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/raftkit/raft/internal/simcore"
)

// Violation errors. A failed run's Result.Err matches one of them with
// errors.Is.
var (
	// ErrSafety is a broken safety property.
	ErrSafety = errors.New("safety violation")
	// ErrLiveness is a cluster that did not make progress within the bound
	// once faults stopped, or a run that exceeded its step bound.
	ErrLiveness = errors.New("liveness violation")
	// ErrStale is a leader that kept leading without hearing from a
	// majority for longer than CheckQuorum allows.
	ErrStale = errors.New("stale leader")
)

// Result is the outcome of one run.
type Result struct {
	Seed uint64
	// Err is the first violation, nil if the run passed.
	Err error
	// Trace holds the last events before the end of the run (or the
	// violation), one line each.
	Trace []string
	// Fingerprint is a hash of every event of the run: equal for two runs
	// of the same Options.
	Fingerprint uint64

	Steps       int           // events processed
	VirtualTime time.Duration // virtual time simulated
	// Recovery is how long after the faults stopped every node applied a
	// command proposed after they stopped.
	Recovery time.Duration

	// History is every client operation, for a linearizability check.
	History []Op

	Stats Stats
}

// Stats counts what happened in a run.
type Stats struct {
	Messages, Dropped, Duplicated int
	Crashes, Restarts             int
	Elections                     int // distinct leader terms
	MaxTerm                       uint64
	Committed                     uint64 // highest index committed
	OpsDone, OpsUnknown           int
	// SnapshotEvery is the run's gap between a node's snapshots (see
	// Options.SnapshotEvery), 0 with snapshots off.
	SnapshotEvery int
	// Snapshots counts the snapshots nodes took of their own state;
	// SnapTransfers the snapshot transfers leaders started, SnapChunks the
	// chunks they sent, SnapFailed the transfers given up; Installs the
	// snapshots followers installed from a leader.
	Snapshots, SnapTransfers, SnapChunks, SnapFailed, Installs int
}

// Op is one client operation as a client saw it: issued at Call, answered at
// Return (virtual nanoseconds). An operation whose outcome the client never
// learned has Unknown set and Return after every other.
type Op struct {
	Client  uint64
	Seq     uint64
	Input   any    // what App.NextOp returned
	Output  string // the result of the command, from the replica that answered
	Call    int64
	Return  int64
	Unknown bool
}

// Run simulates one run. It returns an error only for invalid options;
// violations are reported in Result.Err.
func Run(opts Options) (Result, error) {
	if err := opts.Validate(); err != nil {
		return Result{}, err
	}
	w, err := newWorld(opts.withDefaults())
	if err != nil {
		return Result{}, err
	}
	w.run()
	return w.result(), nil
}

type world struct {
	opts Options
	rng  *rand.Rand // every random choice of the run
	// choices are the fuzzer's bytes, consumed by the fault schedule before rng.
	choices []byte

	now    int64
	seq    uint64
	queue  eventQueue
	free   []*event
	steps  int
	err    error
	healed bool
	healAt int64
	endAt  int64

	nodes   []*node
	peers   []uint64
	net     network
	clients []*client
	inv     invariants
	trace   trace
	fp      uint64 // fingerprint

	history []Op
	stats   Stats

	msgBuf   []simcore.Msg
	entBuf   []simcore.Entry
	sendBuf  []simcore.SnapshotSend
	chunkBuf []simcore.Msg

	snap snapConfig

	recovered bool
	recovery  int64

	// Replication limits of every core, drawn per run: tiny messages make
	// states reachable that batching hides (a new leader's no-op travelling
	// apart from the earlier entries before it, as in Figure 8).
	maxMsgBytes, maxInflight int
}

func newWorld(o Options) (*world, error) {
	w := &world{
		opts:    o,
		rng:     rand.New(rand.NewPCG(o.Seed, 0x5eed_5eed_5eed_5eed)),
		choices: o.Choices,
		fp:      fnvOffset,
	}
	w.trace.init(o.TraceLen)
	w.maxMsgBytes = []int{1, 100, 0}[w.rng.IntN(3)]
	w.maxInflight = []int{1, 2, 0}[w.rng.IntN(3)]
	w.drawSnapConfig()
	if w.snap.on {
		w.stats.SnapshotEvery = w.snap.every
	}
	w.net.init(o.Nodes)
	for i := 0; i < o.Nodes; i++ {
		w.peers = append(w.peers, uint64(i+1))
	}
	w.inv.init(w)
	if o.Cut != nil {
		for i := range o.Nodes {
			for j := range o.Nodes {
				w.net.cut[i][j] = i != j && o.Cut(uint64(i+1), uint64(j+1))
			}
		}
	}
	for i := 0; i < o.Nodes; i++ {
		n := &node{w: w, idx: i, id: uint64(i + 1), tickEvery: int64(Tick)}
		w.nodes = append(w.nodes, n)
		if err := n.start(); err != nil {
			return nil, err
		}
	}
	for i := 0; i < o.Clients; i++ {
		w.clients = append(w.clients, &client{w: w, idx: i, id: uint64(i + 1)})
	}
	return w, nil
}

func (w *world) run() {
	for _, n := range w.nodes {
		// Random phases, so that nodes do not tick in lockstep.
		w.schedule(event{at: w.rng.Int64N(int64(Tick)), kind: evTick, node: n.idx, inc: n.inc})
	}
	for _, c := range w.clients {
		w.schedule(event{at: w.rng.Int64N(int64(50 * time.Millisecond)), kind: evClient, node: c.idx})
	}
	if !w.opts.Faults.None {
		w.schedule(event{at: w.faultDelay(), kind: evFault})
	}
	w.schedule(event{at: int64(w.opts.Duration), kind: evHeal})
	w.endAt = int64(w.opts.Duration + w.opts.LivenessBound)
	w.schedule(event{at: w.endAt, kind: evEnd})

	for len(w.queue) > 0 && w.err == nil {
		e := w.queue.pop()
		w.now = e.at
		w.steps++
		if w.steps > w.opts.MaxSteps {
			w.fail(ErrLiveness, "run exceeded %d steps at %v: stuck", w.opts.MaxSteps, time.Duration(w.now))
			break
		}
		if e.kind == evEnd {
			w.finish()
			break
		}
		w.dispatch(e)
		*e = event{}
		w.free = append(w.free, e)
	}
}

func (w *world) dispatch(e *event) {
	w.fingerprint(e)
	switch e.kind {
	case evTick:
		n := w.nodes[e.node]
		if !n.up || e.inc != n.inc {
			return
		}
		w.trace.add(w.now, "tick", n.id, "")
		n.core.Tick()
		n.afterStep()
		w.schedule(event{at: w.now + n.tickEvery, kind: evTick, node: n.idx, inc: n.inc})
	case evDeliver:
		w.deliver(e.msg, e.inc)
	case evDiskDone:
		n := w.nodes[e.node]
		if !n.up || e.inc != n.inc {
			return
		}
		n.diskDone(e.batch)
	case evFault:
		if w.healed {
			return
		}
		w.faultStep()
		w.schedule(event{at: w.now + w.faultDelay(), kind: evFault})
	case evClient:
		w.clients[e.node].act(e.inc)
	case evCrash:
		if n := w.nodes[e.node]; n.up && e.inc == n.inc && !w.healed {
			n.crash()
		}
	case evHeal:
		w.heal()
	case evCompact, evSnapTimer, evSnapCommit:
		n := w.nodes[e.node]
		if !n.up || e.inc != n.inc {
			return
		}
		switch e.kind {
		case evCompact:
			n.compact(e.arg)
		case evSnapTimer:
			n.snapTimer(e.peer, e.arg)
		default:
			n.commitReceived()
		}
	}
}

// schedule queues e; e.at is absolute virtual time. Events are recycled:
// a run schedules millions of them.
func (w *world) schedule(e event) {
	var p *event
	if n := len(w.free); n > 0 {
		p = w.free[n-1]
		w.free = w.free[:n-1]
	} else {
		p = new(event)
	}
	*p = e
	p.seq = w.seq
	w.seq++
	w.queue.push(p)
}

// fail records the first violation; the run stops after the current event.
func (w *world) fail(kind error, format string, args ...any) {
	if w.err != nil {
		return
	}
	w.err = fmt.Errorf("%w at %v: %s", kind, time.Duration(w.now), fmt.Sprintf(format, args...))
	w.trace.add(w.now, "VIOLATION", 0, w.err.Error())
}

// heal stops every fault: the network is reliable and fully connected again,
// disks and clocks are normal, and every crashed node restarts. From now on
// the cluster must make progress within LivenessBound.
func (w *world) heal() {
	w.healed = true
	w.healAt = w.now
	w.trace.add(w.now, "heal", 0, "faults stop")
	w.net.heal()
	for _, n := range w.nodes {
		n.slowUntil = 0
		n.crashAt = crashNone
		n.tickEvery = int64(Tick)
		if !n.up {
			n.restart()
		}
	}
	w.inv.startRecovery()
}

// finish runs the end-of-run checks.
func (w *world) finish() {
	w.trace.add(w.now, "end", 0, "")
	if !w.recovered {
		w.fail(ErrLiveness, "%v after the faults stopped, not every node had applied a command proposed since (bound %v); %s",
			time.Duration(w.now-w.healAt), w.opts.LivenessBound, w.statusLine())
		return
	}
	w.inv.checkAcknowledged()
}

func (w *world) statusLine() string {
	s := ""
	for _, n := range w.nodes {
		if !n.up {
			s += fmt.Sprintf("[%d down] ", n.id)
			continue
		}
		st := n.core.Status()
		s += fmt.Sprintf("[%d %s t%d lead %d commit %d applied %d last %d] ",
			n.id, roleName(st.Role), st.Term, st.Lead, st.Commit, st.Applied, st.LastIndex)
	}
	return s
}

func (w *world) result() Result {
	r := Result{
		Seed:        w.opts.Seed,
		Err:         w.err,
		Trace:       w.trace.lines(),
		Fingerprint: w.fp,
		Steps:       w.steps,
		VirtualTime: time.Duration(w.now),
		Stats:       w.stats,
	}
	if w.recovered {
		r.Recovery = time.Duration(w.recovery)
	}
	for _, c := range w.clients {
		c.giveUp()
	}
	r.History = w.history
	for _, op := range w.history {
		if op.Unknown {
			r.Stats.OpsUnknown++
		} else {
			r.Stats.OpsDone++
		}
	}
	r.Stats.Elections = len(w.inv.leaders)
	return r
}

func roleName(r simcore.Role) string {
	switch r {
	case simcore.Leader:
		return "leader"
	case simcore.Candidate:
		return "candidate"
	case simcore.PreCandidate:
		return "precandidate"
	}
	return "follower"
}

// FNV-1a, for fingerprints and command identities.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnvAdd(h, v uint64) uint64 {
	for i := 0; i < 8; i++ {
		h ^= v & 0xff
		h *= fnvPrime
		v >>= 8
	}
	return h
}

func hashBytes(b []byte) uint64 {
	h := uint64(fnvOffset)
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return h
}

func (w *world) fingerprint(e *event) {
	h := fnvAdd(w.fp, uint64(e.at))
	h = fnvAdd(h, uint64(e.kind)<<32|uint64(e.node))
	if e.kind == evDeliver {
		h = fnvAdd(h, e.msg.From<<32|e.msg.To)
		h = fnvAdd(h, e.msg.Term)
		h = fnvAdd(h, e.msg.Index)
	}
	w.fp = h
}
