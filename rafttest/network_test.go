package rafttest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/raftkit/raft"
)

// netWait bounds every wait for a delayed delivery: generous, since the
// tests run under -race on loaded machines. Nothing asserts speed.
const netWait = 10 * time.Second

// netNew returns a network with endpoints for ids, closed at the end of
// the test.
func netNew(t *testing.T, seed uint64, ids ...raft.NodeID) (*Network, map[raft.NodeID]raft.Transport) {
	t.Helper()
	nw := NewNetwork(seed)
	t.Cleanup(nw.Close)
	eps := map[raft.NodeID]raft.Transport{}
	for _, id := range ids {
		eps[id] = nw.Endpoint(id)
	}
	return nw, eps
}

func netMsg(from, to raft.NodeID, index uint64) raft.Message {
	return raft.Message{Type: raft.MsgApp, From: from, To: to, Term: 1, Index: index}
}

// netDrain returns every message already queued at ep, without waiting.
func netDrain(ep raft.Transport) []raft.Message {
	var out []raft.Message
	for {
		select {
		case m := <-ep.Receive():
			out = append(out, m)
		default:
			return out
		}
	}
}

// netRecvN waits up to netWait for n messages at ep and returns them in
// arrival order.
func netRecvN(t *testing.T, ep raft.Transport, n int) []raft.Message {
	t.Helper()
	out := make([]raft.Message, 0, n)
	timeout := time.NewTimer(netWait)
	defer timeout.Stop()
	for len(out) < n {
		select {
		case m := <-ep.Receive():
			out = append(out, m)
		case <-timeout.C:
			t.Fatalf("received %d messages within %v, want %d", len(out), netWait, n)
		}
	}
	return out
}

// netDelivered sends one message from -> to on a network without delays
// and reports whether it arrived. Delivery is synchronous then: the message
// is queued at the receiver before Send returns.
func netDelivered(t *testing.T, eps map[raft.NodeID]raft.Transport, from, to raft.NodeID) bool {
	t.Helper()
	require.Empty(t, netDrain(eps[to]), "stale messages at %d", to)
	eps[from].Send(netMsg(from, to, 7))
	got := netDrain(eps[to])
	require.LessOrEqual(t, len(got), 1)
	if len(got) == 1 {
		require.Equal(t, netMsg(from, to, 7), got[0])
	}
	return len(got) == 1
}

func TestNetworkReliableDeliversUnchanged(t *testing.T) {
	_, eps := netNew(t, 1, 1, 2)
	m := raft.Message{Type: raft.MsgApp, From: 1, To: 2, Term: 3, Index: 4, LogTerm: 2, Commit: 1,
		Entries: []raft.Entry{{Index: 5, Term: 3, Data: []byte("x")}}}
	eps[1].Send(m)
	got := netDrain(eps[2])
	require.Equal(t, []raft.Message{m}, got)
	require.Empty(t, netDrain(eps[1]), "the sender receives nothing")
}

func TestNetworkPartition(t *testing.T) {
	nw, eps := netNew(t, 1, 1, 2, 3, 4)
	nw.Partition([]raft.NodeID{1, 2}, []raft.NodeID{3})
	require.True(t, netDelivered(t, eps, 1, 2), "same group")
	require.True(t, netDelivered(t, eps, 2, 1), "same group")
	require.False(t, netDelivered(t, eps, 1, 3), "across groups")
	require.False(t, netDelivered(t, eps, 3, 1), "across groups")
	require.False(t, netDelivered(t, eps, 4, 1), "4 is in no group")
	require.False(t, netDelivered(t, eps, 1, 4), "4 is in no group")
	require.EqualValues(t, 2, nw.Stats(1).Dropped)

	// A new partition replaces the old one.
	nw.Partition([]raft.NodeID{1, 3}, []raft.NodeID{2, 4})
	require.True(t, netDelivered(t, eps, 1, 3))
	require.True(t, netDelivered(t, eps, 4, 2))
	require.False(t, netDelivered(t, eps, 1, 2))

	nw.Heal()
	for _, l := range [][2]raft.NodeID{{1, 2}, {1, 3}, {3, 1}, {4, 1}, {2, 4}} {
		require.True(t, netDelivered(t, eps, l[0], l[1]), "after Heal: %d -> %d", l[0], l[1])
	}
}

