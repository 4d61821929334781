package raft

import "fmt"

// Replication: the leader's side of AppendEntries with per-peer flow control,
// the commit rule, heartbeats and CheckQuorum; and the follower's side
// (paper §5.3, §5.4.2; thesis §10.2.1 for pipelining and the leader's
// parallel disk write).

// progressState is how the leader currently sends to a peer.
type progressState uint8

const (
	// stateProbe: the leader does not know where the follower's log matches
	// its own. It sends one MsgApp at a time and waits for the answer (or a
	// heartbeat response) before the next.
	stateProbe progressState = iota
	// stateReplicate: the follower's log matched at match; the leader streams
	// entries optimistically, up to a window of messages and bytes.
	stateReplicate
	// stateSnapshot: the follower needs entries this leader has compacted
	// away. The runtime streams it the snapshot; nothing else is sent until
	// the follower acknowledges an index at or above pendingSnapshot, or
	// the runtime reports the transfer failed (snapshotFailed).
	stateSnapshot
)

// progress is the leader's view of one follower (Figure 2 nextIndex and
// matchIndex, plus flow control).
//
// Invariant: match < next.
// Invariant: in stateProbe the inflight window is empty.
type progress struct {
	match, next uint64
	state       progressState
	// probeSent: in stateProbe, a MsgApp is outstanding; no more until a
	// response or a heartbeat response arrives.
	probeSent bool
	inflight  inflights
	// recentActive: the peer answered since the last CheckQuorum round.
	recentActive bool
	// stallTicks counts heartbeat ticks in stateReplicate with entries in
	// flight and no acknowledgement; see tickHeartbeat.
	stallTicks int
	// pendingSnapshot, in stateSnapshot, is the log offset when the
	// snapshot was requested: an acknowledgement at or above it ends the
	// state.
	pendingSnapshot uint64
	// snapshotWait, when positive in stateSnapshot, counts down the
	// heartbeat ticks left for the follower to acknowledge a snapshot the
	// runtime has finished sending; at zero the leader probes again.
	snapshotWait int
}

func newProgress(next uint64, maxMsgs, maxBytes int) *progress {
	return &progress{next: next, inflight: newInflights(maxMsgs, maxBytes)}
}

func (pr *progress) isPaused() bool {
	switch pr.state {
	case stateProbe:
		return pr.probeSent
	case stateSnapshot:
		return true
	}
	return pr.inflight.full()
}

// becomeProbe falls back to probing from what the follower is known to have:
// the window is rebuilt from match, never from what we optimistically sent
// (pitfall 14).
func (pr *progress) becomeProbe() {
	pr.state = stateProbe
	pr.next = pr.match + 1
	pr.probeSent = false
	pr.inflight.reset()
	pr.stallTicks = 0
}

// becomeSnapshot stops sending entries while the runtime streams the
// snapshot that covers index.
func (pr *progress) becomeSnapshot(index uint64) {
	pr.becomeProbe()
	pr.state = stateSnapshot
	pr.pendingSnapshot = index
	pr.snapshotWait = 0
}

func (pr *progress) becomeReplicate() {
	pr.state = stateReplicate
	pr.next = pr.match + 1
	pr.probeSent = false
	pr.inflight.reset()
	pr.stallTicks = 0
}

// maybeUpdate records that the follower's log matches up to n. It returns
// false if that is old news.
func (pr *progress) maybeUpdate(n uint64) bool {
	if n <= pr.match {
		return false
	}
	pr.match = n
	pr.next = max(pr.next, n+1)
	pr.probeSent = false
	pr.stallTicks = 0
	pr.inflight.freeTo(n)
	return true
}

// maybeDecrTo handles a rejection of prevIndex rejected, moving next back to
// hint. It returns false for a stale rejection, which must change nothing.
func (pr *progress) maybeDecrTo(rejected, hint uint64) bool {
	if pr.state == stateReplicate {
		if rejected <= pr.match {
			return false // answers a message older than what we know matches
		}
		pr.becomeProbe()
		pr.next = max(pr.match+1, min(hint, rejected))
		return true
	}
	if pr.next-1 != rejected {
		return false // not the probe we are waiting for
	}
	pr.next = max(pr.match+1, min(hint, rejected))
	pr.probeSent = false
	return true
}

