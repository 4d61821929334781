package kv

import (
	"errors"
	"fmt"
)

// ErrStale is the error Apply returns, wrapped with the client and sequence
// numbers, for a command whose Seq is below the highest Seq already applied
// for its client: an old retry that a later operation of the same client
// overtook in the log. Such a command changes nothing. Its client has moved
// on and waits for no result, so no Result is kept for it. Match it with
// errors.Is.
var ErrStale = errors.New("kv: stale command")

// Result is what applying a Command yields. Every replica that applies the
// same log computes the same Results.
type Result struct {
	// Value is the key's value just before the command took effect, ""
	// for a key never written: for a Get, the value read; for a Put or an
	// Append, the value it replaced or extended.
	Value string
	// Dup is true when the command (its ClientID and Seq) had been applied
	// before: the store did not change, and Value is the Result of that
	// first application, so a retry reports what the operation did.
	Dup bool
}

// session is what the store remembers of one client: its last applied
// operation and that operation's result.
type session struct {
	seq    uint64
	result Result
}

// Store is the key-value state machine of one replica. Feed it the
// committed commands in log order with Apply; it applies each (ClientID,
// Seq) at most once. For each client it remembers the highest Seq applied
// and its Result: a command with that Seq is a duplicate and gets the
// remembered Result with Dup set; one with a lower Seq is stale and fails
// with ErrStale; one with a higher Seq is applied. So a client must number
// its operations in increasing order and have at most one in flight, which
// it may retry as often as it likes.
//
// A Store is not safe for concurrent use; it starts no goroutine and reads
// no clock. The zero Store is empty and ready to use; a replica that
// replays its log from the start (a restarted node) needs a new one.
type Store struct {
	data     map[string]string
	sessions map[uint64]session
}

// NewStore returns an empty Store.
func NewStore() *Store { return &Store{} }

// Apply decodes one committed command and applies it (see ApplyCommand).
// Bytes that do not decode fail with an error wrapping ErrMalformed and
// change nothing, on every replica alike. Apply does not keep data.
func (s *Store) Apply(data []byte) (Result, error) {
	c, err := Decode(data)
	if err != nil {
		return Result{}, fmt.Errorf("kv: apply: %w", err)
	}
	return s.ApplyCommand(c)
}

// ApplyCommand applies c once, as Apply does for its encoding: a new Seq
// for c's client takes effect and returns the key's previous value; the
// client's last Seq again returns the remembered Result with Dup set; an
// older Seq fails with ErrStale. An invalid Op fails with ErrMalformed.
// Only a new Seq changes the store.
func (s *Store) ApplyCommand(c Command) (Result, error) {
	if !c.Op.Valid() {
		return Result{}, fmt.Errorf("kv: apply %v: %w: unknown op", c, ErrMalformed)
	}
	if last, ok := s.sessions[c.ClientID]; ok {
		switch {
		case c.Seq == last.seq:
			r := last.result
			r.Dup = true
			return r, nil
		case c.Seq < last.seq:
			return Result{}, fmt.Errorf("kv: apply %v: %w: client %d already applied seq %d", c, ErrStale, c.ClientID, last.seq)
		}
	}
	if s.data == nil {
		s.data = map[string]string{}
		s.sessions = map[uint64]session{}
	}
	prev := s.data[c.Key]
	switch c.Op {
	case OpPut:
		s.data[c.Key] = c.Value
	case OpAppend:
		s.data[c.Key] = prev + c.Value
	}
	r := Result{Value: prev}
	s.sessions[c.ClientID] = session{seq: c.Seq, result: r}
	return r, nil
}

// Get returns key's value and whether it was ever written by a Put or an
// Append. It reads the local replica, outside the log: for tests and
// checks, not a linearizable read.
func (s *Store) Get(key string) (value string, ok bool) {
	value, ok = s.data[key]
	return value, ok
}

// Len returns the number of keys written.
func (s *Store) Len() int { return len(s.data) }
