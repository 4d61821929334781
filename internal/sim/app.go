package sim

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
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

// RegisterApp is a minimal application: each command writes a fresh value to
// one of a few registers. It keeps no
// client table, so it is only for runs that check the protocol's
// invariants, not linearizability.
type RegisterApp struct{}

// NextOp implements App.
func (RegisterApp) NextOp(rng *rand.Rand, client, seq uint64) ([]byte, any) {
	cmd := make([]byte, 17)
	cmd[0] = byte(rng.IntN(4))
	binary.LittleEndian.PutUint64(cmd[1:], client)
	binary.LittleEndian.PutUint64(cmd[9:], seq)
	return cmd, nil
}

// NewReplica implements App.
func (RegisterApp) NewReplica() Replica { return &registers{} }

type registers struct{ regs [4]uint64 }

var errBadRegisterCmd = errors.New("sim: malformed register command")

func (r *registers) Apply(cmd []byte) (string, error) {
	if len(cmd) != 17 || cmd[0] >= 4 {
		return "", errBadRegisterCmd
	}
	r.regs[cmd[0]] = binary.LittleEndian.Uint64(cmd[9:]) ^ binary.LittleEndian.Uint64(cmd[1:])<<40
	return "", nil
}
