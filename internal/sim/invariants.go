package sim

import (
	"strconv"
	"time"

	"github.com/raftkit/raft/internal/simcore"
)

// invariants checks, after every event, the properties of Raft (paper
// Figure 3) over all nodes, plus the simulator's own:
//
//   - Election Safety: at most one leader per term.
//   - Log Matching: two entries with the same index and term hold the same
//     command and follow entries of the same term (hence, by induction,
//     identical logs up to there).
//   - Leader Completeness: a leader of term T holds every entry committed in
//     a term before T.
//   - State Machine Safety: no two nodes apply different entries at an index;
//     each node applies in index order; every applied command was proposed.
//     With snapshots, a snapshot a node takes, installs or restarts from
//     holds the state (the hash of its encoding) that the first replica to
//     apply that index had there, and its last entry is the committed one.
//     Entries inside a snapshot are never read: their terms are the ones
//     recorded when they committed.
//   - Snapshots: a node never installs a snapshot at or below its commit
//     index, its applied index never goes back across a restore, and the
//     applied entries its log still holds stay under the run's snapshot
//     gap plus compaction lag (the log is compacted).
//   - Commit: a node's commit index never decreases within an incarnation,
//     never points at an entry that differs from one committed before, and
//     only covers an entry that a majority of disks hold durably.
//   - Each core's own invariants (core.checkInvariants).
//   - Staleness: with CheckQuorum, no leader goes three election timeouts of
//     its own clock without hearing from a majority.
//   - Durability of acknowledgements: at the end, every operation a client
//     saw complete is applied by every node at its index.
//   - Liveness: once the faults stop, a command proposed after that is
//     applied by every node within LivenessBound.
type invariants struct {
	w        *world
	quorum   int
	leaders  map[uint64]uint64   // term -> leader
	entries  map[logKey]logValue // every entry seen in any log
	applied  []appliedEntry      // by index-1: the entry applied there
	commits  []committedEntry    // by index-1
	proposed map[uint64]struct{} // hashes of proposed commands
	acked    []ackedEntry
	states   []uint64 // by index-1: hash of the replicas' state after it (snapshots on)

	probeIndex uint64 // index of the recovery probe, once a leader applied it
	buf        []simcore.Entry
}

type logKey struct{ index, term uint64 }

type logValue struct {
	prevTerm uint64
	hash     uint64
}

type appliedEntry struct{ term, hash uint64 }

type committedEntry struct {
	term       uint64 // the entry's term
	commitTerm uint64 // term of the first node seen committing it
}

type ackedEntry struct{ index, term, hash uint64 }

// staleTicks is how long a leader may go without hearing from a majority:
// CheckQuorum steps down after one to two election timeouts.
const staleTicks = 3 * ElectionTicks

func (v *invariants) init(w *world) {
	v.w = w
	v.quorum = w.opts.Nodes/2 + 1
	v.leaders = map[uint64]uint64{}
	v.entries = map[logKey]logValue{}
	v.proposed = map[uint64]struct{}{}
}

func (v *invariants) noteProposed(hash uint64) { v.proposed[hash] = struct{}{} }

func (v *invariants) noteAcknowledged(index, term, hash uint64) {
	v.acked = append(v.acked, ackedEntry{index, term, hash})
}

// noteDelivery tracks, for a leader, when it last heard from each peer.
func (v *invariants) noteDelivery(n *node, m simcore.Msg) {
	if n.heard != nil && m.Term == n.leaderTerm {
		n.heard[m.From] = n.core.Status().Ticks
	}
}

// entries returns the node's entries in [lo, hi], reusing a buffer.
func (v *invariants) entriesOf(n *node, lo, hi uint64) []simcore.Entry {
	v.buf = n.core.Entries(v.buf[:0], lo, hi)
	return v.buf
}

// termAt returns the term of the entry at i in n's log, 0 if it holds
// none; at or below the log's snapshot, the snapshot's term or the term
// committed there.
func (v *invariants) termAt(n *node, i uint64) uint64 {
	if i == 0 {
		return 0
	}
	st := n.core.Status()
	switch {
	case i == st.SnapIndex:
		return st.SnapTerm
	case i < st.SnapIndex:
		return v.committedTerm(i)
	}
	if e := v.entriesOf(n, i, i); len(e) == 1 {
		return e[0].Term
	}
	return 0
}

// committedTerm returns the term of the entry committed at i, 0 if none is
// known.
func (v *invariants) committedTerm(i uint64) uint64 {
	if i == 0 || i > uint64(len(v.commits)) {
		return 0
	}
	return v.commits[i-1].term
}

