package rafttest

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/raftkit/raft/internal/sim"
)

// Simulate runs the protocol of package raft, with an application of yours,
// in the deterministic simulator that tests the library itself: N protocol
// cores on a virtual clock, driven by one seed, under crashes that lose
// unsynced writes, slow disks, message loss, duplication and reordering,
// symmetric, one-way and partial partitions, and clock skew. After every
// event it checks Raft's safety properties and that every replica applied
// the same commands in the same order; once the faults stop it checks that
// the cluster commits again within a bound.
//
// Your application sees what a Node would give it: committed commands in
// log order, once per node incarnation; a restarted node applies from the
// start again, on a fresh state machine. If your state machine implements
// SimSnapshotter, the nodes also take snapshots of it every few commands
// and compact their logs, leaders stream snapshots (in chunks, over the
// same faulty network) to followers that lag behind the compacted log, a
// follower's state machine is replaced by the snapshot it installs, and a
// restarted node starts from its newest snapshot. Simulate then also
// checks that every snapshot taken, installed or restarted from holds, by
// the hash of its bytes, the state that the first replica to apply that
// index had there. Ten virtual seconds of a 5-node
// cluster take a few tens of milliseconds, so a test can afford thousands
// of seeds; a failing seed replays exactly.
//
// Simulate returns an error only for invalid options; a violation is in
// SimResult.Err.
func Simulate(opts SimOptions) (SimResult, error) {
	o := sim.Options{
		Seed: opts.Seed, Nodes: opts.Nodes, Duration: opts.Duration, Clients: opts.Clients,
		DisablePreVote: opts.DisablePreVote, DisableCheckQuorum: opts.DisableCheckQuorum,
		SnapshotEvery: opts.SnapshotEvery, DisableSnapshots: opts.DisableSnapshots,
	}
	if opts.App != nil {
		o.App = simApp{opts.App}
	}
	if opts.NoFaults {
		o.Faults = sim.Faults{None: true}
	}
	r, err := sim.Run(o)
	if err != nil {
		return SimResult{}, err
	}
	return SimResult{
		Seed: r.Seed, Err: r.Err, Trace: r.Trace, Steps: r.Steps,
		VirtualTime: r.VirtualTime, Recovery: r.Recovery,
		Acknowledged: r.Stats.OpsDone, Crashes: r.Stats.Crashes, Terms: r.Stats.Elections,
		Snapshots: r.Stats.Snapshots, Installs: r.Stats.Installs,
	}, nil
}

// SimOptions configure Simulate. The zero value (with a Seed) is a 5-node
// cluster under every fault for 10 virtual seconds, with 3 clients of a
// built-in key-value store.
type SimOptions struct {
	// Seed selects the run; the same options give the same run.
	Seed uint64
	// Nodes is the cluster size, 1 to 9; zero means 5.
	Nodes int
	// Duration is the virtual time during which faults are injected; zero
	// means 10s.
	Duration time.Duration
	// Clients is the number of concurrent clients; zero means 3.
	Clients int
	// App is your application; nil means a built-in key-value store.
	App SimApp
	// NoFaults turns every fault off.
	NoFaults bool
	// DisablePreVote and DisableCheckQuorum are as in raft.Config.
	DisablePreVote, DisableCheckQuorum bool
	// SnapshotEvery is how many commands a node applies between two
	// snapshots of its state machine (each gap is drawn from SnapshotEvery
	// to 3*SnapshotEvery/2); zero draws it per run from the seed, from 1 to
	// 60, with snapshots off in about a quarter of the runs. It matters
	// only for state machines that implement SimSnapshotter.
	SnapshotEvery int
	// DisableSnapshots turns snapshots off.
	DisableSnapshots bool
}

// SimApp is an application run by Simulate: it makes the commands the
// simulated clients propose, and one state machine per node incarnation.
type SimApp interface {
	// NextCommand returns the command a client proposes as its seq-th
	// operation (seq counts from 1). A client retries an operation whose
	// outcome it did not learn with the same command, so, as in production,
	// a command may commit more than once unless the application
	// deduplicates by (client, seq). Draw any randomness from rng.
	NextCommand(rng *rand.Rand, client, seq uint64) []byte
	// NewStateMachine returns an empty state machine.
	NewStateMachine() SimStateMachine
}

// SimStateMachine is one node's copy of a SimApp's state. It may also
// implement SimSnapshotter.
type SimStateMachine interface {
	// Apply applies a committed command. An error means the command cannot
	// have come from a client; Simulate reports it as a violation.
	Apply(cmd []byte) error
}

// SimSnapshotter is the optional interface of a SimStateMachine that can
// snapshot its state and restore from a snapshot. With it, Simulate
// exercises snapshots and log compaction (see Simulate).
type SimSnapshotter interface {
	// Snapshot returns the whole state after the last command applied. The
	// encoding must be deterministic, equal states giving equal bytes
	// (sort map keys, for instance): Simulate compares replicas by a hash
	// of it. It is called after every index that no replica had applied
	// before, and for every snapshot; the bytes are kept and never
	// modified.
	Snapshot() ([]byte, error)
	// Restore replaces the whole state by the one that a Snapshot, of this
	// replica or another, returned. Whatever the state machine uses to
	// recognise a retried command must be part of it, or a command retried
	// after a restore applies twice.
	Restore(snapshot []byte) error
}

// SimResult is the outcome of one simulated run.
type SimResult struct {
	Seed uint64
	// Err is the first violated property, nil if the run passed.
	Err error
	// Trace holds the last events before the end of the run.
	Trace []string
	// Steps is the number of events simulated.
	Steps int
	// VirtualTime is the simulated time the run covered.
	VirtualTime time.Duration
	// Recovery is how long after the faults stopped every node applied a
	// command proposed after they stopped.
	Recovery time.Duration
	// Acknowledged counts operations whose clients saw them applied.
	Acknowledged int
	// Crashes counts node crashes; Terms counts terms that had a leader.
	Crashes, Terms int
	// Snapshots counts the snapshots nodes took of their state machines;
	// Installs the snapshots followers installed from a leader. Both are
	// zero unless the state machine implements SimSnapshotter.
	Snapshots, Installs int
}

// String describes a failed run: the violation and the trace tail.
func (r SimResult) String() string {
	if r.Err == nil {
		return fmt.Sprintf("seed %d: ok (%d steps, %v virtual, %d operations acknowledged)", r.Seed, r.Steps, r.VirtualTime, r.Acknowledged)
	}
	return fmt.Sprintf("seed %d: %v\nlast events:\n  %s", r.Seed, r.Err, strings.Join(r.Trace, "\n  "))
}

// simApp adapts a SimApp to the simulator.
type simApp struct{ app SimApp }

func (a simApp) NextOp(rng *rand.Rand, client, seq uint64) ([]byte, any) {
	return a.app.NextCommand(rng, client, seq), nil
}

func (a simApp) NewReplica() sim.Replica {
	sm := a.app.NewStateMachine()
	if ss, ok := sm.(SimSnapshotter); ok {
		return snapReplica{simReplica{sm}, ss}
	}
	return simReplica{sm}
}

type simReplica struct{ sm SimStateMachine }

func (r simReplica) Apply(cmd []byte) (string, error) { return "", r.sm.Apply(cmd) }

// snapReplica is a simReplica whose state machine implements
// SimSnapshotter: a sim.SnapshotReplica.
type snapReplica struct {
	simReplica
	ss SimSnapshotter
}

func (r snapReplica) Snapshot() ([]byte, error) { return r.ss.Snapshot() }
func (r snapReplica) Restore(data []byte) error { return r.ss.Restore(data) }
