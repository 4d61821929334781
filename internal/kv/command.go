// Package kv is a replicated key-value state machine for testing raft: the
// workload that the linearizability tests run on the goroutine runtime
// (package raft with rafttest) and on the deterministic simulator.
//
// A client sends a Command (Get, Put or Append on one key), tagged with its
// ClientID and a sequence number Seq that it increases by one for each new
// operation and keeps for every retry of the same operation. The command is
// proposed to raft as the bytes of Command.Encode; every replica passes each
// committed command, in log order, to its own Store.Apply. The Store applies
// each (ClientID, Seq) at most once, so a client may retry an operation on
// any node after a timeout or a leader change without applying it twice, and
// every replica computes the same Result for it.
//
// The package starts no goroutine, reads no clock and draws no random
// number: Store is a plain value that the caller drives. The goroutine
// runtime guards it with its own lock; the simulator calls it directly and
// matches each Result to its pending operation by (ClientID, Seq).
package kv

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Op is the kind of a Command. The zero Op is invalid.
type Op uint8

// The operations. Each returns, as Result.Value, the key's value before the
// operation ("" for a key never written): for Get that is the value read.
const (
	// OpGet reads a key.
	OpGet Op = 1
	// OpPut sets a key to Command.Value.
	OpPut Op = 2
	// OpAppend appends Command.Value to a key's value ("" if unset).
	OpAppend Op = 3
)

// String returns the operation's name, such as "put".
func (o Op) String() string {
	switch o {
	case OpGet:
		return "get"
	case OpPut:
		return "put"
	case OpAppend:
		return "append"
	}
	return fmt.Sprintf("Op(%d)", uint8(o))
}

// Valid reports whether o is OpGet, OpPut or OpAppend.
func (o Op) Valid() bool { return o >= OpGet && o <= OpAppend }

// ErrMalformed is the error Decode returns, wrapped with what is wrong, for
// bytes that are not the encoding of a Command. Match it with errors.Is.
var ErrMalformed = errors.New("kv: malformed command")

// Command is one client operation as it travels through the raft log.
//
// The Value of a Get is carried but ignored by Store.
type Command struct {
	// ClientID names the client; Seq is the client's sequence number for
	// this operation. A retry of the same operation reuses both.
	ClientID, Seq uint64
	// Op is what to do.
	Op Op
	// Key is the key operated on. The empty key is a key like any other.
	Key string
	// Value is the value to Put or Append.
	Value string
}

// String describes the command for logs and failure messages, such as
// `c3#7 append("k1", "x")`.
func (c Command) String() string {
	if c.Op == OpGet {
		return fmt.Sprintf("c%d#%d get(%q)", c.ClientID, c.Seq, c.Key)
	}
	return fmt.Sprintf("c%d#%d %v(%q, %q)", c.ClientID, c.Seq, c.Op, c.Key, c.Value)
}

// The encoding, in order: the Op byte; ClientID and Seq as uvarints; the
// key's length as a uvarint, then its bytes; the value's length, then its
// bytes. Varints are minimal, so each Command has exactly one encoding and
// Decode(b) succeeding implies Encode() == b.

// Encode returns the binary encoding of c, a new slice owned by the caller.
// It does not check c: an invalid Op encodes, and fails to decode.
func (c Command) Encode() []byte {
	return c.AppendEncode(make([]byte, 0, c.encodedLen()))
}

// AppendEncode appends the binary encoding of c to dst and returns the
// extended slice, like the append-style functions of strconv.
func (c Command) AppendEncode(dst []byte) []byte {
	dst = append(dst, byte(c.Op))
	dst = binary.AppendUvarint(dst, c.ClientID)
	dst = binary.AppendUvarint(dst, c.Seq)
	dst = binary.AppendUvarint(dst, uint64(len(c.Key)))
	dst = append(dst, c.Key...)
	dst = binary.AppendUvarint(dst, uint64(len(c.Value)))
	return append(dst, c.Value...)
}

func (c Command) encodedLen() int {
	return 1 + uvarintLen(c.ClientID) + uvarintLen(c.Seq) +
		uvarintLen(uint64(len(c.Key))) + len(c.Key) +
		uvarintLen(uint64(len(c.Value))) + len(c.Value)
}

func uvarintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

// Decode parses the encoding made by Encode. Any other input (empty,
// truncated, an unknown Op, a non-minimal varint, a length past the end,
// trailing bytes) yields an error wrapping ErrMalformed; Decode never
// panics. The returned strings are copies: data may be reused afterwards.
func Decode(data []byte) (Command, error) {
	d := decoder{buf: data}
	var c Command
	if len(d.buf) == 0 {
		return Command{}, fmt.Errorf("%w: empty", ErrMalformed)
	}
	c.Op = Op(d.buf[0])
	d.buf, d.off = d.buf[1:], 1
	if !c.Op.Valid() {
		return Command{}, fmt.Errorf("%w: unknown op %d", ErrMalformed, uint8(c.Op))
	}
	c.ClientID = d.uvarint("client id")
	c.Seq = d.uvarint("seq")
	c.Key = d.bytes("key")
	c.Value = d.bytes("value")
	if d.err == nil && len(d.buf) > 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes at offset %d", ErrMalformed, len(d.buf), d.off)
	}
	if d.err != nil {
		return Command{}, d.err
	}
	return c, nil
}

// decoder reads fields from buf; after the first error it reads nothing.
type decoder struct {
	buf []byte
	off int // offset of buf in the input, for messages
	err error
}

func (d *decoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf)
	switch {
	case n == 0:
		d.err = fmt.Errorf("%w: %s: truncated varint at offset %d", ErrMalformed, field, d.off)
		return 0
	case n < 0:
		d.err = fmt.Errorf("%w: %s: varint overflows 64 bits at offset %d", ErrMalformed, field, d.off)
		return 0
	case n != uvarintLen(v):
		d.err = fmt.Errorf("%w: %s: non-minimal varint at offset %d", ErrMalformed, field, d.off)
		return 0
	}
	d.buf, d.off = d.buf[n:], d.off+n
	return v
}

func (d *decoder) bytes(field string) string {
	n := d.uvarint(field + " length")
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.buf)) {
		d.err = fmt.Errorf("%w: %s: length %d at offset %d exceeds the %d bytes left", ErrMalformed, field, n, d.off, len(d.buf))
		return ""
	}
	s := string(d.buf[:n])
	d.buf, d.off = d.buf[n:], d.off+int(n)
	return s
}

// count reads a number of items that follow, each at least one byte long:
// a count beyond the bytes left is malformed (and must not size a map).
func (d *decoder) count(field string) int {
	n := d.uvarint(field)
	if d.err == nil && n > uint64(len(d.buf)) {
		d.err = fmt.Errorf("%w: %s: %d at offset %d exceeds the %d bytes left", ErrMalformed, field, n, d.off, len(d.buf))
	}
	if d.err != nil {
		return 0
	}
	return int(n)
}
