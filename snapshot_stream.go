package raft

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// Snapshot streaming: the runtime's side of InstallSnapshot (paper §7). The
// core decides who needs a snapshot and whether a received one may be
// installed (snapshot_core.go); the goroutines here move the bytes, so that
// neither the run loop nor the core ever holds a snapshot in memory or
// waits for its disk.
//
//   - A sender per follower being caught up, started by the run loop when
//     the core asks (takeSnapshotSends). It streams the Persister's newest
//     snapshot in chunks of MaxMsgBytes, at most snapshotWindow of them
//     unacknowledged, and resumes from the follower's offset after a loss
//     or a reorder. It ends when the follower has stored the whole snapshot
//     (snapshotDone) or after snapshotRetries silent timeouts, or when the
//     run loop stops it (the node stopped leading); it reports to the run
//     loop, which tells the core.
//   - One receiver per node, started with it. The run loop hands it the
//     chunks the core accepted; it writes them to a SnapshotWriter in
//     order, answers each with how much it holds, and on the last one
//     commits the snapshot, opens it for the application, and reports it to
//     the run loop for installSnapshot.
//
// Chunks are ordinary messages: a Transport may lose, duplicate or reorder
// them, and both sides tolerate it.

const (
	// snapshotWindow is how many chunks a sender keeps unacknowledged.
	snapshotWindow = 4
	// snapshotRetries is how many timeouts and refusals in a row, with no
	// byte acknowledged in between, end a transfer as failed; the core then
	// probes and asks for a new one.
	snapshotRetries = 5
	// chunkQueue is how many accepted chunks wait for the receiver. The run
	// loop never blocks on it: a chunk that does not fit is dropped, and
	// its sender resends it after a timeout.
	chunkQueue = 2 * snapshotWindow
)

// snapSender is a running sender; the run loop owns the map of them.
type snapSender struct {
	to    NodeID
	term  uint64
	respc chan Message  // MsgSnapResp from the follower, forwarded by the run loop
	stopc chan struct{} // closed by the run loop to abandon the transfer
}

// snapSendResult is a sender's report to the run loop.
type snapSendResult struct {
	s  *snapSender
	ok bool
}

// snapInstall is the receiver's report of a committed snapshot: the run loop
// offers it to the core and, if installed, hands r to the application.
type snapInstall struct {
	meta SnapshotMeta
	from NodeID
	r    io.ReadCloser
}

// startSnapshotSender starts streaming the newest snapshot to s.to. Called by
// the run loop, which owns the returned sender.
func (n *Node) startSnapshotSender(to NodeID, term uint64) *snapSender {
	s := &snapSender{to: to, term: term, respc: make(chan Message, snapshotWindow), stopc: make(chan struct{})}
	n.wg.Add(1)
	go func() { // owner: the run loop (senders map); exits on s.stopc, n.stopc or the end of the transfer
		defer n.wg.Done()
		ok := n.sendSnapshot(s)
		select {
		case n.snapSentc <- snapSendResult{s: s, ok: ok}:
		case <-n.stopc:
		}
	}()
	return s
}

// ackTimeout is how long a sender waits for an acknowledgement before it
// resends from what the follower last acknowledged.
func (n *Node) ackTimeout() time.Duration { return 2 * n.cfg.electionTimeout() }

