package sim_test

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	_ "github.com/raftkit/raft" // registers the core with internal/simcore
	"github.com/raftkit/raft/internal/kv"
	"github.com/raftkit/raft/internal/kv/kvcheck"
	"github.com/raftkit/raft/internal/sim"
	"github.com/raftkit/raft/internal/simcore"
)

var (
	flagSeed    = flag.Uint64("sim.seed", 0, "replay this one seed (TestSimSeeds), printing its whole trace tail")
	flagSeeds   = flag.Int("sim.seeds", 0, "number of seeds TestSimSeeds runs (0: a bounded default for make test)")
	flagFirst   = flag.Uint64("sim.first", 1, "first seed TestSimSeeds runs")
	flagWorkers = flag.Int("sim.workers", 0, "parallel runs (0: GOMAXPROCS)")
	flagNodes   = flag.Int("sim.nodes", 5, "cluster size, 1..9")
	flagDur     = flag.Duration("sim.duration", 10*time.Second, "virtual time with faults per seed")
)

func TestMain(m *testing.M) {
	flag.Parse()
	if err := validateFlags(); err != nil {
		fmt.Fprintf(os.Stderr, "usage error: %v\nflags:\n", err)
		flag.PrintDefaults()
		os.Exit(2)
	}
	goleak.VerifyTestMain(m)
}

func validateFlags() error {
	switch {
	case *flagSeeds < 0:
		return fmt.Errorf("-sim.seeds %d: must be >= 0", *flagSeeds)
	case *flagWorkers < 0:
		return fmt.Errorf("-sim.workers %d: must be >= 0", *flagWorkers)
	case *flagNodes < 1 || *flagNodes > 9:
		return fmt.Errorf("-sim.nodes %d: must be in 1..9", *flagNodes)
	case *flagDur <= 0:
		return fmt.Errorf("-sim.duration %v: must be positive", *flagDur)
	case *flagFirst == 0:
		return fmt.Errorf("-sim.first 0: seeds start at 1")
	}
	return nil
}

// replayCommand is the one command that replays a seed.
func replayCommand(seed uint64) string {
	return fmt.Sprintf("go test ./internal/sim -run 'TestSimSeeds$' -v -sim.seed=%d -sim.nodes=%d -sim.duration=%v",
		seed, *flagNodes, *flagDur)
}

