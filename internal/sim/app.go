package sim

import (
	"errors"
	"math/rand/v2"
	"strconv"

	"github.com/raftkit/raft/internal/kv"
)

// App is the replicated application the simulated clients use: it makes
// their commands and the state machine that each node applies them to.
type App interface {
	// NextOp returns the command that client issues as its seq-th
	// operation, and a description of the operation for the history.
	NextOp(rng *rand.Rand, client, seq uint64) (cmd []byte, input any)
	// NewReplica returns an empty state machine for one node incarnation.
	NewReplica() Replica
}

// Replica is one node's copy of the application's state machine.
type Replica interface {
	// Apply applies a committed command and returns its result. An error
	// means the command could not have been proposed by a client: the
	// simulator reports it as a violation.
	Apply(cmd []byte) (result string, err error)
}

// SnapshotReplica is a Replica that can snapshot its state and restore from
// a snapshot. With such replicas the simulator takes snapshots, compacts
// logs and sends snapshots to lagging followers; it also compares the
// replicas' states at snapshots by the hash of their encoding, so the
// encoding must be deterministic: equal states, equal bytes.
type SnapshotReplica interface {
	Replica
	// Snapshot returns the state after the last command applied. The
	// simulator keeps the bytes and never modifies them.
	Snapshot() ([]byte, error)
	// Restore replaces the whole state by the one a Snapshot returned.
	Restore(data []byte) error
}

// KVApp is the default application: the key-value store of internal/kv,
// with get, put and append on three keys. Each operation carries its client
// and sequence number, so a retried one applies once, and the client-visible
// history can be checked for linearizability (Op.Input is a kv.Command).
type KVApp struct{}

var kvKeys = [...]string{"x", "y", "z"}

// NextOp implements App.
func (KVApp) NextOp(rng *rand.Rand, client, seq uint64) ([]byte, any) {
	c := kv.Command{
		ClientID: client, Seq: seq,
		Op:  kv.Op(1 + rng.IntN(3)),
		Key: kvKeys[rng.IntN(len(kvKeys))],
	}
	if c.Op != kv.OpGet {
		// Unique values make every write distinguishable in the history.
		c.Value = strconv.FormatUint(client, 10) + "." + strconv.FormatUint(seq, 10) + ";"
	}
	return c.Encode(), c
}

// NewReplica implements App.
func (KVApp) NewReplica() Replica { return kvReplica{kv.NewStore()} }

type kvReplica struct{ s *kv.Store }

func (r kvReplica) Snapshot() ([]byte, error) { return r.s.Snapshot(), nil }
func (r kvReplica) Restore(data []byte) error { return r.s.Restore(data) }

func (r kvReplica) Apply(cmd []byte) (string, error) {
	res, err := r.s.Apply(cmd)
	if errors.Is(err, kv.ErrStale) {
		// An older copy of a retried command committed after the client
		// moved on: the store ignores it, and nobody waits for its result.
		return "", nil
	}
	return res.Value, err
}
