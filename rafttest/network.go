// Package rafttest helps test code built on package raft: an in-memory
// network that injects faults (disconnections, partitions, loss, delay,
// reordering, duplication) and a Cluster harness that runs several nodes on
// it, crashes and restarts them, and checks that every node applied the same
// commands in the same order. It is to raft what net/http/httptest is to
// net/http: use it in your tests to run your own state machine under faults.
package rafttest

import (
	"container/heap"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/raftkit/raft"
)

// Network is an in-memory network connecting raft nodes. Each node gets a
// Transport from Endpoint. Faults are configured at any time and apply to
// messages sent afterwards; delayed messages are checked again on delivery,
// so a message to a node that has been disconnected meanwhile is lost.
//
// A Network owns one goroutine, which delivers delayed messages; Close stops
// it. All methods are safe for concurrent use.
type Network struct {
	mu        sync.Mutex
	rng       *rand.Rand
	endpoints map[raft.NodeID]*endpoint
	// Connectivity.
	disconnected map[raft.NodeID]bool
	group        map[raft.NodeID]int // partition group; 0 for nodes in no group
	partitioned  bool
	blocked      map[[2]raft.NodeID]bool // one-way: from, to
	// Faults.
	dropRate      float64
	dupRate       float64
	minDelay      time.Duration
	maxDelay      time.Duration
	longDelayRate float64
	longDelayMax  time.Duration
	drop          func(m raft.Message) bool
	// Accounting.
	stats map[raft.NodeID]*Stats
	// Delayed delivery.
	queue  deliveryQueue
	seq    uint64
	wake   chan struct{}
	closed bool
	done   chan struct{}
}

// Stats counts one node's traffic.
type Stats struct {
	MsgsSent, BytesSent int64 // handed to Send by this node
	MsgsRecv, BytesRecv int64 // delivered to this node
	Dropped             int64 // sent by this node and lost (fault, partition or full queue)
	// SentByType counts the messages this node sent, by type.
	SentByType map[raft.MessageType]int64
}

// endpointQueue is the receive buffer of each endpoint; a message arriving
// at a full buffer is dropped, as a congested network would.
const endpointQueue = 4096

// NewNetwork returns a reliable network (no loss, no delay) whose random
// faults are drawn from seed.
func NewNetwork(seed uint64) *Network {
	nw := &Network{
		rng:          rand.New(rand.NewPCG(seed, 0x5eed)),
		endpoints:    map[raft.NodeID]*endpoint{},
		disconnected: map[raft.NodeID]bool{},
		group:        map[raft.NodeID]int{},
		blocked:      map[[2]raft.NodeID]bool{},
		stats:        map[raft.NodeID]*Stats{},
		wake:         make(chan struct{}, 1),
		done:         make(chan struct{}),
	}
	go nw.deliverLoop() // owner: nw; exits once Close sets closed and wakes it; closes nw.done
	return nw
}

// Endpoint returns a new Transport for node id, replacing any earlier
// endpoint of id: messages in flight to the old one are lost, as they would
// be for a process that restarted.
func (nw *Network) Endpoint(id raft.NodeID) raft.Transport {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	ep := &endpoint{nw: nw, id: id, recv: make(chan raft.Message, endpointQueue)}
	nw.endpoints[id] = ep
	return ep
}

// Disconnect cuts every link to and from id.
func (nw *Network) Disconnect(id raft.NodeID) {
	nw.mu.Lock()
	nw.disconnected[id] = true
	nw.mu.Unlock()
}

// Connect restores the links to and from id cut by Disconnect.
func (nw *Network) Connect(id raft.NodeID) {
	nw.mu.Lock()
	delete(nw.disconnected, id)
	nw.mu.Unlock()
}

// Partition splits the network into the given groups: nodes talk only within
// their group. A node in no group can talk to nobody. Heal undoes it.
func (nw *Network) Partition(groups ...[]raft.NodeID) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.group = map[raft.NodeID]int{}
	for i, g := range groups {
		for _, id := range g {
			nw.group[id] = i + 1
		}
	}
	nw.partitioned = true
}