// failure formats a failed run: the violation, the replay command and the
// trace tail.
func failure(r sim.Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d: %v\nreplay: %s\nlast events:\n", r.Seed, r.Err, replayCommand(r.Seed))
	for _, l := range r.Trace {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}

// errNotLinearizable marks a run whose client history porcupine rejected.
var errNotLinearizable = errors.New("history not linearizable")

// checkLinearizable checks a run's kv history with porcupine; on failure
// kvcheck writes the visualization and names the file.
func checkLinearizable(r sim.Result) error {
	ops := make([]porcupine.Operation, 0, len(r.History))
	for _, op := range r.History {
		cmd, ok := op.Input.(kv.Command)
		if !ok {
			return nil // not the kv app
		}
		ret := op.Return
		if op.Unknown {
			ret = kvcheck.Infinity
		}
		ops = append(ops, porcupine.Operation{
			ClientId: int(op.Client), Input: kvcheck.InputOf(cmd),
			Output: kvcheck.Output{Value: op.Output, Unknown: op.Unknown},
			Call:   op.Call, Return: ret,
		})
	}
	if ok, err := kvcheck.Check(ops, time.Minute); !ok {
		return fmt.Errorf("%w: %v", errNotLinearizable, err)
	}
	return nil
}

// summary aggregates many runs.
type summary struct {
	mu                        sync.Mutex
	runs                      int
	failed                    []sim.Result
	steps                     int64
	virtual                   time.Duration
	maxRecovery               time.Duration
	maxRecoverySeed           uint64
	ops, unknown, crashes, el int
	checked                   int // histories porcupine checked
	// Snapshots: runs with them on, snapshots taken, transfers started,
	// chunks sent, transfers failed, snapshots installed; the most
	// installs in one run.
	snapRuns, snaps, transfers, chunks, snapFailed, installs int
	maxInstalls                                              int
	maxInstallsSeed                                          uint64
}

func (s *summary) add(r sim.Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.runs++
	s.steps += int64(r.Steps)
	s.virtual += r.VirtualTime
	s.ops += r.Stats.OpsDone
	s.unknown += r.Stats.OpsUnknown
	s.crashes += r.Stats.Crashes
	s.el += r.Stats.Elections
	if r.Stats.SnapshotEvery > 0 {
		s.snapRuns++
	}
	s.snaps += r.Stats.Snapshots
	s.transfers += r.Stats.SnapTransfers
	s.chunks += r.Stats.SnapChunks
	s.snapFailed += r.Stats.SnapFailed
	s.installs += r.Stats.Installs
	if r.Stats.Installs > s.maxInstalls {
		s.maxInstalls, s.maxInstallsSeed = r.Stats.Installs, r.Seed
	}
	if r.Err != nil {
		s.failed = append(s.failed, r)
	}
	if r.Err == nil || errors.Is(r.Err, errNotLinearizable) {
		s.checked++
	}
	if r.Recovery > s.maxRecovery {
		s.maxRecovery, s.maxRecoverySeed = r.Recovery, r.Seed
	}
}

// runSeeds runs seeds first..first+n-1 on every core and returns the
// summary and the wall time.
func runSeeds(t testing.TB, first uint64, n int, opts func(seed uint64) sim.Options) (*summary, time.Duration) {
	workers := *flagWorkers
	if workers == 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	s := &summary{}
	var next atomic.Uint64
	next.Store(first)
	last := first + uint64(n)
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				seed := next.Add(1) - 1
				if seed >= last {
					return
				}
				o := opts(seed)
				r, err := sim.Run(o)
				if err != nil {
					t.Errorf("seed %d: %v", seed, err)
					return
				}
				if r.Err == nil && o.Bugs == 0 {
					r.Err = checkLinearizable(r)
				}
				s.add(r)
			}
		}()
	}
	wg.Wait()
	return s, time.Since(start)
}

func defaultOptions(seed uint64) sim.Options {
	return sim.Options{Seed: seed, Nodes: *flagNodes, Duration: *flagDur}
}

// TestSimSeeds runs many seeded fault schedules and checks every invariant
// after every event. With -sim.seed it replays one seed.
func TestSimSeeds(t *testing.T) {
	if *flagSeed != 0 {
		r, err := sim.Run(defaultOptions(*flagSeed))
		require.NoError(t, err)
		if r.Err == nil {
			r.Err = checkLinearizable(r)
		}
		t.Logf("seed %d: steps %d, virtual %v, recovery %v, fingerprint %x, stats %+v",
			r.Seed, r.Steps, r.VirtualTime, r.Recovery, r.Fingerprint, r.Stats)
		if r.Err != nil {
			t.Fatal(failure(r))
		}
		for _, l := range r.Trace {
			t.Log(l)
		}
		return
	}
	n := *flagSeeds
	if n == 0 {
		// make test's bounded run; make sim runs thousands.
		n = 200
		if raceEnabled {
			n = 24
		}
		if testing.Short() {
			n = 8
		}
	}
	s, wall := runSeeds(t, *flagFirst, n, defaultOptions)
	report(t, s, wall)
	for i, r := range s.failed {
		if i == 3 {
			t.Errorf("... and %d more failed seeds", len(s.failed)-3)
			break
		}
		t.Error(failure(r))
	}
}

func countLinFailures(s *summary) int {
	n := 0
	for _, r := range s.failed {
		if errors.Is(r.Err, errNotLinearizable) {
			n++
		}
	}
	return n
}