// durableLog returns the position of the last entry of the log n's disk
// would load (the snapshot's if no entry follows it).
func (v *invariants) durableLog(n *node) (last, term uint64) {
	st, err := n.disk.load()
	if err != nil {
		return 0, 0
	}
	if k := len(st.Entries); k > 0 {
		return st.Entries[k-1].Index, st.Entries[k-1].Term
	}
	return st.Snapshot.Index, st.Snapshot.Term
}

// durableTerm returns the term of the entry at i that n's disk would load,
// 0 if none; inside its snapshot, the committed term.
func (v *invariants) durableTerm(n *node, i uint64) uint64 {
	st, err := n.disk.load()
	if err != nil || i == 0 {
		return 0
	}
	s := st.Snapshot
	switch {
	case i == s.Index:
		return s.Term
	case i < s.Index:
		return v.committedTerm(i)
	case i-s.Index <= uint64(len(st.Entries)):
		return st.Entries[i-s.Index-1].Term
	}
	return 0
}

// checkNode checks the invariants that an event at node n may have broken.
func (v *invariants) checkNode(n *node) {
	w := v.w
	if w.err != nil {
		return
	}
	if err := n.core.Check(); err != nil {
		w.fail(ErrSafety, "node %d: %v", n.id, err)
		return
	}
	st := n.core.Status()
	w.stats.MaxTerm = max(w.stats.MaxTerm, st.Term)

	// Log Matching, over the part of the log that changed (after its
	// snapshot).
	if from := n.core.Changed(); from != 0 && max(from, st.SnapIndex+1) <= st.LastIndex {
		from = max(from, st.SnapIndex+1)
		prevTerm := v.termAt(n, from-1)
		for _, e := range v.entriesOf(n, from, st.LastIndex) {
			k := logKey{e.Index, e.Term}
			val := logValue{prevTerm: prevTerm, hash: entryHash(&e)}
			if old, ok := v.entries[k]; !ok {
				v.entries[k] = val
			} else if old != val {
				w.fail(ErrSafety, "Log Matching: node %d holds a different entry at index %d term %d (or after a different term)", n.id, e.Index, e.Term)
				return
			}
			prevTerm = e.Term
		}
	}

	// Election Safety and staleness.
	if st.Role == simcore.Leader {
		if l, ok := v.leaders[st.Term]; ok && l != n.id {
			w.fail(ErrSafety, "Election Safety: nodes %d and %d both lead term %d", l, n.id, st.Term)
			return
		}
		v.leaders[st.Term] = n.id
		if n.leaderTerm != st.Term {
			n.leaderTerm, n.leadSince, n.verified = st.Term, st.Ticks, 0
			n.heard = map[uint64]uint64{}
			for _, p := range w.peers {
				n.heard[p] = st.Ticks
			}
			w.trace.add(w.now, "leader", n.id, "term "+strconv.Itoa(int(st.Term)))
		}
		if !w.opts.DisableCheckQuorum {
			recent := 1
			for _, p := range w.peers {
				if p != n.id && n.heard[p]+staleTicks >= st.Ticks {
					recent++
				}
			}
			if recent < v.quorum {
				w.fail(ErrStale, "node %d still leads term %d but has not heard from a majority for %d of its ticks (CheckQuorum)", n.id, st.Term, staleTicks)
				return
			}
		}
	} else {
		n.leaderTerm, n.heard = 0, nil
	}

	if !v.checkCommitIndex(n, st) {
		return
	}

	// Leader Completeness, over the committed entries not yet checked.
	// Those inside the leader's snapshot are there if its last entry is
	// the committed one (its state is checked when taken or installed).
	if st.Role == simcore.Leader && n.verified < uint64(len(v.commits)) {
		hi := uint64(len(v.commits))
		lo := max(n.verified+1, st.SnapIndex+1)
		if n.verified < st.SnapIndex && !v.checkSnapshotMeta(n, simcore.SnapshotMeta{Index: st.SnapIndex, Term: st.SnapTerm}, "leads with") {
			return
		}
		ents := v.entriesOf(n, lo, hi)
		for i := lo; i <= hi; i++ {
			c := v.commits[i-1]
			if c.commitTerm >= st.Term {
				continue
			}
			if j := i - lo; j >= uint64(len(ents)) || ents[j].Term != c.term {
				w.fail(ErrSafety, "Leader Completeness: leader %d of term %d lacks entry %d (term %d) committed in term %d",
					n.id, st.Term, i, c.term, c.commitTerm)
				return
			}
		}
		n.verified = hi
	}

	// The log is compacted: the applied entries it holds stay under the
	// gap between snapshots plus the compaction lag (once every compaction
	// taken has reached the core).
	if w.snap.on && n.pendingCompact == 0 {
		if held, bound := st.Applied-st.SnapIndex, w.snap.maxSnapGap()+w.snap.lag; held > bound {
			w.fail(ErrSafety, "node %d holds %d applied entries after its snapshot at %d (applied %d), more than the bound %d: the log is not compacted",
				n.id, held, st.SnapIndex, st.Applied, bound)
			return
		}
	}

	// Recovery after the faults stopped.
	if v.probeIndex != 0 && !w.recovered {
		for _, m := range w.nodes {
			if !m.up || m.applied < v.probeIndex {
				return
			}
		}
		w.recovered = true
		w.recovery = w.now - w.healAt
		w.trace.add(w.now, "recovered", 0, time.Duration(w.recovery).String())
		w.schedule(event{at: w.now + int64(500*time.Millisecond), kind: evEnd})
	}
}