// Block cuts the one-way link from one node to another (a partial or
// asymmetric partition). Unblock restores it.
func (nw *Network) Block(from, to raft.NodeID) {
	nw.mu.Lock()
	nw.blocked[[2]raft.NodeID{from, to}] = true
	nw.mu.Unlock()
}

// Unblock restores the link cut by Block.
func (nw *Network) Unblock(from, to raft.NodeID) {
	nw.mu.Lock()
	delete(nw.blocked, [2]raft.NodeID{from, to})
	nw.mu.Unlock()
}

// Heal removes every partition, one-way block and disconnection.
func (nw *Network) Heal() {
	nw.mu.Lock()
	nw.group = map[raft.NodeID]int{}
	nw.partitioned = false
	nw.blocked = map[[2]raft.NodeID]bool{}
	nw.disconnected = map[raft.NodeID]bool{}
	nw.mu.Unlock()
}

// SetDropRate makes the network lose each message with probability p.
func (nw *Network) SetDropRate(p float64) {
	nw.mu.Lock()
	nw.dropRate = p
	nw.mu.Unlock()
}

// SetDropFilter makes the network lose every message for which drop returns
// true, in addition to the other faults; nil removes the filter. drop is
// called with the network's lock held, once per message sent: it must not
// call the Network.
func (nw *Network) SetDropFilter(drop func(m raft.Message) bool) {
	nw.mu.Lock()
	nw.drop = drop
	nw.mu.Unlock()
}

// SetDuplicateRate makes the network deliver each message twice with
// probability p.
func (nw *Network) SetDuplicateRate(p float64) {
	nw.mu.Lock()
	nw.dupRate = p
	nw.mu.Unlock()
}

// SetDelay delays each message by a uniform random duration in [lo, hi],
// which reorders messages whose delays overlap.
func (nw *Network) SetDelay(lo, hi time.Duration) {
	nw.mu.Lock()
	nw.minDelay, nw.maxDelay = lo, max(lo, hi)
	nw.mu.Unlock()
}

// SetLongDelays delays a fraction p of messages by up to maxDelay, far
// beyond the others: they arrive long after newer messages, as stale
// duplicates of old state.
func (nw *Network) SetLongDelays(p float64, maxDelay time.Duration) {
	nw.mu.Lock()
	nw.longDelayRate, nw.longDelayMax = p, maxDelay
	nw.mu.Unlock()
}

// SetUnreliable is shorthand for a lossy, reordering network: 10% loss,
// 0-27ms delays and 10% of messages delayed up to 2s (the long reordering
// of MIT 6.824's labrpc), or a reliable network again when false.
func (nw *Network) SetUnreliable(on bool) {
	if on {
		nw.SetDropRate(0.1)
		nw.SetDelay(0, 27*time.Millisecond)
		nw.SetLongDelays(0.1, 2*time.Second)
		return
	}
	nw.SetDropRate(0)
	nw.SetDelay(0, 0)
	nw.SetLongDelays(0, 0)
}

// Stats returns a copy of id's traffic counters.
func (nw *Network) Stats(id raft.NodeID) Stats {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	s := nw.statsLocked(id)
	out := *s
	out.SentByType = make(map[raft.MessageType]int64, len(s.SentByType))
	for k, v := range s.SentByType {
		out.SentByType[k] = v
	}
	return out
}

// ResetStats zeroes every node's counters.
func (nw *Network) ResetStats() {
	nw.mu.Lock()
	nw.stats = map[raft.NodeID]*Stats{}
	nw.mu.Unlock()
}

// Close stops the delivery goroutine and drops every message in flight. The
// network delivers nothing afterwards.
func (nw *Network) Close() {
	nw.mu.Lock()
	if nw.closed {
		nw.mu.Unlock()
		<-nw.done
		return
	}
	nw.closed = true
	nw.queue = nil
	nw.mu.Unlock()
	select {
	case nw.wake <- struct{}{}:
	default:
	}
	<-nw.done
}

func (nw *Network) statsLocked(id raft.NodeID) *Stats {
	s := nw.stats[id]
	if s == nil {
		s = &Stats{SentByType: map[raft.MessageType]int64{}}
		nw.stats[id] = s
	}
	return s
}

