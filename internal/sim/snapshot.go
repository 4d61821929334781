package sim

import (
	"fmt"
	"strconv"
	"time"

	"github.com/raftkit/raft/internal/simcore"
)

// Snapshots: the simulator plays the runtime's part around the core's
// snapshot decisions, every choice drawn from the seed. A node snapshots
// its replica every few applied entries, commits the snapshot to its disk
// (durable at once) and reports it to the core with Compact, whose
// compaction of the log then goes through persist batches and the crash
// model like any write. A leader streams its newest durable snapshot to a
// follower the core names, in MsgSnap chunks over the faulty network, paced
// by a window and the follower's MsgSnapResp acknowledgements, resending
// what is not acknowledged and giving up (SnapshotFailed) after a timeout
// without progress. The follower stores the chunks that arrive in order,
// starts over on the first chunk of another snapshot, asks the leader to
// resume from what it holds otherwise, commits the snapshot to its disk on
// the last chunk (after a disk write), then reports it with InstallSnapshot
// and, once the core hands it back as Restored, replaces its replica's
// state. A restarted node loads its newest snapshot into a new replica and
// applies from there.

// snapConfig is a run's snapshot behaviour, drawn from its seed.
type snapConfig struct {
	on    bool
	every int    // a node snapshots every every to 3*every/2 applied entries
	lag   uint64 // compaction keeps this many entries behind a snapshot
	// deferCompact delays Compact after a snapshot commit, as a runtime that
	// feeds it to the core through its inputs would: crashes, installs and
	// more snapshots happen in between.
	deferCompact bool
	chunk        int   // bytes per MsgSnap chunk
	window       int   // chunks sent ahead of the follower's acknowledgement
	timeout      int64 // a transfer without progress for this long failed
}

// snapResend is how often a leader checks its transfers: it resends from
// the acknowledged offset when nothing was acknowledged since the last
// check.
const snapResend = int64(40 * time.Millisecond)

func (w *world) drawSnapConfig() {
	o, c := w.opts, &w.snap
	c.every = o.SnapshotEvery
	if c.every == 0 {
		// Tiny gaps compact after nearly every entry, so that followers
		// that miss a few entries need a snapshot.
		c.every = []int{1, 2, 3, 5, 8, 20, 60}[w.rng.IntN(7)]
	}
	c.on = !o.DisableSnapshots && (o.SnapshotEvery > 0 || w.rng.IntN(4) != 0)
	c.lag = []uint64{0, 0, 1, 4, 16}[w.rng.IntN(5)]
	c.deferCompact = w.rng.IntN(2) == 0
	c.chunk = []int{4, 16, 64, 1 << 20}[w.rng.IntN(4)]
	c.window = []int{1, 2, 4, 16}[w.rng.IntN(4)]
	c.timeout = int64([]time.Duration{150 * time.Millisecond, 400 * time.Millisecond, time.Second}[w.rng.IntN(3)])
	if _, ok := o.App.NewReplica().(SnapshotReplica); !ok {
		c.on = false
	}
}

// snapGap draws how many entries a node applies before its next snapshot.
func (w *world) snapGap() uint64 {
	return uint64(w.snap.every + w.rng.IntN(w.snap.every/2+1))
}

// maxSnapGap bounds snapGap.
func (c *snapConfig) maxSnapGap() uint64 { return uint64(c.every + c.every/2) }

// takeSnapshot snapshots the replica, which has just applied the entry at
// index (of term term), commits the snapshot to the disk and reports it to
// the core now or later. It returns whether the core compacted now.
func (n *node) takeSnapshot(index, term uint64) bool {
	w := n.w
	n.snapAt = index + w.snapGap()
	data := n.state
	if n.stateIndex != index {
		var err error
		if data, err = n.replica.(SnapshotReplica).Snapshot(); err != nil {
			w.fail(ErrSafety, "node %d cannot snapshot its state at index %d: %v", n.id, index, err)
			return false
		}
	}
	w.inv.checkStateHash(n, index, hashBytes(data), "taking a snapshot")
	meta := simcore.SnapshotMeta{Index: index, Term: term}
	if !n.disk.commitSnapshot(meta, data) {
		w.fail(ErrSafety, "node %d applied index %d, but its disk holds a snapshot at %d already", n.id, index, n.disk.snap.meta.Index)
		return false
	}
	w.stats.Snapshots++
	w.trace.add(w.now, "snapshot", n.id, "at "+strconv.Itoa(int(index)))
	if index <= w.snap.lag {
		return false
	}
	to := index - w.snap.lag
	if w.snap.deferCompact {
		n.pendingCompact++
		w.schedule(event{at: w.now + w.rng.Int64N(int64(20*time.Millisecond)), kind: evCompact, node: n.idx, inc: n.inc, arg: to})
		return false
	}
	n.core.Compact(to)
	return true
}