func (pr *progress) check() error {
	if pr.match >= pr.next {
		return fmt.Errorf("match %d >= next %d", pr.match, pr.next)
	}
	if pr.state != stateReplicate && pr.inflight.count > 0 {
		return fmt.Errorf("state %d with %d messages in flight", pr.state, pr.inflight.count)
	}
	return nil
}

// inflights is a ring of the MsgApps sent to one peer and not yet
// acknowledged: their last index and size. The window is bounded both in
// messages and in bytes (pitfall 17): a count alone lets large entries
// blow up memory.
type inflights struct {
	start, count int
	bytes        int
	maxBytes     int
	buf          []inflight
}

type inflight struct {
	index uint64
	bytes int
}

func newInflights(maxMsgs, maxBytes int) inflights {
	return inflights{buf: make([]inflight, maxMsgs), maxBytes: maxBytes}
}

func (in *inflights) full() bool { return in.count == len(in.buf) || in.bytes >= in.maxBytes }

func (in *inflights) add(index uint64, bytes int) {
	in.buf[(in.start+in.count)%len(in.buf)] = inflight{index, bytes}
	in.count++
	in.bytes += bytes
}

// freeTo releases every message whose last index is <= index.
func (in *inflights) freeTo(index uint64) {
	for in.count > 0 && in.buf[in.start].index <= index {
		in.bytes -= in.buf[in.start].bytes
		in.start = (in.start + 1) % len(in.buf)
		in.count--
	}
}

func (in *inflights) reset() { in.start, in.count, in.bytes = 0, 0, 0 }

// tickHeartbeat is the leader's timer: heartbeats, CheckQuorum, and the disk
// stall check.
func (c *core) tickHeartbeat() {
	c.heartbeatElapsed++
	c.electionElapsed++
	if c.diskStalled() {
		// A leader whose own disk has stalled cannot commit anything, yet its
		// heartbeats would keep every follower from failing over
		// (hashicorp/raft#503, pitfall 10). Heartbeats must not be decoupled
		// from the ability to make progress: step down.
		c.log.Warn("stepping down: persist has not completed for an election timeout", "term", c.term)
		c.becomeFollower(c.term, 0)
		return
	}
	if c.electionElapsed >= c.cfg.electionTicks {
		c.electionElapsed = 0
		if c.cfg.checkQuorum && c.cfg.bugs&bugNoCheckQuorum == 0 {
			if !c.quorumActive() {
				// Thesis §6.2: a leader that cannot reach a majority for an
				// election timeout steps down, so clients go elsewhere.
				c.log.Warn("stepping down: quorum not active", "term", c.term)
				c.becomeFollower(c.term, 0)
				return
			}
		}
	}
	for _, id := range c.peers {
		if pr := c.prs[id]; pr != nil && pr.state == stateSnapshot && pr.snapshotWait > 0 {
			if pr.snapshotWait--; pr.snapshotWait == 0 {
				// The transfer completed but the acknowledgement of the
				// install never came (lost, or the follower restarted).
				c.log.Info("no acknowledgement of a sent snapshot; probing", "peer", id)
				pr.becomeProbe()
			}
		}
		if pr := c.prs[id]; pr != nil && pr.state == stateReplicate && pr.inflight.count > 0 {
			pr.stallTicks++
			if pr.stallTicks >= max(2, c.cfg.electionTicks/2) {
				// Nothing acknowledged for a while: messages were lost or the
				// follower restarted. Probe from what it really has
				// (pitfall 14).
				c.log.Debug("replication stalled, probing", "peer", id, "match", pr.match)
				pr.becomeProbe()
			}
		}
	}
	if c.heartbeatElapsed >= c.cfg.heartbeatTicks {
		c.heartbeatElapsed = 0
		c.bcastHeartbeat()
	}
}

// quorumActive reports whether a majority (this node included) has been
// heard from since the last check, and clears the marks for the next round.
func (c *core) quorumActive() bool {
	active := 1
	for _, id := range c.peers {
		if pr := c.prs[id]; pr != nil {
			if pr.recentActive {
				active++
			}
			pr.recentActive = false
		}
	}
	return active >= c.quorum()
}

func (c *core) bcastHeartbeat() {
	for _, id := range c.peers {
		if pr := c.prs[id]; pr != nil {
			// Only commit what the follower is known to hold: its log matches
			// ours up to match, so it may safely commit that far.
			c.send(Message{Type: MsgHeartbeat, To: id, Commit: min(pr.match, c.raftLog.committed)})
		}
	}
}