func TestNetworkDisconnect(t *testing.T) {
	nw, eps := netNew(t, 1, 1, 2, 3)
	nw.Disconnect(2)
	require.False(t, netDelivered(t, eps, 1, 2))
	require.False(t, netDelivered(t, eps, 2, 1))
	require.True(t, netDelivered(t, eps, 1, 3), "other links stay up")
	nw.Connect(2)
	require.True(t, netDelivered(t, eps, 1, 2))
	require.True(t, netDelivered(t, eps, 2, 1))

	nw.Disconnect(3)
	nw.Heal()
	require.True(t, netDelivered(t, eps, 3, 1), "Heal reconnects")
}

func TestNetworkBlockIsOneWay(t *testing.T) {
	nw, eps := netNew(t, 1, 1, 2, 3)
	nw.Block(1, 2)
	require.False(t, netDelivered(t, eps, 1, 2), "blocked direction")
	require.True(t, netDelivered(t, eps, 2, 1), "the reverse direction stays up")
	require.True(t, netDelivered(t, eps, 1, 3), "other links stay up")
	nw.Unblock(1, 2)
	require.True(t, netDelivered(t, eps, 1, 2))

	nw.Block(3, 1)
	nw.Heal()
	require.True(t, netDelivered(t, eps, 3, 1), "Heal removes blocks")
}

// netDropRun sends total messages 1 -> 2 at drop rate p and returns the
// indexes delivered, in order.
func netDropRun(t *testing.T, seed uint64, p float64, total int) []uint64 {
	t.Helper()
	nw, eps := netNew(t, seed, 1, 2)
	nw.SetDropRate(p)
	var got []uint64
	const chunk = 1000 // below the endpoint queue, so no message is lost to a full queue
	for i := 0; i < total; i++ {
		eps[1].Send(netMsg(1, 2, uint64(i)))
		if i%chunk == chunk-1 {
			for _, m := range netDrain(eps[2]) {
				got = append(got, m.Index)
			}
		}
	}
	for _, m := range netDrain(eps[2]) {
		got = append(got, m.Index)
	}
	s := nw.Stats(1)
	require.EqualValues(t, total, s.MsgsSent)
	require.EqualValues(t, total-len(got), s.Dropped, "every lost message is counted as dropped")
	require.EqualValues(t, len(got), nw.Stats(2).MsgsRecv)
	return got
}

func TestNetworkDropRate(t *testing.T) {
	const total = 20000
	for _, p := range []float64{0, 0.1, 0.5, 1} {
		got := netDropRun(t, 42, p, total)
		lost := float64(total-len(got)) / total
		// The standard deviation is at most 0.0036 here: 0.03 is over 8 of them.
		require.InDelta(t, p, lost, 0.03, "drop rate %v", p)
		for i := 1; i < len(got); i++ {
			require.Less(t, got[i-1], got[i], "without delay, order is kept")
		}
	}
}

func TestNetworkDropsAreSeeded(t *testing.T) {
	a := netDropRun(t, 7, 0.3, 3000)
	b := netDropRun(t, 7, 0.3, 3000)
	c := netDropRun(t, 8, 0.3, 3000)
	require.Equal(t, a, b, "the same seed loses the same messages")
	require.NotEqual(t, a, c, "another seed loses others")
}

func TestNetworkDelayReorders(t *testing.T) {
	nw, eps := netNew(t, 3, 1, 2)
	nw.SetDelay(0, 20*time.Millisecond)
	const n = 300
	for i := 0; i < n; i++ {
		eps[1].Send(netMsg(1, 2, uint64(i)))
	}
	got := netRecvN(t, eps[2], n)
	seen := map[uint64]bool{}
	reordered := 0
	for i, m := range got {
		require.False(t, seen[m.Index], "index %d delivered twice", m.Index)
		seen[m.Index] = true
		if i > 0 && got[i-1].Index > m.Index {
			reordered++
		}
	}
	require.Len(t, seen, n, "every delayed message arrives")
	require.Positive(t, reordered, "overlapping random delays reorder messages")
}

