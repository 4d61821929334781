package sim

import "github.com/raftkit/raft/internal/simcore"

type eventKind uint8

const (
	evTick       eventKind = iota + 1 // a node's clock ticks
	evDeliver                         // a message arrives
	evDiskDone                        // a node's disk finishes the batch at the head of its queue
	evFault                           // the fault schedule decides something
	evClient                          // a client acts: issue, retry or time out
	evCrash                           // a node crashes (planned at a persist batch)
	evHeal                            // faults stop
	evEnd                             // the run is over
	evCompact                         // a node reports a snapshot's compaction (arg: the index) to its core
	evSnapTimer                       // a leader checks its snapshot transfer to peer (arg: the transfer's gen)
	evSnapCommit                      // a follower's disk has written the snapshot it received
)

var eventNames = [...]string{
	evTick: "tick", evDeliver: "deliver", evDiskDone: "disk-done", evFault: "fault",
	evClient: "client", evCrash: "crash", evHeal: "heal", evEnd: "end",
	evCompact: "compact", evSnapTimer: "snap-timer", evSnapCommit: "snap-commit",
}

// event is one scheduled occurrence. Events with equal times run in the
// order they were scheduled (seq), which keeps runs deterministic.
type event struct {
	at    int64 // virtual nanoseconds
	seq   uint64
	kind  eventKind
	node  int    // index into world.nodes, or client index for evClient
	inc   uint32 // the node incarnation (or client attempt) the event belongs to
	peer  int    // evSnapTimer: the follower's node index
	arg   uint64 // evCompact, evSnapTimer: see the kinds
	msg   simcore.Msg
	batch *simcore.Batch
}

// eventQueue is a binary min-heap of events ordered by (at, seq).
type eventQueue []*event

func (q eventQueue) less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}

func (q *eventQueue) push(e *event) {
	*q = append(*q, e)
	h := *q
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if !h.less(i, p) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func (q *eventQueue) pop() *event {
	h := *q
	n := len(h) - 1
	top := h[0]
	h[0] = h[n]
	h[n] = nil
	h = h[:n]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && h.less(l, m) {
			m = l
		}
		if r < n && h.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	*q = h
	return top
}
