package raft

// Snapshots in the core: compaction of the log behind a snapshot the
// application committed, the leader's decision to send a snapshot, and the
// follower's installation of one (paper §7). The core moves no snapshot
// data: the runtime streams it in MsgSnap chunks between the Persisters and
// reports back through the inputs below. The protocol decisions, which
// chunks to accept, when a snapshot may replace the log and when a follower
// is caught up, stay here where the simulator can drive them.

// snapshotSend asks the runtime to stream the Persister's newest snapshot to
// a follower. Meta is the log's compaction point when it was asked: the
// snapshot sent covers at least that much.
type snapshotSend struct {
	to   NodeID
	meta SnapshotMeta
}

// compact drops the log entries at or below index, which a snapshot the
// application committed covers, and has the next persist batch compact the
// Persister's log too. An index at or below the current offset, or above
// what has been handed out for applying, is ignored: a snapshot can only
// cover applied entries, and compaction never moves back.
func (c *core) compact(index uint64) {
	l := c.raftLog
	if index <= l.offset || index > l.applied {
		return
	}
	l.compact(index)
}

// sendSnapshot puts pr into stateSnapshot and asks the runtime to stream the
// snapshot to peer to.
func (c *core) sendSnapshot(to NodeID, pr *progress) {
	snap := c.raftLog.snapshot()
	c.log.Info("follower needs compacted entries: sending snapshot", "peer", to, "next", pr.next, "snapshot_index", snap.Index)
	pr.becomeSnapshot(snap.Index)
	c.snapSends = append(c.snapSends, snapshotSend{to: to, meta: snap})
}

// snapshotFailed reports that streaming a snapshot to peer to failed or was
// abandoned: the leader probes it again, and sends another snapshot if it
// still needs one.
func (c *core) snapshotFailed(to NodeID) {
	if c.role != RoleLeader {
		return
	}
	if pr := c.prs[to]; pr != nil && pr.state == stateSnapshot {
		c.log.Info("snapshot transfer failed; probing", "peer", to)
		pr.becomeProbe()
	}
}

// snapshotDone reports that the runtime has streamed the whole snapshot to
// peer to and the follower has stored it. The follower's acknowledgement of
// the install (a MsgAppResp) ends stateSnapshot; if none arrives within an
// election timeout, the leader probes again rather than wait forever.
func (c *core) snapshotDone(to NodeID) {
	if c.role != RoleLeader {
		return
	}
	if pr := c.prs[to]; pr != nil && pr.state == stateSnapshot {
		pr.snapshotWait = c.cfg.electionTicks
	}
}

// handleSnapshotChunk is the follower's side of one MsgSnap from the leader
// of its term. A snapshot that covers no more than this node has committed
// is of no use and could only roll it back: the node answers with its commit
// index so the leader replicates from there. Other chunks go to the
// runtime, which stores and acknowledges them.
func (c *core) handleSnapshotChunk(m Message) {
	if m.Index <= c.raftLog.committed {
		c.log.Debug("ignore stale snapshot chunk", "from", m.From, "snapshot_index", m.Index, "committed", c.raftLog.committed)
		c.send(Message{Type: MsgAppResp, To: m.From, Index: c.raftLog.committed})
		return
	}
	c.snapChunks = append(c.snapChunks, m)
}

// installSnapshot reports that the runtime has committed, in the Persister,
// the snapshot meta that leader from sent. If it still covers more than this
// node has committed, it replaces the log (keeping any suffix that follows
// it, paper §7 step 6), becomes what the application receives next, and its
// index is acknowledged to the leader once the persist batch recording it is
// durable. It returns whether the snapshot was installed. A stale or
// duplicate snapshot changes nothing (never roll back); a leader installs
// nothing, since only a leader of a later term sends snapshots and it would
// have stepped down on the first chunk.
func (c *core) installSnapshot(meta SnapshotMeta, from NodeID) bool {
	if c.role == RoleLeader || meta.Index <= c.raftLog.committed || meta.Term > c.term {
		c.log.Debug("ignore stale snapshot", "snapshot_index", meta.Index, "committed", c.raftLog.committed, "role", c.role)
		return false
	}
	c.log.Info("installing snapshot", "from", from, "index", meta.Index, "term", meta.Term, "last_index", c.raftLog.lastIndex())
	c.raftLog.restore(meta)
	c.restored = &meta
	// Acknowledge the snapshot's index, not our last: a suffix we kept
	// matched at the snapshot's last entry, but need not match after it.
	c.send(Message{Type: MsgAppResp, To: from, Index: meta.Index})
	return true
}

// takeSnapshotSends returns the snapshots the runtime must stream and clears
// the list.
func (c *core) takeSnapshotSends() []snapshotSend {
	s := c.snapSends
	c.snapSends = nil
	return s
}

// takeSnapshotChunks returns the MsgSnap chunks the runtime must store, in
// arrival order, and clears the list.
func (c *core) takeSnapshotChunks() []Message {
	s := c.snapChunks
	c.snapChunks = nil
	return s
}

// takeRestored returns the snapshot that replaced the log, if one did since
// the last call. The runtime delivers it to the application after the
// entries it already handed out and before any from nextApply.
func (c *core) takeRestored() (SnapshotMeta, bool) {
	if c.restored == nil {
		return SnapshotMeta{}, false
	}
	m := *c.restored
	c.restored = nil
	return m, true
}