// checkCommitIndex checks n's commit index: it never goes back, and what
// it newly covers is what was committed. The node calls it before it
// applies (and may compact what it applies), then checkNode again.
func (v *invariants) checkCommitIndex(n *node, st simcore.Status) bool {
	if st.Commit < n.commit {
		v.w.fail(ErrSafety, "node %d: commit index went back from %d to %d", n.id, n.commit, st.Commit)
		return false
	}
	if st.Commit > n.commit {
		if !v.checkCommit(n, st) {
			return false
		}
		n.commit = st.Commit
	}
	return true
}

// checkCommit checks a node's commit index advancing to st.Commit.
func (v *invariants) checkCommit(n *node, st simcore.Status) bool {
	w := v.w
	lo := n.commit + 1
	last := simcore.Entry{Index: st.SnapIndex, Term: st.SnapTerm}
	if lo <= st.SnapIndex {
		// Committed by installing a snapshot: its entries were committed
		// before, by the nodes the snapshot came from.
		if !v.checkSnapshotMeta(n, simcore.SnapshotMeta{Index: st.SnapIndex, Term: st.SnapTerm}, "commits through") {
			return false
		}
		lo = st.SnapIndex + 1
	}
	var ents []simcore.Entry
	if lo <= st.Commit {
		ents = v.entriesOf(n, lo, st.Commit)
		if uint64(len(ents)) != st.Commit-lo+1 {
			w.fail(ErrSafety, "node %d: commit index %d beyond its log", n.id, st.Commit)
			return false
		}
		last = ents[len(ents)-1]
	}
	for _, e := range ents {
		if e.Index <= uint64(len(v.commits)) {
			if c := v.commits[e.Index-1]; c.term != e.Term {
				w.fail(ErrSafety, "node %d commits index %d with term %d, but term %d was committed there", n.id, e.Index, e.Term, c.term)
				return false
			}
			continue
		}
		v.commits = append(v.commits, committedEntry{term: e.Term, commitTerm: st.Term})
	}
	grew := st.Commit > w.stats.Committed
	w.stats.Committed = max(w.stats.Committed, st.Commit)
	// A majority of disks must hold the newly committed entry durably, in
	// their log or their snapshot (then, by Log Matching, everything before
	// it).
	durable := 0
	for _, m := range w.nodes {
		if v.durableTerm(m, last.Index) == last.Term {
			durable++
		}
	}
	if durable < v.quorum {
		w.fail(ErrSafety, "node %d commits index %d (term %d), durable on only %d of %d disks", n.id, last.Index, last.Term, durable, len(w.nodes))
		return false
	}
	if grew {
		return v.checkElectable(n, last)
	}
	return true
}

// checkElectable checks that no node lacking a newly committed entry could
// ever win an election: Leader Completeness for every future term. A node
// grants a vote only to a log at least as up-to-date as its own (§5.4.1);
// a crash can take a voter back to its durable log; so a node X lacking the
// entry could win if at least a majority, X included, have durable logs no
// more up-to-date than X's. In a correct Raft the majority that durably
// holds the entry (its last term at least the entry's, since only entries of
// the leader's term are committed by counting) refuses X. This is what
// Figure 8 of the paper is about: it fails at once when a leader commits an
// earlier term's entry by counting replicas while another node holds a
// later term's entry at that index.
func (v *invariants) checkElectable(n *node, e simcore.Entry) bool {
	w := v.w
	for _, x := range w.nodes {
		// X's logs: durable always; in memory too while it runs.
		logs := [2]struct {
			ok         bool
			has        bool
			last, term uint64
		}{}
		logs[0].ok = true
		logs[0].has = v.durableTerm(x, e.Index) == e.Term
		logs[0].last, logs[0].term = v.durableLog(x)
		if x.up {
			st := x.core.Status()
			logs[1].ok = true
			logs[1].has = v.termAt(x, e.Index) == e.Term
			logs[1].last, logs[1].term = st.LastIndex, v.termAt(x, st.LastIndex)
		}
		for _, l := range logs {
			if !l.ok || l.has {
				continue
			}
			votes := 0
			for _, voter := range w.nodes {
				vl, vt := v.durableLog(voter)
				if voter == x || l.term > vt || (l.term == vt && l.last >= vl) {
					votes++
				}
			}
			if votes >= v.quorum {
				w.fail(ErrSafety, "node %d committed index %d (term %d), but node %d, whose log ends at index %d term %d without it, could win an election with %d votes (Leader Completeness, Figure 8)",
					n.id, e.Index, e.Term, x.id, l.last, l.term, votes)
				return false
			}
		}
	}
	return true
}