func TestNetworkDelayIsAtLeastLo(t *testing.T) {
	nw, eps := netNew(t, 3, 1, 2)
	const lo = 40 * time.Millisecond
	nw.SetDelay(lo, lo+10*time.Millisecond)
	for i := 0; i < 5; i++ {
		start := time.Now()
		eps[1].Send(netMsg(1, 2, uint64(i)))
		require.Empty(t, netDrain(eps[2]), "a delayed message is not delivered at once")
		netRecvN(t, eps[2], 1)
		require.GreaterOrEqual(t, time.Since(start), lo)
	}
}

func TestNetworkLongDelays(t *testing.T) {
	nw, eps := netNew(t, 5, 1, 2)
	nw.SetLongDelays(0.5, 100*time.Millisecond)
	const n = 200
	for i := 0; i < n; i++ {
		eps[1].Send(netMsg(1, 2, uint64(i)))
	}
	immediate := len(netDrain(eps[2]))
	// The long delay is drawn from [0, max], so a few are delivered at once.
	require.Greater(t, immediate, n/4, "about half the messages are not delayed")
	require.Less(t, immediate, n-n/4, "about half the messages are delayed")
	netRecvN(t, eps[2], n-immediate)
}

func TestNetworkDelayedMessageRecheckedOnDelivery(t *testing.T) {
	nw, eps := netNew(t, 1, 1, 2)
	nw.SetDelay(30*time.Millisecond, 30*time.Millisecond)
	eps[1].Send(netMsg(1, 2, 1))
	nw.Disconnect(2) // while the message is in flight
	deadline := time.Now().Add(netWait)
	for nw.Stats(1).Dropped == 0 {
		require.True(t, time.Now().Before(deadline), "the in-flight message was never dropped")
		time.Sleep(5 * time.Millisecond) // poll interval
	}
	require.Empty(t, netDrain(eps[2]), "a message to a node disconnected in flight is lost")
	require.Zero(t, nw.Stats(2).MsgsRecv)
}

func TestNetworkDuplicate(t *testing.T) {
	nw, eps := netNew(t, 9, 1, 2)
	nw.SetDuplicateRate(1)
	for i := 0; i < 10; i++ {
		eps[1].Send(netMsg(1, 2, uint64(i)))
	}
	got := netDrain(eps[2])
	require.Len(t, got, 20, "every message arrives twice")
	for i, m := range got {
		require.EqualValues(t, i/2, m.Index)
	}
	require.EqualValues(t, 10, nw.Stats(1).MsgsSent, "a duplicate is not a send")
	require.EqualValues(t, 20, nw.Stats(2).MsgsRecv)

	nw.SetDuplicateRate(0.3)
	const n = 2000
	for i := 0; i < n; i++ {
		eps[1].Send(netMsg(1, 2, uint64(i)))
		if i%1000 == 999 {
			got = append(got, netDrain(eps[2])...)
		}
	}
	extra := float64(len(got)-20-n) / n
	require.InDelta(t, 0.3, extra, 0.06)
}

func TestNetworkStats(t *testing.T) {
	nw, eps := netNew(t, 1, 1, 2, 3)
	app := raft.Message{Type: raft.MsgApp, From: 1, To: 2, Term: 1,
		Entries: []raft.Entry{{Index: 1, Term: 1, Data: make([]byte, 100)}}}
	hb := raft.Message{Type: raft.MsgHeartbeat, From: 1, To: 3, Term: 1}
	resp := raft.Message{Type: raft.MsgAppResp, From: 2, To: 1, Term: 1}
	eps[1].Send(app)
	eps[1].Send(app)
	eps[1].Send(hb)
	eps[2].Send(resp)
	nw.Disconnect(3)
	eps[1].Send(hb) // dropped

	s1 := nw.Stats(1)
	require.EqualValues(t, 4, s1.MsgsSent)
	require.EqualValues(t, 2*app.Size()+2*hb.Size(), s1.BytesSent)
	require.EqualValues(t, 1, s1.Dropped)
	require.Equal(t, map[raft.MessageType]int64{raft.MsgApp: 2, raft.MsgHeartbeat: 2}, s1.SentByType)
	require.EqualValues(t, 1, s1.MsgsRecv)
	require.EqualValues(t, resp.Size(), s1.BytesRecv)

	s2 := nw.Stats(2)
	require.EqualValues(t, 2, s2.MsgsRecv)
	require.EqualValues(t, 2*app.Size(), s2.BytesRecv)
	require.Equal(t, map[raft.MessageType]int64{raft.MsgAppResp: 1}, s2.SentByType)
	require.EqualValues(t, 1, nw.Stats(3).MsgsRecv, "the dropped heartbeat is not received")

	// Stats returns a copy.
	s1.SentByType[raft.MsgVote] = 99
	require.Zero(t, nw.Stats(1).SentByType[raft.MsgVote])

	// A node that never sent has zero counters, not a nil map.
	require.NotNil(t, nw.Stats(9).SentByType)
	require.Zero(t, nw.Stats(9).MsgsSent)

	nw.ResetStats()
	for _, id := range []raft.NodeID{1, 2, 3} {
		s := nw.Stats(id)
		require.Zero(t, s.MsgsSent+s.MsgsRecv+s.BytesSent+s.BytesRecv+s.Dropped, "node %d", id)
		require.Empty(t, s.SentByType)
	}
	eps[2].Send(resp)
	require.EqualValues(t, 1, nw.Stats(2).MsgsSent, "counting goes on after ResetStats")
}