// compact reports a deferred compaction to the core.
func (n *node) compact(to uint64) {
	n.pendingCompact--
	n.w.trace.add(n.w.now, "compact", n.id, "to "+strconv.Itoa(int(to)))
	n.core.Compact(to)
	n.afterStep()
}

// startFromSnapshot gives a starting node's new replica the state of the
// snapshot the core loaded, as the runtime does before any entry.
func (n *node) startFromSnapshot(meta simcore.SnapshotMeta) error {
	w := n.w
	if w.snap.on {
		n.snapAt = meta.Index + w.snapGap()
	}
	n.state, n.stateIndex = nil, 0
	if meta.Index == 0 {
		return nil
	}
	sr, ok := n.replica.(SnapshotReplica)
	if !ok {
		return fmt.Errorf("the disk holds a snapshot, but the replica cannot restore one")
	}
	if err := sr.Restore(n.disk.snap.data); err != nil {
		return fmt.Errorf("restore the snapshot at %d: %w", meta.Index, err)
	}
	n.applied = meta.Index
	w.inv.checkSnapshotMeta(n, meta, "loaded")
	w.inv.checkState(n, meta.Index, "restarting from its snapshot")
	return nil
}

// restore replaces the replica's state by the snapshot the core installed.
func (n *node) restore(meta simcore.SnapshotMeta) {
	w := n.w
	if n.disk.snap.meta != meta {
		w.fail(ErrSafety, "node %d's core restored snapshot %d/%d, but its newest committed snapshot is %d/%d",
			n.id, meta.Index, meta.Term, n.disk.snap.meta.Index, n.disk.snap.meta.Term)
		return
	}
	if meta.Index <= n.applied {
		w.fail(ErrSafety, "node %d: applied index went back across a snapshot restore, from %d to %d (it must advance)", n.id, n.applied, meta.Index)
		return
	}
	if err := n.replica.(SnapshotReplica).Restore(n.disk.snap.data); err != nil {
		w.fail(ErrSafety, "node %d cannot restore the snapshot at %d: %v", n.id, meta.Index, err)
		return
	}
	w.trace.add(w.now, "restore", n.id, "snapshot at "+strconv.Itoa(int(meta.Index))+" after applied "+strconv.Itoa(int(n.applied)))
	n.applied = meta.Index
	n.snapAt = meta.Index + w.snapGap()
	w.inv.checkSnapshotMeta(n, meta, "installed")
	w.inv.checkState(n, meta.Index, "restoring a snapshot")
	for _, c := range w.clients {
		c.nodeRestored(n, meta.Index)
	}
}

// snapshotIO starts the transfers the core asks for and stores the chunks
// it accepted.
func (n *node) snapshotIO() {
	w := n.w
	w.sendBuf = n.core.SnapshotSends(w.sendBuf[:0])
	for _, s := range w.sendBuf {
		n.startTransfer(s)
	}
	w.chunkBuf = n.core.SnapshotChunks(w.chunkBuf[:0])
	for _, m := range w.chunkBuf {
		n.receiveChunk(m)
	}
}

// transfer is a leader's stream of its snapshot to one follower.
type transfer struct {
	to       uint64
	term     uint64 // the leader's term: the transfer ends with it
	meta     simcore.SnapshotMeta
	data     []byte
	gen      uint64
	acked    int   // bytes the follower confirmed it holds
	next     int   // offset of the next chunk to send
	doneSent bool  // the last chunk went out since the last rewind
	finished bool  // the follower confirmed the whole snapshot
	progress int64 // time of the start, the last ack that moved acked, or the finish
	ackedAt  int   // acked at the last timer
	// rewoundTo is 1 + the offset of the last rewind on a request to
	// resume (0: none): the other requests for the same offset, one per
	// chunk that arrived past a gap, are not rewound again (the timer
	// resends if the rewind was lost too).
	rewoundTo int
}