func report(t testing.TB, s *summary, wall time.Duration) {
	t.Logf("%d seeds (%d nodes, %v of faults each): %d failed; %.1f seeds/s, virtual/wall %.0fx, %d events; "+
		"%d ops acknowledged, %d unknown, %d histories linearizable (porcupine); %d crashes; %d leader terms; slowest recovery after faults stopped %v (seed %d)",
		s.runs, *flagNodes, *flagDur, len(s.failed), float64(s.runs)/wall.Seconds(), s.virtual.Seconds()/wall.Seconds(),
		s.steps, s.ops, s.unknown, s.checked-countLinFailures(s), s.crashes, s.el, s.maxRecovery, s.maxRecoverySeed)
	if s.runs > 0 {
		t.Logf("snapshots on in %d of %d seeds: %d snapshots taken (%.0f per run with them on), %d transfers started (%d chunks sent, %d failed), %d installed (%.1f per run, at most %d in seed %d)",
			s.snapRuns, s.runs, s.snaps, float64(s.snaps)/float64(max(s.snapRuns, 1)), s.transfers, s.chunks, s.snapFailed,
			s.installs, float64(s.installs)/float64(max(s.snapRuns, 1)), s.maxInstalls, s.maxInstallsSeed)
	}
}

// TestSimDeterministic: one seed is one run, event for event.
func TestSimDeterministic(t *testing.T) {
	opts := sim.Options{Seed: 7, Duration: 3 * time.Second}
	a, err := sim.Run(opts)
	require.NoError(t, err)
	b, err := sim.Run(opts)
	require.NoError(t, err)
	require.NoError(t, a.Err)
	require.Equal(t, a.Fingerprint, b.Fingerprint)
	require.Equal(t, a.Steps, b.Steps)
	require.Equal(t, a.Trace, b.Trace)
	require.Equal(t, a.History, b.History)

	opts.Seed = 8
	c, err := sim.Run(opts)
	require.NoError(t, err)
	require.NotEqual(t, a.Fingerprint, c.Fingerprint, "different seeds, same run")
}

// TestSimRunsAreIndependent: a run's outcome does not depend on what runs
// beside it (no shared state between worlds).
func TestSimRunsAreIndependent(t *testing.T) {
	want := map[uint64]uint64{}
	for seed := uint64(1); seed <= 4; seed++ {
		r, err := sim.Run(sim.Options{Seed: seed, Duration: time.Second})
		require.NoError(t, err)
		want[seed] = r.Fingerprint
	}
	var wg sync.WaitGroup
	got := make([]uint64, 5)
	for seed := uint64(1); seed <= 4; seed++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := sim.Run(sim.Options{Seed: seed, Duration: time.Second})
			if err == nil {
				got[seed] = r.Fingerprint
			}
		}()
	}
	wg.Wait()
	for seed := uint64(1); seed <= 4; seed++ {
		require.Equal(t, want[seed], got[seed], "seed %d", seed)
	}
}

func TestSimOptionsValidate(t *testing.T) {
	for _, o := range []sim.Options{
		{Nodes: -1}, {Nodes: 10}, {Duration: -time.Second}, {Clients: -1},
		{LivenessBound: -1}, {MaxSteps: -1}, {TraceLen: -1},
		{Faults: sim.Faults{Crash: -1}}, {Faults: sim.Faults{Every: -1}},
	} {
		_, err := sim.Run(o)
		require.ErrorIs(t, err, sim.ErrUsage, "%+v", o)
	}
	require.NoError(t, (&sim.Options{}).Validate())
}

// TestSimStuckRunIsALivenessFailure: the step bound turns a run that never
// ends into a reported liveness failure, not a hang.
func TestSimStuckRunIsALivenessFailure(t *testing.T) {
	r, err := sim.Run(sim.Options{Seed: 1, MaxSteps: 1000})
	require.NoError(t, err)
	require.ErrorIs(t, r.Err, sim.ErrLiveness)
	require.Contains(t, r.Err.Error(), "1000 steps")
}