func (nw *Network) linkUpLocked(from, to raft.NodeID) bool {
	if nw.disconnected[from] || nw.disconnected[to] || nw.blocked[[2]raft.NodeID{from, to}] {
		return false
	}
	return !nw.partitioned || (nw.group[from] != 0 && nw.group[from] == nw.group[to])
}

func (nw *Network) send(m raft.Message) {
	size := int64(m.Size())
	nw.mu.Lock()
	defer nw.mu.Unlock()
	s := nw.statsLocked(m.From)
	s.MsgsSent++
	s.BytesSent += size
	s.SentByType[m.Type]++
	if nw.closed || !nw.linkUpLocked(m.From, m.To) || (nw.dropRate > 0 && nw.rng.Float64() < nw.dropRate) ||
		(nw.drop != nil && nw.drop(m)) {
		s.Dropped++
		return
	}
	copies := 1
	if nw.dupRate > 0 && nw.rng.Float64() < nw.dupRate {
		copies = 2
	}
	for range copies {
		delay := nw.delayLocked()
		if delay == 0 {
			nw.deliverLocked(m, size, nw.endpoints[m.To])
			continue
		}
		nw.seq++
		heap.Push(&nw.queue, delivery{at: time.Now().Add(delay), seq: nw.seq, m: m, to: nw.endpoints[m.To]})
		select {
		case nw.wake <- struct{}{}:
		default:
		}
	}
}

func (nw *Network) delayLocked() time.Duration {
	if nw.longDelayRate > 0 && nw.rng.Float64() < nw.longDelayRate {
		return time.Duration(nw.rng.Int64N(int64(nw.longDelayMax) + 1))
	}
	if nw.maxDelay == 0 {
		return 0
	}
	return nw.minDelay + time.Duration(nw.rng.Int64N(int64(nw.maxDelay-nw.minDelay)+1))
}

// deliverLocked puts m in the queue of ep, the destination's endpoint when
// m was sent, if the link is still up and ep has not been replaced since.
func (nw *Network) deliverLocked(m raft.Message, size int64, ep *endpoint) {
	if ep == nil || nw.endpoints[m.To] != ep || !nw.linkUpLocked(m.From, m.To) {
		nw.statsLocked(m.From).Dropped++
		return
	}
	select {
	case ep.recv <- m:
		r := nw.statsLocked(m.To)
		r.MsgsRecv++
		r.BytesRecv += size
	default:
		nw.statsLocked(m.From).Dropped++
	}
}

// deliverLoop delivers delayed messages when they are due.
func (nw *Network) deliverLoop() {
	defer close(nw.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		nw.mu.Lock()
		if nw.closed {
			nw.mu.Unlock()
			return
		}
		now := time.Now()
		for len(nw.queue) > 0 && !nw.queue[0].at.After(now) {
			d := heap.Pop(&nw.queue).(delivery)
			nw.deliverLocked(d.m, int64(d.m.Size()), d.to)
		}
		wait := time.Hour
		if len(nw.queue) > 0 {
			wait = nw.queue[0].at.Sub(now)
		}
		nw.mu.Unlock()
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-nw.wake:
		}
	}
}

type endpoint struct {
	nw   *Network
	id   raft.NodeID
	recv chan raft.Message
}

func (ep *endpoint) Send(m raft.Message)          { ep.nw.send(m) }
func (ep *endpoint) Receive() <-chan raft.Message { return ep.recv }

type delivery struct {
	at  time.Time
	seq uint64
	m   raft.Message
	to  *endpoint // the destination's endpoint when m was sent
}

// deliveryQueue is a min-heap of deliveries by (time, sequence).
type deliveryQueue []delivery

func (q deliveryQueue) Len() int { return len(q) }
func (q deliveryQueue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q deliveryQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *deliveryQueue) Push(x any)   { *q = append(*q, x.(delivery)) }
func (q *deliveryQueue) Pop() any {
	old := *q
	d := old[len(old)-1]
	*q = old[:len(old)-1]
	return d
}
