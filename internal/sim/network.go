package sim

import (
	"fmt"
	"strconv"
	"time"

	"github.com/raftkit/raft/internal/simcore"
)

// network is the simulated network: which directed links are cut, and how
// lossy the rest are.
type network struct {
	n        int
	cut      [][]bool // cut[from][to], by node index
	drop     int      // per mille of messages dropped
	dup      int      // per mille duplicated
	longTail int      // per mille delayed by up to 200ms (reordering)
}

func (nw *network) init(n int) {
	nw.n = n
	nw.cut = make([][]bool, n)
	for i := range nw.cut {
		nw.cut[i] = make([]bool, n)
	}
}

func (nw *network) heal() {
	for i := range nw.cut {
		clear(nw.cut[i])
	}
	nw.drop, nw.dup, nw.longTail = 0, 0, 0
}

// send puts a message on the network.
func (w *world) send(m simcore.Msg) {
	w.stats.Messages++
	from, to := int(m.From-1), int(m.To-1)
	if w.net.cut[from][to] || (w.net.drop > 0 && w.rng.IntN(1000) < w.net.drop) {
		w.stats.Dropped++
		return
	}
	inc := w.nodes[from].inc
	w.schedule(event{at: w.now + w.msgDelay(), kind: evDeliver, msg: m, inc: inc})
	if w.net.dup > 0 && w.rng.IntN(1000) < w.net.dup {
		w.stats.Duplicated++
		w.schedule(event{at: w.now + w.msgDelay(), kind: evDeliver, msg: m, inc: inc})
	}
}

// msgDelay draws a one-way latency: mostly 0.1-2ms, sometimes up to 200ms.
func (w *world) msgDelay() int64 {
	d := int64(100*time.Microsecond) + w.rng.Int64N(int64(2*time.Millisecond))
	if w.net.longTail > 0 && w.rng.IntN(1000) < w.net.longTail {
		d += w.rng.Int64N(int64(200 * time.Millisecond))
	}
	return d
}

// deliver hands a message to its receiver, if it is up. A message whose
// sender crashed after sending it is lost half the time: it may still have
// been in the sender's buffers.
func (w *world) deliver(m simcore.Msg, senderInc uint32) {
	n := w.nodes[m.To-1]
	if !n.up {
		return
	}
	if w.nodes[m.From-1].inc != senderInc && w.rng.IntN(2) == 0 {
		w.stats.Dropped++
		return
	}
	w.trace.addMsg(w.now, m)
	w.inv.noteDelivery(n, m)
	if err := n.core.Step(m); err != nil {
		// Cores only receive what other correct cores sent: a message the
		// receiver must refuse means one of them broke the protocol.
		w.fail(ErrSafety, "node %d refused %s from %d: %v", n.id, m.Kind, m.From, err)
		return
	}
	if m.Kind == simcore.KindSnapResp {
		// The runtime's snapshot sender paces its chunks by them.
		n.snapResp(m)
	}
	n.afterStep()
}

// choose returns a number in [0, n): from the fuzzer's bytes while they
// last, then from the seeded generator.
func (w *world) choose(n int) int {
	if n <= 1 {
		return 0
	}
	if len(w.choices) > 0 {
		c := int(w.choices[0]) % n
		w.choices = w.choices[1:]
		return c
	}
	return w.rng.IntN(n)
}

func (w *world) faultDelay() int64 {
	mean := int64(w.opts.Faults.Every)
	return mean/2 + int64(w.choose(int(mean/int64(time.Millisecond))+1))*int64(time.Millisecond)
}

// pickNode picks the node a fault hits: half the time the leader of the
// highest term, where faults matter most, otherwise any node.
func (w *world) pickNode() *node {
	if w.choose(2) == 0 {
		var lead *node
		var term uint64
		for _, n := range w.nodes {
			if st := n.core.Status(); n.up && st.Role == simcore.Leader && st.Term >= term {
				lead, term = n, st.Term
			}
		}
		if lead != nil {
			return lead
		}
	}
	return w.nodes[w.choose(len(w.nodes))]
}

// faultStep makes one fault-schedule decision.
func (w *world) faultStep() {
	f := w.opts.Faults
	weights := []int{f.Crash, f.Partition, f.OneWay, f.Bridge, f.SlowDisk, f.Lossy, f.Skew, f.Heal}
	total := 0
	for _, x := range weights {
		total += x
	}
	if total == 0 {
		return
	}
	pick := w.choose(total)
	action := 0
	for ; pick >= weights[action]; action++ {
		pick -= weights[action]
	}
	nn := len(w.nodes)
	switch action {
	case 0: // crash an up node (now, or while it writes), or restart a down one
		n := w.pickNode()
		switch {
		case !n.up:
			n.restart()
		case w.choose(3) == 0:
			n.crash()
		default:
			n.crashAt = crashTrigger(1 + w.choose(2))
		}
	case 1: // symmetric partition into two random sides
		side := make([]bool, nn)
		for i := range side {
			side[i] = w.choose(2) == 1
		}
		for i := 0; i < nn; i++ {
			for j := 0; j < nn; j++ {
				w.net.cut[i][j] = side[i] != side[j]
			}
		}
		w.trace.add(w.now, "partition", 0, fmt.Sprint(side))
	case 2: // cut one direction of one link
		a, b := w.pickNode().idx, w.choose(nn)
		if a != b {
			w.net.cut[a][b] = true
			w.trace.add(w.now, "one-way", uint64(a+1), "cannot send to "+strconv.Itoa(b+1))
		}
	case 3: // a bridge: two halves that cannot talk, one node talking to both
		bridge := w.choose(nn)
		for i := 0; i < nn; i++ {
			for j := 0; j < nn; j++ {
				w.net.cut[i][j] = i != bridge && j != bridge && (i < nn/2) != (j < nn/2)
			}
		}
		w.trace.add(w.now, "bridge", uint64(bridge+1), "partial partition")
	case 4: // a slow disk for a while
		n := w.pickNode()
		n.slowUntil = w.now + int64(100*time.Millisecond) + int64(w.choose(20))*int64(50*time.Millisecond)
		w.trace.add(w.now, "slow-disk", n.id, "until "+time.Duration(n.slowUntil).String())
	case 5: // lossy network
		w.net.drop = w.choose(5) * 50     // 0-20%
		w.net.dup = w.choose(3) * 50      // 0-10%
		w.net.longTail = w.choose(4) * 50 // 0-15%
		w.trace.add(w.now, "lossy", 0, fmt.Sprintf("drop %d‰ dup %d‰ long %d‰", w.net.drop, w.net.dup, w.net.longTail))
	case 6: // a clock running 0.5x to 2x
		n := w.nodes[w.choose(nn)]
		n.tickEvery = int64(Tick) / 2 * int64(1+w.choose(4))
		w.trace.add(w.now, "skew", n.id, "tick every "+time.Duration(n.tickEvery).String())
	case 7: // heal the network and restart one down node
		w.net.heal()
		for _, n := range w.nodes {
			if !n.up {
				n.restart()
				break
			}
		}
		w.trace.add(w.now, "heal-net", 0, "")
	}
}
