package sim

import (
	"strconv"
	"time"

	"github.com/raftkit/raft/internal/simcore"
)

// node is one simulated server: a core, its disk, its clock and the
// application replica it applies committed commands to.
type node struct {
	w   *world
	idx int
	id  uint64

	core    simcore.Core
	up      bool
	inc     uint32 // incarnation: bumped on every crash, so stale events are ignored
	replica Replica

	tickEvery int64 // virtual nanoseconds per tick: skewed clocks tick faster or slower
	slowUntil int64 // the disk acknowledges late until then
	// crashAt, if set, crashes the node while its next persist batch (or,
	// for crashAtVote, its next batch saving a new term or vote) is being
	// written: the windows where acknowledging too early would show.
	crashAt crashTrigger

	disk  disk
	queue []*simcore.Batch // persist batches handed out, the head one being written

	// For the invariants, per incarnation.
	commit     uint64            // last commit index seen
	leaderTerm uint64            // term this node was last seen leading
	heard      map[uint64]uint64 // leader: peer -> leader tick of the last message from it in the leader's term
	leadSince  uint64            // leader: tick at which it became leader
	verified   uint64            // leader: committed indexes checked for Leader Completeness
	applied    uint64            // last index applied
}

// start creates the node's core from what its disk holds.
func (n *node) start() error {
	o := n.w.opts
	c, err := simcore.New(simcore.Config{
		ID: n.id, Peers: n.w.peers,
		ElectionTicks: ElectionTicks, HeartbeatTicks: 1,
		PreVote: !o.DisablePreVote, CheckQuorum: !o.DisableCheckQuorum,
		Seed: o.Seed ^ uint64(n.inc)<<32, Bugs: o.Bugs,
		MaxMsgBytes: n.w.maxMsgBytes, MaxInflightMsgs: n.w.maxInflight,
	}, n.disk.durable)
	if err != nil {
		return err
	}
	n.core = c
	n.up = true
	n.replica = o.App.NewReplica()
	n.commit = c.Status().Commit
	n.leaderTerm, n.heard, n.leadSince, n.verified, n.applied = 0, nil, 0, 0, 0
	return nil
}

type crashTrigger uint8

const (
	crashNone crashTrigger = iota
	crashAtBatch
	crashAtVote
)

// crash stops the node as a power loss would: writes no Sync covered may be
// lost, in part or in whole, and everything in memory is gone.
func (n *node) crash() {
	w := n.w
	n.up = false
	n.inc++
	n.crashAt = crashNone
	n.queue = nil
	kept := n.disk.crash(w.rng)
	w.stats.Crashes++
	w.trace.add(w.now, "crash", n.id, "kept "+strconv.Itoa(kept)+" unsynced writes")
	for _, c := range w.clients {
		c.nodeCrashed(n)
	}
}

// restart starts a crashed node again from its disk.
func (n *node) restart() {
	w := n.w
	if err := n.start(); err != nil {
		w.fail(ErrSafety, "node %d cannot restart from its disk: %v", n.id, err)
		return
	}
	w.stats.Restarts++
	w.trace.add(w.now, "restart", n.id, "term "+strconv.Itoa(int(n.core.Status().Term)))
	w.schedule(event{at: w.now + w.rng.Int64N(n.tickEvery), kind: evTick, node: n.idx, inc: n.inc})
}

// afterStep carries out what an input to the core produced: messages to
// send, persist batches to start, committed entries to apply; then it checks
// the invariants.
func (n *node) afterStep() {
	w := n.w
	w.msgBuf = n.core.Messages(w.msgBuf[:0])
	for _, m := range w.msgBuf {
		w.send(m)
	}
	// Like the runtime, hand out a batch while at most one is being written.
	for len(n.queue) < 2 {
		b := n.core.Persist()
		if b == nil {
			break
		}
		n.queue = append(n.queue, b)
		n.disk.start(b)
		if n.crashAt == crashAtBatch || (n.crashAt == crashAtVote && b.HardState != nil && b.MustSync) {
			n.crashAt = crashNone
			w.schedule(event{at: w.now + w.rng.Int64N(int64(50*time.Microsecond)), kind: evCrash, node: n.idx, inc: n.inc})
		}
		if len(n.queue) == 1 {
			n.scheduleDisk()
		}
	}
	w.entBuf = n.core.Apply(w.entBuf[:0])
	for i := range w.entBuf {
		n.apply(&w.entBuf[i])
		if w.err != nil {
			return
		}
	}
	w.inv.checkNode(n)
}

