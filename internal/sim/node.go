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

	// Snapshots (see snapshot.go), per incarnation.
	snapAt         uint64      // applied index at which the next snapshot is due
	pendingCompact int         // compactions not yet reported to the core
	sends          []*transfer // leader: outgoing snapshot transfer by peer index
	sendGen        uint64      // numbers transfers, so that a replaced one's timer is ignored
	recv           *receipt    // follower: the snapshot being received
	state          []byte      // the replica's state encoded after applying stateIndex
	stateIndex     uint64

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
	if n.disk.err != nil {
		return n.disk.err
	}
	st, err := n.disk.load()
	if err != nil {
		return err
	}
	n.disk.replaceLog(st)
	c, err := simcore.New(simcore.Config{
		ID: n.id, Peers: n.w.peers,
		ElectionTicks: ElectionTicks, HeartbeatTicks: 1,
		PreVote: !o.DisablePreVote, CheckQuorum: !o.DisableCheckQuorum,
		Seed: o.Seed ^ uint64(n.inc)<<32, Bugs: o.Bugs,
		MaxMsgBytes: n.w.maxMsgBytes, MaxInflightMsgs: n.w.maxInflight,
	}, st)
	if err != nil {
		return err
	}
	n.core = c
	n.up = true
	n.replica = o.App.NewReplica()
	n.commit = c.Status().Commit
	n.leaderTerm, n.heard, n.leadSince, n.verified, n.applied = 0, nil, 0, 0, 0
	n.pendingCompact, n.sends, n.recv = 0, make([]*transfer, len(n.w.peers)), nil
	// Like the runtime, deliver the newest snapshot before any entry after
	// it: the core counts it applied.
	return n.startFromSnapshot(st.Snapshot)
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

// afterStep carries out what an input to the core produced: snapshots to
// stream and snapshot chunks to store, messages to send, persist batches to
// start, a snapshot and committed entries to apply (and snapshots to take);
// then it checks the invariants.
func (n *node) afterStep() {
	w := n.w
	n.snapshotIO()
	if w.err != nil {
		return
	}
	w.msgBuf = n.core.Messages(w.msgBuf[:0])
	for _, m := range w.msgBuf {
		w.send(m)
	}
	n.handOut()
	// Check what the commit index newly covers while the log holds it:
	// applying may compact it away.
	if !w.inv.checkCommitIndex(n, n.core.Status()) {
		return
	}
	if meta, ok := n.core.Restored(); ok {
		n.restore(meta)
	}
	compacted := false
	w.entBuf = n.core.Apply(w.entBuf[:0])
	for i := range w.entBuf {
		n.apply(&w.entBuf[i])
		if w.err != nil {
			return
		}
		if e := &w.entBuf[i]; w.snap.on && e.Index >= n.snapAt {
			compacted = n.takeSnapshot(e.Index, e.Term) || compacted
			if w.err != nil {
				return
			}
		}
	}
	if compacted {
		n.handOut()
	}
	w.inv.checkNode(n)
}

// handOut hands persist batches to the disk, like the runtime: one while at
// most one other is being written.
func (n *node) handOut() {
	w := n.w
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
}

// scheduleDisk schedules the completion of the batch at the head of the
// queue after a disk latency.
func (n *node) scheduleDisk() {
	w := n.w
	w.schedule(event{at: w.now + n.diskLatency(), kind: evDiskDone, node: n.idx, inc: n.inc, batch: n.queue[0]})
}

// diskLatency draws how long a write and its fsync take.
func (n *node) diskLatency() int64 {
	w := n.w
	lat := int64(50*time.Microsecond) + w.rng.Int64N(int64(time.Millisecond))
	if w.now < n.slowUntil {
		lat += int64(20*time.Millisecond) + w.rng.Int64N(int64(200*time.Millisecond))
	}
	return lat
}

func (n *node) diskDone(b *simcore.Batch) {
	w := n.w
	n.disk.complete(b, n.queue[1:])
	if n.disk.err != nil {
		w.fail(ErrSafety, "node %d's persist batch %d broke the Persister contract: %v", n.id, b.Num, n.disk.err)
		return
	}
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
	if w.err != nil {
		return
	}
	var out string
	if !e.Noop {
		var err error
		if out, err = n.replica.Apply(e.Data); err != nil {
			w.fail(ErrSafety, "node %d applied a command no client proposed at index %d: %v", n.id, e.Index, err)
			return
		}
	}
	if w.snap.on && e.Index > uint64(len(w.inv.states)) {
		// The state after each index (a no-op's too), from the first
		// replica to apply it: what a snapshot at that index must hold.
		data, err := n.replica.(SnapshotReplica).Snapshot()
		if err != nil {
			w.fail(ErrSafety, "node %d cannot snapshot its state at index %d: %v", n.id, e.Index, err)
			return
		}
		n.state, n.stateIndex = data, e.Index
		w.inv.checkStateHash(n, e.Index, hashBytes(data), "applying")
	}
	if !e.Noop {
		for _, c := range w.clients {
			c.applied(n, e, out)
		}
	}
}