// bcastAppend sends every peer what it is missing, as far as its window
// allows. With sendIfEmpty it also sends empty MsgApps, which carry a new
// commit index.
func (c *core) bcastAppend(sendIfEmpty bool) {
	for _, id := range c.peers {
		if id != c.id {
			c.sendAppend(id, sendIfEmpty)
		}
	}
}

// sendAppend sends peer to one MsgApp with the entries from its next index on,
// unless its window is closed. It returns whether it sent anything.
func (c *core) sendAppend(to NodeID, sendIfEmpty bool) bool {
	pr := c.prs[to]
	if pr.isPaused() {
		return false
	}
	prevIndex := pr.next - 1
	prevTerm, ok := c.raftLog.term(prevIndex)
	if !ok {
		// next <= lastIndex+1 always, so the entry was compacted away: the
		// follower can only catch up from a snapshot (paper §7).
		c.sendSnapshot(to, pr)
		return false
	}
	ents := c.raftLog.slice(pr.next, c.raftLog.lastIndex()+1, c.cfg.maxMsgBytes)
	if len(ents) == 0 && !sendIfEmpty {
		return false
	}
	m := Message{Type: MsgApp, To: to, Index: prevIndex, LogTerm: prevTerm, Entries: ents, Commit: c.raftLog.committed}
	c.send(m)
	switch pr.state {
	case stateReplicate:
		if n := len(ents); n > 0 {
			last := ents[n-1].Index
			pr.next = last + 1
			pr.inflight.add(last, m.Size())
		}
	case stateProbe:
		pr.probeSent = true
	}
	return true
}

// stepLeader handles messages in the leader role.
func (c *core) stepLeader(m Message) error {
	pr := c.prs[m.From]
	if pr == nil {
		return nil
	}
	switch m.Type {
	case MsgAppResp:
		if m.Index > c.raftLog.lastIndex() {
			// Gateway check: a follower cannot hold what we never sent.
			c.log.Error("drop append response beyond our log", "from", m.From, "index", m.Index, "last_index", c.raftLog.lastIndex())
			return fmt.Errorf("raft: MsgAppResp from %d for index %d beyond last index %d", m.From, m.Index, c.raftLog.lastIndex())
		}
		pr.recentActive = true
		c.handleAppendResponse(m, pr)
	case MsgHeartbeatResp:
		pr.recentActive = true
		pr.probeSent = false
		if pr.match < c.raftLog.lastIndex() {
			c.sendAppend(m.From, false)
		}
	case MsgSnapResp:
		// The runtime's sender paces the chunks; to the core it only shows
		// that the follower is alive.
		pr.recentActive = true
	default:
		c.log.Debug("leader ignores message", "type", m.Type, "from", m.From)
	}
	return nil
}

func (c *core) handleAppendResponse(m Message, pr *progress) {
	if m.Reject {
		// Fast backtracking (§5.3): jump over the follower's whole
		// conflicting term. If we hold entries of that term, the logs may
		// agree up to our last one of it; otherwise skip to where the
		// follower's run of that term starts.
		hint := m.ConflictIndex
		if m.ConflictTerm != 0 {
			if i := c.raftLog.lastIndexOfTerm(m.ConflictTerm, m.Index); i != 0 {
				hint = i + 1
			}
		}
		if pr.maybeDecrTo(m.Index, hint) {
			c.log.Debug("append rejected, backing off", "peer", m.From, "rejected", m.Index, "next", pr.next)
			c.sendAppend(m.From, false)
		}
		return
	}
	if !pr.maybeUpdate(m.Index) {
		return
	}
	switch {
	case pr.state == stateProbe:
		pr.becomeReplicate()
	case pr.state == stateSnapshot && pr.match >= pr.pendingSnapshot:
		// The follower installed the snapshot (or caught up otherwise):
		// its log now matches ours at match.
		c.log.Info("follower caught up from snapshot", "peer", m.From, "match", pr.match)
		pr.becomeReplicate()
	}
	if c.maybeCommit() {
		c.bcastAppend(true)
	}
	// Refill the window.
	for c.sendAppend(m.From, false) {
	}
}