// sendSnapshot streams the newest snapshot to s.to and reports whether the
// follower has stored all of it.
func (n *Node) sendSnapshot(s *snapSender) bool {
	log := n.cfg.logger().With("peer", s.to)
	chunk := n.cfg.maxMsgBytes()
	var (
		meta      SnapshotMeta
		r         io.ReadCloser
		pos       uint64       // offset of the next byte r returns
		acked     uint64       // bytes the follower holds
		doneSent  bool         // the last chunk was sent, at offset pos
		resumed   = ^uint64(0) // offset of the last resume, until the follower moves past it
		stalls    int          // timeouts and refusals in a row with no byte acknowledged
		timer     = time.NewTimer(n.ackTimeout())
		openAtPos = func(off uint64) error {
			// Resume from off: reopen, and skip what the follower holds.
			// The newest snapshot may have changed meanwhile; a new one is
			// sent from its start.
			if r != nil {
				r.Close()
			}
			m, rr, err := n.cfg.Persister.OpenSnapshot()
			if err != nil {
				return err
			}
			if m != meta {
				meta, off, acked = m, 0, 0
			}
			if _, err := io.CopyN(io.Discard, rr, int64(off)); err != nil {
				rr.Close()
				return fmt.Errorf("skip to offset %d: %w", off, err)
			}
			r, pos, doneSent = rr, off, false
			return nil
		}
	)
	defer timer.Stop()
	defer func() {
		if r != nil {
			r.Close()
		}
	}()
	if err := openAtPos(0); err != nil {
		log.Error("cannot open snapshot to send", "err", err)
		return false
	}
	log.Info("sending snapshot", "index", meta.Index, "term", meta.Term)
	for {
		// Fill the window. Each chunk gets its own buffer: the Transport
		// may keep a message after Send.
		for !doneSent && pos-acked < uint64(snapshotWindow*chunk) {
			buf := make([]byte, chunk)
			k, err := io.ReadFull(r, buf)
			last := false
			switch {
			case err == io.EOF || err == io.ErrUnexpectedEOF:
				last = true
			case err != nil:
				log.Error("cannot read snapshot to send", "index", meta.Index, "err", err)
				return false
			}
			n.cfg.Transport.Send(Message{Type: MsgSnap, From: n.id, To: s.to, Term: s.term,
				Index: meta.Index, LogTerm: meta.Term, Offset: pos, Data: buf[:k], Done: last})
			pos += uint64(k)
			doneSent = last
		}
		select {
		case m := <-s.respc:
			if m.Index != meta.Index || m.LogTerm != meta.Term {
				continue // about another transfer
			}
			if m.Offset > acked && !m.Reject {
				stalls = 0 // progress
			}
			switch {
			case m.Reject && m.Offset == resumed:
				// Every chunk in flight past a lost one draws the same
				// answer; the first already made us resend from there.
				// If the resent chunk is lost too, the timeout resends.
			case m.Reject:
				// The follower holds m.Offset bytes in order and lost or
				// refused what followed: resume there. A follower that
				// keeps refusing (its disk fails) ends the transfer.
				if stalls++; stalls > snapshotRetries {
					log.Warn("follower keeps refusing the snapshot", "index", meta.Index, "offset", m.Offset)
					return false
				}
				if m.Offset > pos {
					log.Warn("follower claims more snapshot than sent", "offset", m.Offset, "sent", pos)
					return false
				}
				acked, resumed = m.Offset, m.Offset
				if err := openAtPos(m.Offset); err != nil {
					log.Error("cannot reopen snapshot to resume", "err", err)
					return false
				}
			case m.Offset > acked:
				acked = m.Offset
			}
			if doneSent && acked == pos {
				log.Info("snapshot sent", "index", meta.Index, "bytes", pos)
				return true
			}
		case <-timer.C:
			resumed = ^uint64(0)
			if stalls++; stalls > snapshotRetries {
				log.Warn("snapshot transfer timed out", "index", meta.Index, "acked", acked)
				return false
			}
			if err := openAtPos(acked); err != nil {
				log.Error("cannot reopen snapshot to resume", "err", err)
				return false
			}
		case <-s.stopc:
			return false
		case <-n.stopc:
			return false
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(n.ackTimeout())
	}
}

// snapReceiving is the snapshot the receiver is writing. A transfer is
// identified by the snapshot and by the leader and term sending it: two
// leaders may hold snapshots at the same position whose bytes differ (a
// map encoded in another order), and chunks of one must never continue the
// other's.
type snapReceiving struct {
	meta   SnapshotMeta
	from   NodeID
	term   uint64
	w      SnapshotWriter // nil when none is being written
	offset uint64         // bytes written, in order
}

// receiveLoop stores the snapshot chunks the run loop hands it (n.chunkc).
func (n *Node) receiveLoop() {
	defer n.wg.Done()
	var cur snapReceiving
	defer func() {
		if cur.w != nil {
			cur.w.Abort()
		}
	}()
	for {
		select {
		case m := <-n.chunkc:
			n.receiveChunk(&cur, m)
		case <-n.stopc:
			return
		}
	}
}

// receiveChunk writes m if it is the next chunk of the snapshot being
// received (or the first of a new one), commits the snapshot on its last
// chunk, and answers the sender with the bytes held.
func (n *Node) receiveChunk(cur *snapReceiving, m Message) {
	log := n.cfg.logger()
	meta := SnapshotMeta{Index: m.Index, Term: m.LogTerm}
	reply := func(offset uint64, reject bool) {
		n.cfg.Transport.Send(Message{Type: MsgSnapResp, From: n.id, To: m.From, Term: m.Term,
			Index: meta.Index, LogTerm: meta.Term, Offset: offset, Reject: reject})
	}
	if cur.w == nil || cur.meta != meta || cur.from != m.From || cur.term != m.Term {
		if m.Offset != 0 {
			// The middle of a transfer we are not writing (we restarted,
			// aborted it, or hold another one): ask for it from the start.
			reply(0, true)
			return
		}
		if cur.w != nil {
			log.Info("abandoning a snapshot transfer for a newer one", "index", cur.meta.Index, "from", cur.from,
				"new_index", meta.Index, "new_from", m.From)
			cur.w.Abort()
		}
		*cur = snapReceiving{}
		w, err := n.cfg.Persister.CreateSnapshot(meta)
		if err != nil {
			log.Error("cannot create snapshot to receive", "index", meta.Index, "err", err)
			reply(0, true)
			return
		}
		*cur = snapReceiving{meta: meta, from: m.From, term: m.Term, w: w}
	}
	switch {
	case m.Offset < cur.offset:
		reply(cur.offset, false) // a duplicate: say where we are
		return
	case m.Offset > cur.offset:
		reply(cur.offset, true) // a gap: resume from where we are
		return
	}
	if _, err := cur.w.Write(m.Data); err != nil {
		log.Error("cannot write received snapshot", "index", meta.Index, "err", err)
		cur.w.Abort()
		*cur = snapReceiving{}
		reply(0, true)
		return
	}
	cur.offset += uint64(len(m.Data))
	if !m.Done {
		reply(cur.offset, false)
		return
	}
	w, size := cur.w, cur.offset
	*cur = snapReceiving{}
	if err := w.Commit(); err != nil {
		if errors.Is(err, ErrStaleSnapshot) {
			log.Info("received snapshot is older than ours", "index", meta.Index)
		} else {
			log.Error("cannot commit received snapshot", "index", meta.Index, "err", err)
		}
		reply(0, true)
		return
	}
	// Open it now, before any newer snapshot can replace it: the
	// application must receive exactly the state at meta.
	got, r, err := n.cfg.Persister.OpenSnapshot()
	if err == nil && got != meta {
		r.Close()
		err = fmt.Errorf("newest snapshot is %d/%d, not the one just committed", got.Index, got.Term)
	}
	if err != nil {
		log.Error("cannot open received snapshot", "index", meta.Index, "err", err)
		reply(0, true)
		return
	}
	reply(size, false)
	select {
	case n.installc <- snapInstall{meta: meta, from: m.From, r: r}:
	case <-n.stopc:
		r.Close()
	}
}
