package rafttest_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
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
