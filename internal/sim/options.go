package sim

import (
	"errors"
	"fmt"
	"time"

	"github.com/raftkit/raft/internal/simcore"
)

// Virtual time of the simulated cluster. One tick is the heartbeat interval;
// the election timeout is ElectionTicks ticks, as in a Node whose Config has
// HeartbeatInterval 10ms and ElectionTimeout 100ms.
const (
	Tick          = 10 * time.Millisecond
	ElectionTicks = 10
)

// Options describe one simulated run. The zero value (with a Seed) is a
// 5-node cluster under every fault for 10 virtual seconds.
type Options struct {
	// Seed selects the run: the same Options give the same run, event for
	// event.
	Seed uint64
	// Nodes is the cluster size, 1 to 9. Zero means 5.
	Nodes int
	// Duration is the virtual time during which faults are injected. Zero
	// means 10s. Then every fault is healed and the run checks liveness.
	Duration time.Duration
	// Clients is the number of concurrent clients. Zero means 3.
	Clients int
	// App is the replicated application. Nil means KVApp, whose history can
	// be checked for linearizability.
	App App
	// Faults sets which faults are injected and how often. The zero value
	// means DefaultFaults().
	Faults Faults
	// Bugs plants deliberate protocol bugs in every core (tests only).
	Bugs simcore.Bug
	// Choices, if set, decides the fault schedule byte by byte before the
	// seeded generator takes over: the fuzzer's handle on the run.
	Choices []byte
	// LivenessBound is how long after the faults stop a proposal must be
	// applied by every node. Zero means 10s of virtual time.
	LivenessBound time.Duration
	// MaxSteps bounds the events of one run; a run that reaches it is
	// reported stuck. Zero means 20 million.
	MaxSteps int
	// TraceLen is how many of the last events a failure reports. Zero
	// means 60.
	TraceLen int
	// Cut, if set, cuts every directed link from -> to (node IDs 1..Nodes)
	// for which it returns true, for the whole fault phase: a fixed
	// topology such as a bridge or a chain (pitfall 11).
	Cut func(from, to uint64) bool
	// DisablePreVote and DisableCheckQuorum configure every core.
	DisablePreVote, DisableCheckQuorum bool
	// SnapshotEvery is how many entries a node applies between two
	// snapshots of its replica, each followed by log compaction: every gap
	// is drawn from SnapshotEvery to 3*SnapshotEvery/2. Zero draws it per
	// run from the seed (1 to 60), with snapshots off in about a quarter of
	// the runs. Snapshots need an App whose replicas implement
	// SnapshotReplica.
	SnapshotEvery int
	// DisableSnapshots turns snapshots off.
	DisableSnapshots bool
}

// Faults configures fault injection. Probabilities are per decision; zero
// disables a fault.
type Faults struct {
	// Every is the mean virtual time between fault-schedule decisions.
	Every time.Duration
	// Crash, Partition, OneWay, Bridge, SlowDisk, Lossy, Skew are the
	// relative weights of the fault-schedule actions (crash or restart a
	// node; split the cluster in two; cut one direction of one link; a
	// partial partition in which one node bridges two halves that cannot
	// talk; a disk that acknowledges late; a lossy, duplicating, reordering
	// network; a node whose clock runs fast or slow). Heal has weight too.
	Crash, Partition, OneWay, Bridge, SlowDisk, Lossy, Skew, Heal int
	// None disables every fault, whatever the weights.
	None bool
}

// DefaultFaults injects everything.
func DefaultFaults() Faults {
	return Faults{
		Every: 150 * time.Millisecond,
		Crash: 3, Partition: 2, OneWay: 2, Bridge: 1, SlowDisk: 2, Lossy: 2, Skew: 1, Heal: 3,
	}
}

// ErrUsage is matched by the errors of Options.Validate.
var ErrUsage = errors.New("sim: invalid options")

// Validate reports options that cannot describe a run.
func (o *Options) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrUsage, field, fmt.Sprintf(format, args...)))
	}
	if o.Nodes < 0 || o.Nodes > 9 {
		bad("Nodes", "%d is not in 1..9", o.Nodes)
	}
	if o.Duration < 0 {
		bad("Duration", "negative (%v)", o.Duration)
	}
	if o.Clients < 0 || o.Clients > 1000 {
		bad("Clients", "%d is not in 0..1000", o.Clients)
	}
	if o.LivenessBound < 0 {
		bad("LivenessBound", "negative (%v)", o.LivenessBound)
	}
	if o.MaxSteps < 0 {
		bad("MaxSteps", "negative (%d)", o.MaxSteps)
	}
	if o.TraceLen < 0 {
		bad("TraceLen", "negative (%d)", o.TraceLen)
	}
	f := o.Faults
	for _, w := range []int{f.Crash, f.Partition, f.OneWay, f.Bridge, f.SlowDisk, f.Lossy, f.Skew, f.Heal} {
		if w < 0 {
			bad("Faults", "negative weight %d", w)
			break
		}
	}
	if f.Every < 0 {
		bad("Faults.Every", "negative (%v)", f.Every)
	}
	if o.SnapshotEvery < 0 {
		bad("SnapshotEvery", "negative (%d)", o.SnapshotEvery)
	}
	return errors.Join(errs...)
}

func (o Options) withDefaults() Options {
	if o.Nodes == 0 {
		o.Nodes = 5
	}
	if o.Duration == 0 {
		o.Duration = 10 * time.Second
	}
	if o.Clients == 0 {
		o.Clients = 3
	}
	if o.App == nil {
		o.App = KVApp{}
	}
	if o.Faults == (Faults{}) {
		o.Faults = DefaultFaults()
	}
	if o.Faults.Every == 0 {
		o.Faults.Every = DefaultFaults().Every
	}
	if o.LivenessBound == 0 {
		o.LivenessBound = 10 * time.Second
	}
	if o.MaxSteps == 0 {
		o.MaxSteps = 20_000_000
	}
	if o.TraceLen == 0 {
		o.TraceLen = 60
	}
	return o
}
