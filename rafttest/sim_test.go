package rafttest_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raftkit/raft/rafttest"
)

// counter is a user's state machine: a counter that adds each command's
// amount once per (client, seq).
type counter struct {
	total uint64
	last  map[uint64]uint64 // client -> last seq applied
}

type counterApp struct{}

func (counterApp) NextCommand(rng *rand.Rand, client, seq uint64) []byte {
	b := binary.LittleEndian.AppendUint64(nil, client)
	b = binary.LittleEndian.AppendUint64(b, seq)
	return binary.LittleEndian.AppendUint64(b, 1+rng.Uint64N(10))
}

func (counterApp) NewStateMachine() rafttest.SimStateMachine {
	return &counter{last: map[uint64]uint64{}}
}

func (c *counter) Apply(cmd []byte) error {
	if len(cmd) != 24 {
		return errors.New("counter: malformed command")
	}
	client, seq := binary.LittleEndian.Uint64(cmd), binary.LittleEndian.Uint64(cmd[8:])
	if seq <= c.last[client] {
		return nil // a retry that committed twice
	}
	c.last[client] = seq
	c.total += binary.LittleEndian.Uint64(cmd[16:])
	return nil
}

// snapCounter is a counter that implements SimSnapshotter: its snapshot
// holds the total and, in client order, each client's last seq (which
// deduplicates retries, so it must travel with the total).
type snapCounter struct{ counter }

type snapCounterApp struct{ counterApp }

func (snapCounterApp) NewStateMachine() rafttest.SimStateMachine {
	return &snapCounter{counter{last: map[uint64]uint64{}}}
}

func (c *snapCounter) Snapshot() ([]byte, error) {
	b := binary.LittleEndian.AppendUint64(nil, c.total)
	clients := make([]uint64, 0, len(c.last))
	for id := range c.last {
		clients = append(clients, id)
	}
	slices.Sort(clients)
	for _, id := range clients {
		b = binary.LittleEndian.AppendUint64(b, id)
		b = binary.LittleEndian.AppendUint64(b, c.last[id])
	}
	return b, nil
}

func (c *snapCounter) Restore(b []byte) error {
	if len(b)%16 != 8 {
		return errors.New("counter: malformed snapshot")
	}
	c.total = binary.LittleEndian.Uint64(b)
	c.last = map[uint64]uint64{}
	for b = b[8:]; len(b) > 0; b = b[16:] {
		c.last[binary.LittleEndian.Uint64(b)] = binary.LittleEndian.Uint64(b[8:])
	}
	return nil
}

// A state machine that implements SimSnapshotter gets snapshots, log
// compaction and snapshot installs; one without gets none.
func TestSimulateUserAppSnapshots(t *testing.T) {
	installs := 0
	for seed := uint64(1); seed <= 10; seed++ {
		r, err := rafttest.Simulate(rafttest.SimOptions{Seed: seed, Nodes: 3, Duration: 3 * time.Second, App: snapCounterApp{}, SnapshotEvery: 3})
		require.NoError(t, err)
		require.NoError(t, r.Err, r.String())
		require.Greater(t, r.Acknowledged, 50)
		require.Positive(t, r.Snapshots)
		installs += r.Installs
	}
	require.Positive(t, installs, "no follower installed a snapshot in 10 seeds")

	r, err := rafttest.Simulate(rafttest.SimOptions{Seed: 1, Nodes: 3, Duration: time.Second, App: counterApp{}, SnapshotEvery: 3})
	require.NoError(t, err)
	require.NoError(t, r.Err)
	require.Zero(t, r.Snapshots)
	r, err = rafttest.Simulate(rafttest.SimOptions{Seed: 1, Nodes: 3, Duration: time.Second, App: snapCounterApp{}, DisableSnapshots: true})
	require.NoError(t, err)
	require.NoError(t, r.Err)
	require.Zero(t, r.Snapshots)
}

// A snapshot that leaves out part of the state (here the dedup table) is
// caught: the restored replica's state differs from the others' there.
type forgetfulApp struct{ snapCounterApp }

func (forgetfulApp) NewStateMachine() rafttest.SimStateMachine {
	return &forgetful{snapCounter{counter{last: map[uint64]uint64{}}}}
}

type forgetful struct{ snapCounter }

func (f *forgetful) Restore(b []byte) error {
	if err := f.snapCounter.Restore(b); err != nil {
		return err
	}
	clear(f.last)
	return nil
}

func TestSimulateCatchesIncompleteRestore(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		r, err := rafttest.Simulate(rafttest.SimOptions{Seed: seed, Nodes: 3, Duration: 3 * time.Second, App: forgetfulApp{}, SnapshotEvery: 2})
		require.NoError(t, err)
		if r.Err != nil {
			t.Logf("seed %d: %v", seed, r.Err)
			require.ErrorContains(t, r.Err, "differs from the state another replica had there")
			return
		}
	}
	t.Fatal("a restore that drops the dedup table was not caught in 20 seeds")
}

func TestSimulateUserApp(t *testing.T) {
	for seed := uint64(1); seed <= 10; seed++ {
		r, err := rafttest.Simulate(rafttest.SimOptions{Seed: seed, Nodes: 3, Duration: 3 * time.Second, App: counterApp{}})
		require.NoError(t, err)
		require.NoError(t, r.Err, r.String())
		require.Greater(t, r.Acknowledged, 50)
	}
}

// A state machine that rejects what it applies is reported with the seed.
type rejectingApp struct{ counterApp }

func (rejectingApp) NewStateMachine() rafttest.SimStateMachine { return rejecting{} }

type rejecting struct{}

func (rejecting) Apply([]byte) error { return errors.New("boom") }

func TestSimulateReportsApplyError(t *testing.T) {
	r, err := rafttest.Simulate(rafttest.SimOptions{Seed: 1, App: rejectingApp{}})
	require.NoError(t, err)
	require.ErrorContains(t, r.Err, "boom")
	require.Contains(t, r.String(), "last events")
}

func TestSimulateInvalidOptions(t *testing.T) {
	_, err := rafttest.Simulate(rafttest.SimOptions{Nodes: 12})
	require.ErrorContains(t, err, "Nodes")
}

// ExampleSimulate runs a user's state machine through a seeded fault
// schedule; the same seed always gives the same run.
func ExampleSimulate() {
	r, err := rafttest.Simulate(rafttest.SimOptions{Seed: 42, Nodes: 3, Duration: 2 * time.Second, App: counterApp{}})
	if err != nil {
		panic(err)
	}
	fmt.Println("violation:", r.Err)
	// Output: violation: <nil>
}