func (n *node) leads(term uint64) bool {
	st := n.core.Status()
	return st.Role == simcore.Leader && st.Term == term
}

// startTransfer starts streaming the node's newest durable snapshot to a
// follower, replacing any transfer to it.
func (n *node) startTransfer(s simcore.SnapshotSend) {
	w := n.w
	st := n.core.Status()
	snap := n.disk.snap
	if st.Role != simcore.Leader {
		w.fail(ErrSafety, "node %d asks to send a snapshot to %d but does not lead", n.id, s.To)
		return
	}
	if snap.meta.Index < s.Snapshot.Index || (snap.meta.Index == s.Snapshot.Index && snap.meta.Term != s.Snapshot.Term) {
		w.fail(ErrSafety, "leader %d must send a snapshot covering index %d (term %d), but its newest committed one is at %d (term %d)",
			n.id, s.Snapshot.Index, s.Snapshot.Term, snap.meta.Index, snap.meta.Term)
		return
	}
	n.sendGen++
	t := &transfer{to: s.To, term: st.Term, meta: snap.meta, data: snap.data, gen: n.sendGen, progress: w.now}
	n.sends[s.To-1] = t
	w.stats.SnapTransfers++
	w.trace.add(w.now, "snap-send", n.id, fmt.Sprintf("to %d: snapshot at %d term %d, %d bytes", s.To, snap.meta.Index, snap.meta.Term, len(snap.data)))
	n.pump(t)
	w.schedule(event{at: w.now + snapResend, kind: evSnapTimer, node: n.idx, inc: n.inc, peer: int(s.To - 1), arg: t.gen})
}

// pump sends the chunks the window allows; a transfer whose leader no
// longer leads its term is dropped.
func (n *node) pump(t *transfer) {
	w := n.w
	if !n.leads(t.term) {
		n.sends[t.to-1] = nil
		w.trace.add(w.now, "snap-abandon", n.id, "to "+strconv.Itoa(int(t.to))+": no longer leads term "+strconv.Itoa(int(t.term)))
		return
	}
	total := len(t.data)
	for !t.finished && !t.doneSent && t.next-t.acked < w.snap.window*w.snap.chunk {
		end := min(t.next+w.snap.chunk, total)
		done := end == total
		w.send(simcore.Msg{
			From: n.id, To: t.to, Kind: simcore.KindSnap, Term: t.term,
			Index: t.meta.Index, LogTerm: t.meta.Term,
			Offset: uint64(t.next), Data: t.data[t.next:end:end], Done: done,
		})
		w.stats.SnapChunks++
		t.next, t.doneSent = end, done
	}
}

// snapResp handles a follower's MsgSnapResp, which the core has seen.
func (n *node) snapResp(m simcore.Msg) {
	w := n.w
	t := n.sends[m.From-1]
	if t == nil || t.finished || m.Term != t.term || m.Index != t.meta.Index || m.LogTerm != t.meta.Term || m.Offset > uint64(len(t.data)) {
		return
	}
	off := int(m.Offset)
	switch {
	case m.Reject:
		// Resume from what the follower holds: less than we sent if it
		// lost chunks or restarted, more if an earlier transfer got there.
		if t.rewoundTo == off+1 {
			return
		}
		if off > t.acked {
			t.progress = w.now
		}
		t.acked, t.next, t.doneSent, t.rewoundTo = off, off, false, off+1
	case m.Done:
		t.acked, t.finished, t.progress = len(t.data), true, w.now
		w.trace.add(w.now, "snap-sent", n.id, "to "+strconv.Itoa(int(t.to)))
		return
	case off > t.acked:
		t.acked, t.progress = off, w.now
		t.next = max(t.next, off)
	default:
		return
	}
	n.pump(t)
}

