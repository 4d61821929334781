package raft

import (
	"context"
	"fmt"
	"sync"
)

// Proposals: how a Propose call reaches the run loop and hears back.
//
// A caller queues its proposal on the node's propQueue and then waits on the
// proposal's own done channel, and on its own ctx, nothing else. In
// particular it does not select on the node's stop channel: with hundreds of
// callers blocked in such a select, every one locks that shared channel each
// time it is woken, and the contention on its lock was a fifth of a busy
// leader's CPU. Instead, whoever holds a proposal when the node stops
// answers it with ErrStopped:
//
//   - the queue: Stop, as soon as it has closed the stop channel, before it
//     waits for the loops (propQueue.stop);
//   - the run loop: the ProposeWait calls it is tracking and the apply batch
//     it has not handed over (run's deferred cleanup);
//   - the apply loop: the ProposeWait calls of the batch it was delivering.
//
// Every proposal is in exactly one of those places until it is answered, so
// every caller hears back.

// proposal is one Propose call in flight. done is buffered: the run loop and
// the apply loop never block sending on it.
type proposal struct {
	data []byte
	wait bool
	// index, term are set by the run loop once appended.
	index, term uint64
	done        chan proposalResult
}

type proposalResult struct {
	index, term uint64
	err         error
	final       bool // for ProposeWait: the command was applied or dropped
}

var proposalPool = sync.Pool{New: func() any { return &proposal{done: make(chan proposalResult, 2)} }}

const (
	maxProposalBatch  = 4096 // proposals taken per run-loop iteration
	maxQueuedProposal = 4096 // proposals queued before callers block
)

// propQueue carries proposals from callers to the run loop. It replaces a
// channel for the same reason as above: 256 callers sending on one channel
// spun on its lock, while a mutex held for an append is cheap; and the run
// loop takes every queued proposal at once.
//
// Bounded: a caller blocks while maxQueuedProposal wait, so callers that
// give up (ctx) and retry cannot grow the queue without limit.
type propQueue struct {
	mu      sync.Mutex
	q       []*proposal
	spare   []*proposal   // the run loop's last batch, reused as the next queue
	stopped bool          // set by stop; nothing is queued after it
	spacec  chan struct{} // closed when the full queue drains; nil if nobody waits
	// readyc holds a token while the queue is not empty (it may also hold
	// one when it is empty: the run loop then takes nothing).
	readyc chan struct{}
}

func newPropQueue() propQueue {
	return propQueue{readyc: make(chan struct{}, 1)}
}

// push queues p. It blocks while the queue is full, until there is room,
// ctx ends or the queue is stopped.
func (q *propQueue) push(ctx context.Context, p *proposal) error {
	for {
		q.mu.Lock()
		if q.stopped {
			q.mu.Unlock()
			return ErrStopped
		}
		if len(q.q) < maxQueuedProposal {
			q.q = append(q.q, p)
			if len(q.q) == 1 {
				select {
				case q.readyc <- struct{}{}:
				default: // a token is already there
				}
			}
			q.mu.Unlock()
			return nil
		}
		if q.spacec == nil {
			q.spacec = make(chan struct{})
		}
		spacec := q.spacec
		q.mu.Unlock()
		select {
		case <-spacec: // room, or stopped: look again
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// take returns the queued proposals, oldest first, up to maxProposalBatch
// of them and about maxBytes of commands (at least one). It leaves a token in
// readyc if any remain. The returned slice is the run loop's until its next
// take.
func (q *propQueue) take(maxBytes int) []*proposal {
	q.mu.Lock()
	defer q.mu.Unlock()
	n, size := 0, 0
	for n < len(q.q) && n < maxProposalBatch && (n == 0 || size < maxBytes) {
		size += len(q.q[n].data)
		n++
	}
	var batch []*proposal
	if n == len(q.q) {
		// All of it: swap in the previous batch's array as the new queue.
		batch, q.q = q.q, q.spare[:0]
	} else {
		batch = append(q.spare[:0], q.q[:n]...)
		rest := copy(q.q, q.q[n:])
		clear(q.q[rest:])
		q.q = q.q[:rest]
		select {
		case q.readyc <- struct{}{}:
		default:
		}
	}
	q.spare = batch
	if q.spacec != nil {
		close(q.spacec)
		q.spacec = nil
	}
	return batch
}

// stop refuses every later push and returns what is still queued, for the
// caller to answer.
func (q *propQueue) stop() []*proposal {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.stopped = true
	rest := q.q
	q.q = nil
	if q.spacec != nil {
		close(q.spacec)
		q.spacec = nil
	}
	return rest
}

func (n *Node) propose(ctx context.Context, cmd []byte, wait bool) (proposalResult, error) {
	if len(cmd) > n.cfg.maxEntrySize() {
		return proposalResult{}, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(cmd), n.cfg.maxEntrySize())
	}
	if err := ctx.Err(); err != nil {
		return proposalResult{}, err
	}
	p := proposalPool.Get().(*proposal)
	p.data, p.wait = cmd, wait
	if err := n.props.push(ctx, p); err != nil {
		*p = proposal{done: p.done}
		proposalPool.Put(p)
		return proposalResult{}, err
	}
	for {
		select {
		case r := <-p.done:
			if r.err != nil || !wait || r.final {
				*p = proposal{done: p.done}
				proposalPool.Put(p)
				return r, r.err
			}
		case <-ctx.Done():
			// p may still be written to; it is not reused.
			return proposalResult{}, ctx.Err()
		}
	}
}

// answerStopped tells the caller of each proposal in ps that the node stopped
// before it knew the outcome.
func answerStopped(ps []*proposal) {
	for _, p := range ps {
		p.answerStopped()
	}
}

// answerStopped tells p's caller that the node stopped before it knew the
// outcome.
func (p *proposal) answerStopped() {
	p.done <- proposalResult{index: p.index, term: p.term, err: ErrStopped}
}