func TestNetworkFullQueueDrops(t *testing.T) {
	nw, eps := netNew(t, 1, 1, 2)
	for i := 0; i < endpointQueue+10; i++ {
		eps[1].Send(netMsg(1, 2, uint64(i)))
	}
	require.Len(t, netDrain(eps[2]), endpointQueue)
	require.EqualValues(t, 10, nw.Stats(1).Dropped, "a message for a full queue is dropped, never blocks")
}

func TestNetworkEndpointReplaced(t *testing.T) {
	nw, eps := netNew(t, 1, 1, 2)
	old := eps[2]
	eps[2] = nw.Endpoint(2) // node 2 restarted
	eps[1].Send(netMsg(1, 2, 1))
	require.Len(t, netDrain(eps[2]), 1, "the new endpoint receives")
	require.Empty(t, netDrain(old), "the old endpoint receives nothing more")
}

func TestNetworkInFlightToReplacedEndpointIsLost(t *testing.T) {
	nw, eps := netNew(t, 1, 1, 2)
	nw.SetDelay(30*time.Millisecond, 30*time.Millisecond)
	eps[1].Send(netMsg(1, 2, 1))
	eps[2] = nw.Endpoint(2) // node 2 restarted while the message is in flight
	deadline := time.Now().Add(netWait)
	for s := nw.Stats(1); s.Dropped == 0 && nw.Stats(2).MsgsRecv == 0; s = nw.Stats(1) {
		require.True(t, time.Now().Before(deadline), "the in-flight message was neither delivered nor dropped")
		time.Sleep(5 * time.Millisecond) // poll interval
	}
	if got := netDrain(eps[2]); len(got) > 0 {
		t.Fatal("a message in flight to a replaced endpoint was delivered to its replacement")
	}
}

func TestNetworkSetUnreliableOffIsReliable(t *testing.T) {
	nw, eps := netNew(t, 1, 1, 2)
	nw.SetUnreliable(true)
	nw.SetUnreliable(false)
	nw.ResetStats()
	for i := 0; i < 100; i++ {
		eps[1].Send(netMsg(1, 2, uint64(i)))
	}
	require.Len(t, netDrain(eps[2]), 100, "no loss, no delay")
	require.Zero(t, nw.Stats(1).Dropped)
}

func TestNetworkCloseStopsDelivery(t *testing.T) {
	before := goleak.IgnoreCurrent()
	nw := NewNetwork(1)
	a, b := nw.Endpoint(1), nw.Endpoint(2)
	nw.SetDelay(20*time.Millisecond, 40*time.Millisecond)
	for i := 0; i < 10; i++ {
		a.Send(netMsg(1, 2, uint64(i)))
	}
	nw.Close()
	goleak.VerifyNone(t, before) // the delivery goroutine has exited
	require.Empty(t, netDrain(b), "messages in flight are dropped")

	nw.SetDelay(0, 0)
	a.Send(netMsg(1, 2, 99))
	require.Empty(t, netDrain(b), "nothing is delivered after Close")
	require.EqualValues(t, 1, nw.Stats(1).Dropped)
	nw.Close() // idempotent
}