// snapTimer checks a transfer: it fails after the timeout without
// progress (a finished one too: if the follower did not install, the core
// must probe it again), otherwise resends what is not acknowledged.
func (n *node) snapTimer(peer int, gen uint64) {
	w := n.w
	t := n.sends[peer]
	if t == nil || t.gen != gen {
		return
	}
	if !n.leads(t.term) {
		n.sends[peer] = nil
		return
	}
	if w.now-t.progress >= w.snap.timeout {
		n.sends[peer] = nil
		if !t.finished {
			w.stats.SnapFailed++
			w.trace.add(w.now, "snap-failed", n.id, "to "+strconv.Itoa(int(t.to))+" at "+strconv.Itoa(t.acked)+" of "+strconv.Itoa(len(t.data))+" bytes")
		}
		n.core.SnapshotFailed(t.to)
		n.afterStep()
		return
	}
	if !t.finished && t.acked == t.ackedAt {
		t.next, t.doneSent = t.acked, false
		n.pump(t)
	}
	t.ackedAt = t.acked
	w.schedule(event{at: w.now + snapResend, kind: evSnapTimer, node: n.idx, inc: n.inc, peer: peer, arg: gen})
}

// receipt is a follower's snapshot being received.
type receipt struct {
	from       uint64
	meta       simcore.SnapshotMeta
	data       []byte
	committing bool // the last chunk arrived; the commit is being written
}

// receiveChunk stores one MsgSnap chunk the core accepted.
func (n *node) receiveChunk(m simcore.Msg) {
	w := n.w
	r := n.recv
	meta := simcore.SnapshotMeta{Index: m.Index, Term: m.LogTerm}
	same := r != nil && r.from == m.From && r.meta == meta
	if r != nil && r.committing {
		return // the writer is busy; the leader resends
	}
	switch {
	case m.Offset == 0 && !same:
		r = &receipt{from: m.From, meta: meta}
		n.recv = r
	case same && m.Offset == uint64(len(r.data)):
	case same && m.Offset < uint64(len(r.data)):
		// A duplicate or a resend of what we hold: say how far we are.
		n.snapReply(m.From, meta, uint64(len(r.data)), false, false)
		return
	default:
		var resume uint64
		if same {
			resume = uint64(len(r.data))
		}
		n.snapReply(m.From, meta, resume, true, false)
		return
	}
	r.data = append(r.data, m.Data...)
	if m.Done {
		r.committing = true
		w.schedule(event{at: w.now + n.diskLatency(), kind: evSnapCommit, node: n.idx, inc: n.inc})
		return
	}
	n.snapReply(m.From, meta, uint64(len(r.data)), false, false)
}

// commitReceived commits the received snapshot to the disk, then reports it
// to the core.
func (n *node) commitReceived() {
	w := n.w
	r := n.recv
	n.recv = nil
	if r == nil || !r.committing {
		return
	}
	commit := n.core.Status().Commit
	switch {
	case !n.disk.commitSnapshot(r.meta, r.data):
		w.trace.add(w.now, "snap-stale", n.id, "snapshot at "+strconv.Itoa(int(r.meta.Index))+": have "+strconv.Itoa(int(n.disk.snap.meta.Index)))
	case n.core.InstallSnapshot(r.meta, r.from):
		w.stats.Installs++
		w.trace.add(w.now, "install", n.id, fmt.Sprintf("snapshot at %d term %d from %d (commit was %d)", r.meta.Index, r.meta.Term, r.from, commit))
		if r.meta.Index <= commit {
			w.fail(ErrSafety, "node %d installed a snapshot at index %d, at or below its commit index %d: committed state rolls back", n.id, r.meta.Index, commit)
			return
		}
	default:
		w.trace.add(w.now, "install-refused", n.id, fmt.Sprintf("snapshot at %d (commit %d)", r.meta.Index, commit))
	}
	n.snapReply(r.from, r.meta, uint64(len(r.data)), false, true)
	n.afterStep()
}

func (n *node) snapReply(to uint64, meta simcore.SnapshotMeta, offset uint64, reject, done bool) {
	n.w.send(simcore.Msg{
		From: n.id, To: to, Kind: simcore.KindSnapResp, Term: n.core.Status().Term,
		Index: meta.Index, LogTerm: meta.Term, Offset: offset, Reject: reject, Done: done,
	})
}