// TestSimNoFaults: with every fault off, the cluster elects one leader and
// every operation completes.
func TestSimNoFaults(t *testing.T) {
	r, err := sim.Run(sim.Options{Seed: 3, Duration: 2 * time.Second, Faults: sim.Faults{None: true}})
	require.NoError(t, err)
	require.NoError(t, r.Err)
	require.Equal(t, 1, r.Stats.Elections)
	require.Zero(t, r.Stats.Dropped)
	require.Greater(t, r.Stats.OpsDone, 100)
	require.LessOrEqual(t, r.Stats.OpsUnknown, 4) // at most the ones in flight at the end
}

// plantedBugs are the bugs the simulator must catch, with the cluster size
// and the most seeds each may need. The first seed that catches each, on
// this version of the simulator (snapshots on by default): Figure 8 commit
// 159 (3 nodes, snapshots off), vote before durable 37 (3 nodes), truncate
// on stale append 2, vote without log check 1, no CheckQuorum 1, install
// of a stale snapshot 31 (5 nodes; 11/300 seeds catch it, and without the
// direct install check the commit and applied checks catch the same
// seeds). Figure 8 runs with snapshots off only to keep the search short:
// on seeds 2000-4999, 28 seeds caught it with snapshots off and 19 with
// SnapshotEvery 3, but the first catching seed with the default options
// is 1071. Over 300 seeds of an earlier version (same
// faults, a simpler app) the share of seeds that caught each was: Figure 8
// 3/300 (3 nodes) and 1/300 (5 nodes); vote before durable 3/300 and 0/300;
// the other three 174-254/300. The first two need a narrow window (a leader
// crashing right after its election with its no-op lost; a crash between
// a vote and its fsync), hence the 3-node clusters and larger bounds. The
// bounds are 2-10x the first catching seed, so that a change that makes the
// simulator much weaker fails this test.
var plantedBugs = []struct {
	name        string
	bug         simcore.Bug
	want        error
	nodes       int
	maxSeeds    int
	noSnapshots bool
}{
	{"commit previous-term entries by counting (Figure 8)", simcore.BugCommitPreviousTerm, sim.ErrSafety, 3, 400, true},
	{"vote granted before it is durable", simcore.BugVoteBeforePersist, sim.ErrSafety, 3, 300, false},
	{"truncate on a stale AppendEntries", simcore.BugTruncateOnStaleAppend, sim.ErrSafety, 5, 10, false},
	{"vote without the up-to-date check", simcore.BugVoteWithoutLogCheck, sim.ErrSafety, 5, 10, false},
	{"leader without CheckQuorum", simcore.BugNoCheckQuorum, sim.ErrStale, 5, 10, false},
	{"install a snapshot at or below the commit index", simcore.BugInstallStaleSnapshot, sim.ErrSafety, 5, 200, false},
}

// TestSimCatchesPlantedBugs proves the simulator bites: for each classic
// Raft bug planted in the core, some seed among the first few fails with the
// expected kind of violation. Seeds run in order on every core; the first
// failure stops the search.
func TestSimCatchesPlantedBugs(t *testing.T) {
	for _, pb := range plantedBugs {
		t.Run(pb.name, func(t *testing.T) {
			var (
				mu     sync.Mutex
				caught *sim.Result
				next   atomic.Uint64
				wg     sync.WaitGroup
			)
			next.Store(1)
			for range runtime.GOMAXPROCS(0) {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						seed := next.Add(1) - 1
						mu.Lock()
						done := caught != nil && caught.Seed < seed
						mu.Unlock()
						if done || seed > uint64(pb.maxSeeds) {
							return
						}
						r, err := sim.Run(sim.Options{Seed: seed, Nodes: pb.nodes, Bugs: pb.bug, DisableSnapshots: pb.noSnapshots})
						if err != nil {
							t.Error(err)
							return
						}
						if r.Err != nil {
							mu.Lock()
							if caught == nil || r.Seed < caught.Seed {
								caught = &r
							}
							mu.Unlock()
						}
					}
				}()
			}
			wg.Wait()
			require.NotNil(t, caught, "not caught in %d seeds", pb.maxSeeds)
			require.ErrorIs(t, caught.Err, pb.want)
			t.Logf("caught at seed %d (bound %d, %d nodes): %v", caught.Seed, pb.maxSeeds, pb.nodes, caught.Err)
		})
	}
}

