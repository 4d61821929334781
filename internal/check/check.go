// Package check verifies what the nodes of a cluster applied: every node
// applies the same command at each index, in increasing index order, each
// index at most once per node incarnation, skipping no command another node
// applied, and only commands that were proposed. A snapshot may stand for
// a prefix of the commands: each incarnation keeps a digest of its state
// (a hash chain of the commands it applied), and a snapshot restored at an
// index must carry the digest every node had there.
package check

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sort"
	"sync"
)

// History records what each node incarnation applied. A node that crashes
// and restarts replays its log from the start as a new incarnation. It is
// safe for concurrent use.
type History struct {
	mu           sync.Mutex
	byIndex      map[uint64][]byte // the command applied at each index, by whoever applied it first
	digests      map[uint64]Digest // the state digest after each index, by whoever reached it first
	proposed     map[string]bool   // nil: proposals are not checked
	incarnations []*Incarnation
	err          error // first violation
}

// Incarnation is one run of one node: from a (re)start until it stops.
type Incarnation struct {
	h          *History
	Node       uint64
	Gen        int // how many incarnations of Node came before
	last       uint64
	applied    map[uint64]bool
	digest     Digest // of the state after last
	restoredTo uint64 // highest index a restored snapshot covered
}

// Digest identifies a state machine's state: the SHA-256 hash chain of the
// commands applied, each with its index.
type Digest [sha256.Size]byte

// next returns the digest after applying cmd at index to the state d.
func (d Digest) next(index uint64, cmd []byte) Digest {
	h := sha256.New()
	h.Write(d[:])
	h.Write(binary.BigEndian.AppendUint64(nil, index))
	h.Write(cmd)
	var out Digest
	h.Sum(out[:0])
	return out
}

// NewHistory returns an empty History. With checkProposed, every applied
// command must have been passed to Proposed first.
func NewHistory(checkProposed bool) *History {
	h := &History{byIndex: map[uint64][]byte{}, digests: map[uint64]Digest{}}
	if checkProposed {
		h.proposed = map[string]bool{}
	}
	return h
}

// Proposed records that cmd was proposed (before it is proposed, so that an
// apply can never race ahead of the record).
func (h *History) Proposed(cmd []byte) {
	h.mu.Lock()
	if h.proposed != nil {
		h.proposed[string(cmd)] = true
	}
	h.mu.Unlock()
}

// Start begins a new incarnation of node.
func (h *History) Start(node uint64) *Incarnation {
	h.mu.Lock()
	defer h.mu.Unlock()
	gen := 0
	for _, in := range h.incarnations {
		if in.Node == node {
			gen++
		}
	}
	in := &Incarnation{h: h, Node: node, Gen: gen, applied: map[uint64]bool{}}
	h.incarnations = append(h.incarnations, in)
	return in
}

// Apply records that the incarnation applied cmd at index. It returns the
// first violation seen so far in the whole history, if any.
func (in *Incarnation) Apply(index uint64, cmd []byte) error {
	h := in.h
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case index <= in.last:
		h.failLocked("node %d (incarnation %d) applied index %d after index %d: out of order or twice", in.Node, in.Gen, index, in.last)
	case h.proposed != nil && !h.proposed[string(cmd)]:
		h.failLocked("node %d applied %q at index %d, which was never proposed", in.Node, cmd, index)
	}
	if prev, ok := h.byIndex[index]; ok && !bytes.Equal(prev, cmd) {
		h.failLocked("node %d (incarnation %d) applied %q at index %d, another node applied %q there", in.Node, in.Gen, cmd, index, prev)
	} else if !ok {
		h.byIndex[index] = bytes.Clone(cmd)
	}
	if index > in.last {
		in.digest = in.digest.next(index, cmd)
		in.recordDigestLocked(index)
	}
	in.last = max(in.last, index)
	in.applied[index] = true
	return h.err
}

func (in *Incarnation) recordDigestLocked(index uint64) {
	h := in.h
	if d, ok := h.digests[index]; !ok {
		h.digests[index] = in.digest
	} else if d != in.digest {
		h.failLocked("node %d (incarnation %d) has another state after index %d than a node before it", in.Node, in.Gen, index)
	}
}

// Digest returns the digest of the incarnation's state after Last.
func (in *Incarnation) Digest() Digest {
	in.h.mu.Lock()
	defer in.h.mu.Unlock()
	return in.digest
}

// Restore records that the incarnation replaced its state by a snapshot
// covering every index up to index, whose state has digest d. The snapshot
// must lie ahead of what it applied, and d must be the state every node had
// after index. It returns the first violation seen so far, if any.
func (in *Incarnation) Restore(index uint64, d Digest) error {
	h := in.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if index <= in.last && in.last != 0 {
		h.failLocked("node %d (incarnation %d) restored a snapshot at %d after applying up to %d: rolled back", in.Node, in.Gen, index, in.last)
	}
	in.digest = d
	in.recordDigestLocked(index)
	in.last = max(in.last, index)
	in.restoredTo = max(in.restoredTo, index)
	return h.err
}

// Last returns the highest index the incarnation applied.
func (in *Incarnation) Last() uint64 {
	in.h.mu.Lock()
	defer in.h.mu.Unlock()
	return in.last
}

// Applied reports whether the incarnation applied index, itself or within a
// restored snapshot, and what was applied there by the cluster.
func (in *Incarnation) Applied(index uint64) (cmd []byte, ok bool) {
	in.h.mu.Lock()
	defer in.h.mu.Unlock()
	if !in.applied[index] && index > in.restoredTo {
		return nil, false
	}
	return in.h.byIndex[index], true
}

// Err returns the first violation recorded by Apply, or nil.
func (h *History) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

// Check runs the checks that need the whole history: no incarnation skipped
// an index at which any node applied a command, below the highest index it
// applied itself. It returns the first violation of any check.
func (h *History) Check() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	indexes := make([]uint64, 0, len(h.byIndex))
	for i := range h.byIndex {
		indexes = append(indexes, i)
	}
	sort.Slice(indexes, func(a, b int) bool { return indexes[a] < indexes[b] })
	for _, in := range h.incarnations {
		for _, i := range indexes {
			if i >= in.last {
				break
			}
			if i <= in.restoredTo {
				continue // a snapshot stands for it
			}
			if !in.applied[i] {
				h.failLocked("node %d (incarnation %d) skipped index %d (%q) but applied up to %d", in.Node, in.Gen, i, h.byIndex[i], in.last)
				break
			}
		}
	}
	return h.err
}

// Command returns the command applied at index by any node, if any did.
func (h *History) Command(index uint64) ([]byte, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c, ok := h.byIndex[index]
	return c, ok
}

func (h *History) failLocked(format string, args ...any) {
	if h.err == nil {
		h.err = fmt.Errorf("check: "+format, args...)
	}
}
