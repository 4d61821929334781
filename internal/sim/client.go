package sim

import (
	"math"
	"strconv"
	"time"

	"github.com/raftkit/raft/internal/simcore"
)

// client is one simulated client: it issues one operation at a time,
// proposes it to the node it believes leads, and retries the same operation
// (same client and sequence number, so the application applies it once) on
// another node when the attempt fails or times out. The operation completes
// when the node it was proposed to applies it at the index and term the
// proposal got; the result is that node's.
type client struct {
	w    *world
	idx  int
	id   uint64
	once bool // the recovery probe: one operation, then stop

	seq     uint64
	op      *clientOp // the operation in progress, nil when idle
	attempt uint32    // bumped on every state change; older events are ignored
	target  int       // node index to try next

	waiting bool // proposed, waiting for the apply
	node    *node
	inc     uint32
	index   uint64
	term    uint64
}

type clientOp struct {
	cmd   []byte
	hash  uint64
	input any
	call  int64
}

// Client timings, in virtual time.
const (
	clientTimeout = time.Second
	clientRetry   = 5 * time.Millisecond
	clientThink   = 20 * time.Millisecond
)

func (c *client) after(d int64) {
	c.attempt++
	c.w.schedule(event{at: c.w.now + d, kind: evClient, node: c.idx, inc: c.attempt})
}

// act handles a client event: issue a new operation, try the current one,
// or time out the current attempt.
func (c *client) act(attempt uint32) {
	if attempt != c.attempt {
		return // superseded
	}
	w := c.w
	switch {
	case c.op == nil:
		if c.once && c.seq > 0 {
			return
		}
		c.seq++
		cmd, input := w.opts.App.NextOp(w.rng, c.id, c.seq)
		c.op = &clientOp{cmd: cmd, hash: hashBytes(cmd), input: input, call: w.now}
		c.try()
	case c.waiting:
		w.trace.add(w.now, "client-timeout", c.id, "seq "+strconv.Itoa(int(c.seq)))
		c.waiting = false
		c.target = w.rng.IntN(len(w.nodes))
		c.after(int64(clientRetry))
	default:
		c.try()
	}
}

func (c *client) try() {
	w := c.w
	n := w.nodes[c.target]
	if !n.up {
		c.target = (c.target + 1) % len(w.nodes)
		c.after(int64(clientRetry))
		return
	}
	index, term, err := n.core.Propose(c.op.cmd)
	if err != nil {
		if lead := n.core.Status().Lead; lead != 0 && lead != n.id {
			c.target = int(lead - 1)
		} else {
			c.target = w.rng.IntN(len(w.nodes))
		}
		c.after(int64(clientRetry))
		return
	}
	w.trace.add(w.now, "propose", n.id, "client "+strconv.Itoa(int(c.id))+" seq "+strconv.Itoa(int(c.seq))+" at "+strconv.Itoa(int(index)))
	w.inv.noteProposed(c.op.hash)
	c.waiting, c.node, c.inc, c.index, c.term = true, n, n.inc, index, term
	c.after(int64(clientTimeout))
	n.afterStep()
}

// applied sees every command a node applies.
func (c *client) applied(n *node, e *simcore.Entry, out string) {
	if !c.waiting || c.node != n || c.inc != n.inc || e.Index != c.index {
		return
	}
	w := c.w
	c.waiting = false
	if e.Term != c.term {
		// Another leader's entry took the index: ours was lost. Retry.
		c.after(int64(clientRetry))
		return
	}
	w.history = append(w.history, Op{
		Client: c.id, Seq: c.seq, Input: c.op.input, Output: out, Call: c.op.call, Return: w.now,
	})
	w.inv.noteAcknowledged(e.Index, e.Term, c.op.hash)
	c.op = nil
	if c.once {
		w.inv.probeDone(e.Index)
		return
	}
	c.after(w.rng.Int64N(int64(clientThink)))
}

// nodeRestored fails an attempt waiting on a node that replaced its state
// by a snapshot covering the index: it will never apply that entry. The
// retry is deduplicated if the entry did commit.
func (c *client) nodeRestored(n *node, index uint64) {
	if c.waiting && c.node == n && c.inc == n.inc && c.index <= index {
		c.waiting = false
		c.target = c.w.rng.IntN(len(c.w.nodes))
		c.after(int64(clientRetry))
	}
}

// nodeCrashed fails an attempt waiting on a node that crashed.
func (c *client) nodeCrashed(n *node) {
	if c.waiting && c.node == n {
		c.waiting = false
		c.target = (n.idx + 1) % len(c.w.nodes)
		c.after(int64(clientRetry))
	}
}

// giveUp records the operation in progress, if any, as one whose outcome
// the client never learned.
func (c *client) giveUp() {
	if c.op == nil {
		return
	}
	c.w.history = append(c.w.history, Op{
		Client: c.id, Seq: c.seq, Input: c.op.input, Call: c.op.call, Return: math.MaxInt64, Unknown: true,
	})
	c.op = nil
}