// checkApply checks one entry a node applies.
func (v *invariants) checkApply(n *node, e *simcore.Entry) {
	w := v.w
	if e.Index != n.applied+1 {
		w.fail(ErrSafety, "node %d applied index %d after %d", n.id, e.Index, n.applied)
		return
	}
	n.applied = e.Index
	a := appliedEntry{term: e.Term, hash: entryHash(e)}
	if e.Index <= uint64(len(v.applied)) {
		if old := v.applied[e.Index-1]; old != a {
			w.fail(ErrSafety, "State Machine Safety: node %d applied a different entry at index %d (term %d, another node applied term %d)", n.id, e.Index, e.Term, old.term)
		}
		return
	}
	v.applied = append(v.applied, a)
	if !e.Noop {
		if _, ok := v.proposed[hashBytes(e.Data)]; !ok {
			w.fail(ErrSafety, "node %d applied a command at index %d that no client proposed", n.id, e.Index)
		}
	}
}

// checkSnapshotMeta checks that a snapshot n holds ends at the entry
// committed there.
func (v *invariants) checkSnapshotMeta(n *node, meta simcore.SnapshotMeta, what string) bool {
	w := v.w
	if meta.Index > uint64(len(v.commits)) {
		w.fail(ErrSafety, "node %d %s a snapshot at index %d, beyond the highest index ever committed (%d)", n.id, what, meta.Index, len(v.commits))
		return false
	}
	if t := v.commits[meta.Index-1].term; t != meta.Term {
		w.fail(ErrSafety, "node %d %s a snapshot ending at index %d term %d, but term %d was committed there", n.id, what, meta.Index, meta.Term, t)
		return false
	}
	return true
}

// checkState checks n's replica state, which must be the state after index.
func (v *invariants) checkState(n *node, index uint64, what string) {
	data, err := n.replica.(SnapshotReplica).Snapshot()
	if err != nil {
		v.w.fail(ErrSafety, "node %d cannot snapshot its state at index %d: %v", n.id, index, err)
		return
	}
	v.checkStateHash(n, index, hashBytes(data), what)
}

// checkStateHash checks the hash of n's state after index against the
// state the first replica to apply that index had there (which records it).
func (v *invariants) checkStateHash(n *node, index, hash uint64, what string) {
	w := v.w
	switch k := uint64(len(v.states)); {
	case index == k+1:
		v.states = append(v.states, hash)
	case index > k+1:
		w.fail(ErrSafety, "node %d has a state after index %d (%s), but no replica ever had one after %d", n.id, index, what, k+1)
	case v.states[index-1] != hash:
		w.fail(ErrSafety, "State Machine Safety: node %d's state after index %d (%s) differs from the state another replica had there", n.id, index, what)
	}
}

func entryHash(e *simcore.Entry) uint64 {
	if e.Noop {
		return 0
	}
	return hashBytes(e.Data)
}

// startRecovery starts the recovery probe: one more client with one
// operation, which every node must apply within LivenessBound.
func (v *invariants) startRecovery() {
	w := v.w
	c := &client{w: w, idx: len(w.clients), id: uint64(len(w.clients) + 1), once: true}
	w.clients = append(w.clients, c)
	c.target = w.rng.IntN(len(w.nodes))
	c.after(0)
}

func (v *invariants) probeDone(index uint64) { v.probeIndex = index }

// checkAcknowledged checks, at the end, that every acknowledged operation up
// to the probe is applied by every node at its index.
func (v *invariants) checkAcknowledged() {
	w := v.w
	for _, a := range v.acked {
		if a.index > v.probeIndex {
			continue
		}
		if got := v.applied[a.index-1]; got.term != a.term || got.hash != a.hash {
			w.fail(ErrSafety, "acknowledged command at index %d term %d was lost: term %d applied there", a.index, a.term, got.term)
			return
		}
		for _, n := range w.nodes {
			if n.applied < a.index {
				w.fail(ErrSafety, "node %d has not applied acknowledged index %d", n.id, a.index)
				return
			}
		}
	}
}
