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
// log order, once per node incarnation (a restarted node applies from the
// start again, on a fresh state machine). Ten virtual seconds of a 5-node
// cluster take a few tens of milliseconds, so a test can afford thousands
// of seeds; a failing seed replays exactly.
//
// Simulate returns an error only for invalid options; a violation is in
// SimResult.Err.
func Simulate(opts SimOptions) (SimResult, error) {
	o := sim.Options{
		Seed: opts.Seed, Nodes: opts.Nodes, Duration: opts.Duration, Clients: opts.Clients,
		DisablePreVote: opts.DisablePreVote, DisableCheckQuorum: opts.DisableCheckQuorum,
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

// SimStateMachine is one node's copy of a SimApp's state.
type SimStateMachine interface {
	// Apply applies a committed command. An error means the command cannot
	// have come from a client; Simulate reports it as a violation.
	Apply(cmd []byte) error
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

func (a simApp) NewReplica() sim.Replica { return simReplica{a.app.NewStateMachine()} }

type simReplica struct{ sm SimStateMachine }

func (r simReplica) Apply(cmd []byte) (string, error) { return "", r.sm.Apply(cmd) }