// scheduleDisk schedules the completion of the batch at the head of the
// queue after a disk latency.
func (n *node) scheduleDisk() {
	w := n.w
	lat := int64(50*time.Microsecond) + w.rng.Int64N(int64(time.Millisecond))
	if w.now < n.slowUntil {
		lat += int64(20*time.Millisecond) + w.rng.Int64N(int64(200*time.Millisecond))
	}
	w.schedule(event{at: w.now + lat, kind: evDiskDone, node: n.idx, inc: n.inc, batch: n.queue[0]})
}

func (n *node) diskDone(b *simcore.Batch) {
	w := n.w
	n.disk.complete(b, n.queue[1:])
	n.queue = n.queue[1:]
	w.trace.add(w.now, "durable", n.id, "batch "+strconv.Itoa(int(b.Num)))
	for _, m := range b.AfterDurable {
		w.send(m)
	}
	n.core.Persisted(b.Num)
	if len(n.queue) > 0 {
		n.scheduleDisk()
	}
	n.afterStep()
}

// apply applies one committed entry to the replica and answers the client
// waiting for it, if any.
func (n *node) apply(e *simcore.Entry) {
	w := n.w
	w.inv.checkApply(n, e)
	if e.Noop || w.err != nil {
		return
	}
	out, err := n.replica.Apply(e.Data)
	if err != nil {
		w.fail(ErrSafety, "node %d applied a command no client proposed at index %d: %v", n.id, e.Index, err)
		return
	}
	for _, c := range w.clients {
		c.applied(n, e, out)
	}
}

// disk models a node's storage: what a Sync made durable, and the writes
// since, of which a crash keeps an arbitrary prefix (the Persister
// contract: writes land in order, unsynced ones may be lost).
type disk struct {
	durable  simcore.DiskState
	unsynced []diskWrite
}

type diskWrite struct {
	truncateFrom uint64
	entry        *simcore.Entry
	hs           *simcore.HardState
}

// start records that a batch's writes have been issued.
func (d *disk) start(b *simcore.Batch) {
	if b.TruncateFrom != 0 {
		d.unsynced = append(d.unsynced, diskWrite{truncateFrom: b.TruncateFrom})
	}
	for i := range b.Entries {
		d.unsynced = append(d.unsynced, diskWrite{entry: &b.Entries[i]})
	}
	if b.HardState != nil {
		d.unsynced = append(d.unsynced, diskWrite{hs: b.HardState})
	}
}

// complete finishes a batch. If it syncs, every write issued before its end
// is durable: all unsynced writes but those of the later batches, which
// have been issued (they may survive a crash) but are not covered.
func (d *disk) complete(b *simcore.Batch, later []*simcore.Batch) {
	if !b.MustSync {
		return
	}
	k := len(d.unsynced)
	for _, l := range later {
		k -= writeCount(l)
	}
	d.applyWrites(k)
}

func writeCount(b *simcore.Batch) int {
	n := len(b.Entries)
	if b.TruncateFrom != 0 {
		n++
	}
	if b.HardState != nil {
		n++
	}
	return n
}

// applyWrites makes the first k unsynced writes durable.
func (d *disk) applyWrites(k int) {
	for _, wr := range d.unsynced[:k] {
		switch {
		case wr.truncateFrom != 0:
			if n := wr.truncateFrom - 1; n < uint64(len(d.durable.Entries)) {
				d.durable.Entries = d.durable.Entries[:n:n]
			}
		case wr.entry != nil:
			d.durable.Entries = append(d.durable.Entries, *wr.entry)
		case wr.hs != nil:
			d.durable.HardState = *wr.hs
		}
	}
	d.unsynced = append(d.unsynced[:0], d.unsynced[k:]...)
}

// crash keeps a random prefix of the unsynced writes and drops the rest.
func (d *disk) crash(rng interface{ IntN(int) int }) int {
	k := rng.IntN(len(d.unsynced) + 1)
	d.applyWrites(k)
	d.unsynced = d.unsynced[:0]
	return k
}

// term returns the term of the durable entry at index i, or 0.
func (d *disk) term(i uint64) uint64 {
	if i == 0 || i > uint64(len(d.durable.Entries)) {
		return 0
	}
	return d.durable.Entries[i-1].Term
}
