package kv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
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
	}
	if s.sessions == nil {
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

// snapshotVersion is the first byte of a snapshot's encoding.
const snapshotVersion = 1

// Snapshot returns the store's whole state, its data and its deduplication
// table (each client's last Seq and Result), as bytes for Restore. The
// encoding is deterministic: two stores that applied the same commands
// return the same bytes, so a hash of them identifies the state.
//
// The encoding, in order: a version byte (1); the number of keys, then
// each key and its value in key order; the number of clients, then, in
// client order, each client's ID, last Seq and that operation's result
// value. Numbers are uvarints, strings a uvarint length and the bytes.
func (s *Store) Snapshot() []byte {
	b := []byte{snapshotVersion}
	keys := make([]string, 0, len(s.data))
	for k := range s.data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = appendString(b, k)
		b = appendString(b, s.data[k])
	}
	clients := make([]uint64, 0, len(s.sessions))
	for c := range s.sessions {
		clients = append(clients, c)
	}
	slices.Sort(clients)
	b = binary.AppendUvarint(b, uint64(len(clients)))
	for _, c := range clients {
		ss := s.sessions[c]
		b = binary.AppendUvarint(b, c)
		b = binary.AppendUvarint(b, ss.seq)
		b = appendString(b, ss.result.Value)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// Restore replaces the store's whole state by the one Snapshot encoded:
// afterwards the store applies commands, duplicates and stale retries
// included, exactly as the store that made the snapshot would. Bytes that
// are not such an encoding (a duplicate key or client included) fail with
// an error wrapping ErrMalformed and change nothing. Restore does not keep
// data.
func (s *Store) Restore(data []byte) error {
	d := decoder{buf: data}
	if len(d.buf) == 0 || d.buf[0] != snapshotVersion {
		return fmt.Errorf("kv: restore: %w: not a snapshot (version byte)", ErrMalformed)
	}
	d.buf, d.off = d.buf[1:], 1
	var st Store
	n := d.count("key count")
	if n > 0 {
		st.data = make(map[string]string, n)
	}
	for range n {
		k, v := d.bytes("key"), d.bytes("value")
		if _, dup := st.data[k]; dup && d.err == nil {
			d.err = fmt.Errorf("%w: key %q twice", ErrMalformed, k)
		}
		if d.err != nil {
			break
		}
		st.data[k] = v
	}
	n = d.count("client count")
	if n > 0 {
		st.sessions = make(map[uint64]session, n)
	}
	for range n {
		c, seq, v := d.uvarint("client id"), d.uvarint("seq"), d.bytes("result")
		if _, dup := st.sessions[c]; dup && d.err == nil {
			d.err = fmt.Errorf("%w: client %d twice", ErrMalformed, c)
		}
		if d.err != nil {
			break
		}
		st.sessions[c] = session{seq: seq, result: Result{Value: v}}
	}
	if d.err == nil && len(d.buf) > 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes at offset %d", ErrMalformed, len(d.buf), d.off)
	}
	if d.err != nil {
		return fmt.Errorf("kv: restore: %w", d.err)
	}
	*s = st
	return nil
}