// maybeCommit advances the commit index to the highest index stored on a
// majority, counting this leader only up to its durable index. It returns
// whether the commit index moved.
//
// Only an entry of the current term may be committed by counting replicas
// (paper §5.4.2, Figure 8): an entry of an earlier term can be on a majority
// and still be overwritten by a later leader. Earlier entries commit
// implicitly with the first current-term entry above them (pitfall 1).
func (c *core) maybeCommit() bool {
	ms := c.matchBuf[:0]
	for _, id := range c.peers {
		if id == c.id {
			ms = append(ms, c.raftLog.durable)
		} else {
			ms = append(ms, c.prs[id].match)
		}
	}
	// Sort descending (insertion sort: clusters are small, no allocation).
	for i := 1; i < len(ms); i++ {
		for j := i; j > 0 && ms[j] > ms[j-1]; j-- {
			ms[j], ms[j-1] = ms[j-1], ms[j]
		}
	}
	idx := ms[c.quorum()-1]
	if idx <= c.raftLog.committed {
		return false
	}
	if t, _ := c.raftLog.term(idx); t != c.term && c.cfg.bugs&bugCommitPreviousTerm == 0 {
		return false
	}
	old := c.raftLog.committed
	c.raftLog.commitTo(idx)
	// Release flow-control budget for what just committed: only entries of
	// this term were counted (the budget starts at zero on election).
	for i := old + 1; i <= idx; i++ {
		if e := c.raftLog.at(i); e.Term == c.term && e.Type == EntryNormal {
			c.uncommittedBytes -= entrySize(e)
		}
	}
	c.uncommittedBytes = max(c.uncommittedBytes, 0)
	return true
}

// handleAppend is the follower's side of AppendEntries (Figure 2, receiver
// implementation).
func (c *core) handleAppend(m Message) error {
	if err := validateAppend(&m); err != nil {
		c.log.Error("reject malformed append", "from", m.From, "err", err)
		return err
	}
	if m.Index < c.raftLog.committed {
		// Everything up to our commit index is committed, hence matches the
		// leader: answer with what we know, without touching the log.
		c.send(Message{Type: MsgAppResp, To: m.From, Index: c.raftLog.committed})
		return nil
	}
	lastNew, ok, err := c.raftLog.maybeAppend(m.Index, m.LogTerm, m.Entries)
	if err != nil {
		c.log.Error("reject malformed append", "from", m.From, "err", err)
		return err
	}
	if !ok {
		ci, ct := c.raftLog.conflictHint(m.Index)
		c.log.Debug("reject append", "from", m.From, "index", m.Index, "log_term", m.LogTerm,
			"conflict_index", ci, "conflict_term", ct)
		c.send(Message{Type: MsgAppResp, To: m.From, Index: m.Index, Reject: true, ConflictIndex: ci, ConflictTerm: ct})
		return nil
	}
	// Figure 2 step 5: commitIndex = min(leaderCommit, index of last new
	// entry); entries past lastNew may not match the leader's.
	c.raftLog.commitTo(min(m.Commit, lastNew))
	c.send(Message{Type: MsgAppResp, To: m.From, Index: lastNew})
	return nil
}

// validateAppend is the gateway check on a MsgApp from the network: past it
// the log code assumes its entries are well formed. Entries must follow
// prevIndex contiguously, with terms that never decrease from prevTerm and
// never exceed the message's term (a leader only sends entries of its term
// or earlier).
func validateAppend(m *Message) error {
	if m.Index == 0 && m.LogTerm != 0 {
		return fmt.Errorf("raft: malformed MsgApp: prev index 0 with prev term %d", m.LogTerm)
	}
	prevTerm := m.LogTerm
	for i := range m.Entries {
		e := &m.Entries[i]
		switch {
		case e.Index != m.Index+1+uint64(i):
			return fmt.Errorf("raft: malformed MsgApp: entry %d has index %d after prev %d", i, e.Index, m.Index)
		case e.Term < prevTerm:
			return fmt.Errorf("raft: malformed MsgApp: entry %d has term %d after term %d", e.Index, e.Term, prevTerm)
		case e.Term > m.Term:
			return fmt.Errorf("raft: malformed MsgApp: entry %d has term %d beyond the message's term %d", e.Index, e.Term, m.Term)
		}
		prevTerm = e.Term
	}
	return nil
}

func (c *core) handleHeartbeat(m Message) {
	// The leader sent min(our match, its commit), so our log holds and
	// matches every entry up to m.Commit. Clamp anyway: a peer's word is
	// input, not an invariant.
	c.raftLog.commitTo(min(m.Commit, c.raftLog.lastIndex()))
	c.send(Message{Type: MsgHeartbeatResp, To: m.From})
}
