package raft

import (
	"io"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type recTransport struct {
	mu   sync.Mutex
	sent []Message
}

func (t *recTransport) Send(m Message)          { t.mu.Lock(); t.sent = append(t.sent, m); t.mu.Unlock() }
func (t *recTransport) Receive() <-chan Message { return nil }

// Two leaders, in different terms, each hold their own snapshot of the same
// committed state at the same (index, term): the bytes differ (each node
// serialised its own state, e.g. a Go map in random order, a timestamp, a
// different padding). Leader A (term 3) sends the first chunk, then loses
// leadership; leader B (term 4) streams its snapshot from offset 0. The
// receiver keys the transfer on SnapshotMeta only, takes B's chunk 0 for a
// duplicate of A's, and commits A's prefix followed by B's suffix: a
// snapshot neither leader wrote, delivered to the application as its state.
func TestSnapshot_ReceiverNeverSplicesTwoLeadersSnapshots(t *testing.T) {
	p := NewMemoryPersister()
	tr := &recTransport{}
	n := &Node{id: 2, cfg: Config{ID: 2, Transport: tr, Persister: p},
		installc: make(chan snapInstall, 1), stopc: make(chan struct{})}
	var cur snapReceiving
	meta := SnapshotMeta{Index: 100, Term: 2}
	chunk := func(from NodeID, term uint64, off uint64, data string, done bool) Message {
		return Message{Type: MsgSnap, From: from, To: 2, Term: term, Index: meta.Index, LogTerm: meta.Term,
			Offset: off, Data: []byte(data), Done: done}
	}
	// Leader 1, term 3: "AAAAaaaa"; only its first chunk arrives.
	n.receiveChunk(&cur, chunk(1, 3, 0, "AAAA", false))
	// Leader 3, term 4: "BBBBbbbb", its whole window.
	n.receiveChunk(&cur, chunk(3, 4, 0, "BBBB", false))
	n.receiveChunk(&cur, chunk(3, 4, 4, "bbbb", true))

	in := <-n.installc
	got, err := io.ReadAll(in.r)
	require.NoError(t, err)
	require.Contains(t, []string{"AAAAaaaa", "BBBBbbbb"}, string(got), "the installed snapshot must be one leader's snapshot")
}

// funcTransport calls send for every message.
type funcTransport func(m Message)

func (f funcTransport) Send(m Message)          { f(m) }
func (f funcTransport) Receive() <-chan Message { return nil }

// The follower's receiver holds part of snapshot X (from an earlier leader
// or an earlier snapshot of this one). The leader now streams snapshot Y
// and Y's first chunk is lost (network loss, or chunkc full). The receiver
// answers Y's later chunks with Reject and Offset = X's byte count
// (receiveChunk's reply uses cur.offset of the other transfer); the sender
// resumes Y there, the receiver answers the same again, every answer
// resets retries, and the transfer never ends: the follower stays in
// stateSnapshot for ever.
func TestSnapshot_SenderEndsWhenReceiverHoldsAnotherSnapshot(t *testing.T) {
	const chunk = 4096
	// Follower, holding one chunk of X = {100, 2}.
	pF := NewMemoryPersister()
	var cur snapReceiving
	sender := &snapSender{to: 2, term: 4, respc: make(chan Message, snapshotWindow), stopc: make(chan struct{})}
	var mu sync.Mutex
	var sentChunks int
	f := &Node{id: 2, cfg: Config{ID: 2, Persister: pF, Transport: funcTransport(func(m Message) {
		select {
		case sender.respc <- m: // as stepMessage forwards it
		default:
		}
	})}, installc: make(chan snapInstall, 1), stopc: make(chan struct{})}
	f.receiveChunk(&cur, Message{Type: MsgSnap, From: 3, To: 2, Term: 3, Index: 100, LogTerm: 2, Data: make([]byte, chunk)})
	require.Equal(t, uint64(chunk), cur.offset)

	// Leader 1, term 4, snapshot Y = {200, 3} of 8 chunks.
	pL := NewMemoryPersister()
	w, _ := pL.CreateSnapshot(SnapshotMeta{Index: 200, Term: 3})
	w.Write(make([]byte, 8*chunk))
	require.NoError(t, w.Commit())
	lostFirst := false
	l := &Node{id: 1, cfg: Config{ID: 1, Persister: pL, MaxMsgBytes: chunk, ElectionTimeout: 10 * time.Millisecond,
		Transport: funcTransport(func(m Message) {
			mu.Lock()
			sentChunks++
			mu.Unlock()
			if m.Offset == 0 && !lostFirst {
				lostFirst = true
				return // Y's first chunk is lost
			}
			f.receiveChunk(&cur, m)
		})}, stopc: make(chan struct{})}
	<-sender.respc // the answer to X's chunk went to the old leader
	result := make(chan bool, 1)
	go func() { result <- l.sendSnapshot(sender) }()
	// ackTimeout is 20ms and snapshotRetries 5: a transfer that cannot
	// progress must end well within 2s.
	select {
	case ok := <-result:
		t.Logf("sender ended: ok=%v", ok)
	case <-time.After(2 * time.Second):
		close(sender.stopc)
		<-result
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("snapshot sender still running after 2s (100 ack timeouts), %d chunks sent, receiver still at %v/%d", sentChunks, cur.meta, cur.offset)
	}
}