// FuzzSim lets the fuzzer choose the fault schedule: its bytes decide every
// fault-schedule choice before the seeded generator takes over.
func FuzzSim(f *testing.F) {
	f.Add(uint64(1), []byte{0, 1, 2, 3})
	f.Add(uint64(2), []byte{7, 7, 7, 7, 7, 7})
	f.Add(uint64(3), []byte{0, 0, 0, 0, 0, 0, 0, 0})
	f.Add(uint64(4), []byte{1, 0, 1, 0, 5, 200, 3, 9})
	f.Fuzz(func(t *testing.T, seed uint64, choices []byte) {
		r, err := sim.Run(sim.Options{Seed: seed, Nodes: 3 + int(seed%3), Duration: 2 * time.Second, Choices: choices})
		if err != nil {
			t.Fatal(err)
		}
		if r.Err != nil {
			t.Fatal(failure(r))
		}
	})
}

// BenchmarkSim measures the simulator itself: seeds per second and how much
// faster than real time it runs (5 nodes, 10 virtual seconds of faults).
func BenchmarkSim(b *testing.B) {
	var virtual time.Duration
	start := time.Now()
	for i := 0; i < b.N; i++ {
		r, err := sim.Run(sim.Options{Seed: uint64(i + 1)})
		if err != nil || r.Err != nil {
			b.Fatal(err, r.Err)
		}
		virtual += r.VirtualTime
	}
	wall := time.Since(start)
	b.ReportMetric(float64(b.N)/wall.Seconds(), "seeds/s")
	b.ReportMetric(virtual.Seconds()/wall.Seconds(), "virtual/wall")
}

// TestSimPartialConnectivity reports what the protocol guarantees under
// fixed partial partitions (pitfall 11), with no other fault: safety always;
// progress whenever some majority is fully connected, because PreVote and
// the leader lease keep the nodes that cannot hear the leader from deposing
// it, and CheckQuorum moves leadership off a node that cannot hear a
// majority.
func TestSimPartialConnectivity(t *testing.T) {
	side := func(id uint64) int { // 5 nodes: {1,2} | 3 | {4,5}
		switch {
		case id <= 2:
			return 0
		case id == 3:
			return 1
		}
		return 2
	}
	topologies := []struct {
		name string
		cut  func(from, to uint64) bool
	}{
		// Node 3 bridges two halves that cannot talk to each other
		// (the openraft#2080 topology).
		{"bridge", func(from, to uint64) bool { return side(from)+side(to) == 2 && from != 3 && to != 3 }},
		// A chain 1-2-3-4-5: each node hears only its neighbours.
		{"chain", func(from, to uint64) bool { return from+1 != to && to+1 != from }},
		// Node 1 can send to everyone but hears nobody.
		{"deaf node", func(from, to uint64) bool { return to == 1 }},
		// Node 1 hears everyone but nobody hears it.
		{"mute node", func(from, to uint64) bool { return from == 1 }},
	}
	for _, tp := range topologies {
		t.Run(tp.name, func(t *testing.T) {
			for seed := uint64(1); seed <= 5; seed++ {
				r, err := sim.Run(sim.Options{Seed: seed, Nodes: 5, Duration: 5 * time.Second,
					Faults: sim.Faults{None: true}, Cut: tp.cut})
				require.NoError(t, err)
				if r.Err != nil {
					t.Fatal(failure(r))
				}
				during := 0
				for _, op := range r.History {
					if !op.Unknown && op.Return < int64(5*time.Second) {
						during++
					}
				}
				t.Logf("seed %d: %d operations completed during 5s of %s, %d leader terms (max term %d), recovery %v",
					seed, during, tp.name, r.Stats.Elections, r.Stats.MaxTerm, r.Recovery)
				require.Greater(t, during, 100, "no progress under %s", tp.name)
			}
		})
	}
}
