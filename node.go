package raft

import (
	"fmt"
	"time"
)

// The runtime: three goroutines around the core.
//
//   - run: the only goroutine that touches the core. It feeds it ticks,
//     messages, proposals and durability reports, sends the messages that may
//     go out at once, and hands persist batches and committed entries to the
//     other two loops. It never blocks on the disk, the network or the
//     application: every hand-off is a select case armed only when there is
//     something to hand off (the nil-channel idiom).
//   - persistLoop: writes one batch at a time and syncs it, then sends the
//     messages that waited for it and reports it durable. While it writes,
//     the core accumulates the next batch, so concurrent work is
//     group-committed with one Sync. The run loop cuts that batch only once
//     the persist loop is idle again, never earlier: a batch cut while the
//     previous Sync was running would hold only what arrived before the cut,
//     and everything after it would wait a whole extra Sync.
//   - applyLoop: delivers committed commands on ApplyCh, or in batches on
//     ApplyBatchCh, the sole sender on and closer of that channel.
//   - receiveLoop, and a sender per follower being sent a snapshot: see
//     snapshot_stream.go.
//
// Each exits when stopc closes; Stop waits for all of them.

// persistResult reports a persist batch done.
type persistResult struct {
	batch *persistBatch
	err   error
}

// applyBatch is committed entries for the apply loop, and the ProposeWait
// calls to answer once they are delivered; or a snapshot to deliver.
type applyBatch struct {
	ents    []Entry
	waiters []*proposal
	restore *snapInstall
}

const (
	maxRecvBatch  = 256     // messages stepped per run-loop iteration
	maxApplyBytes = 4 << 20 // entry bytes per apply batch
)

func (n *Node) run(recvc <-chan Message) {
	defer n.wg.Done()
	c := n.core
	ticker := time.NewTicker(n.tickInterval())
	defer ticker.Stop()
	var (
		persistBusy  bool // a batch is with the persist loop
		pendingApply applyBatch
		haveApply    bool
		failed       error
	)
	defer func() {
		// Snapshot readers not handed to the application: close them.
		if n.restoreReader != nil {
			n.restoreReader.Close()
		}
		if haveApply && pendingApply.restore != nil {
			pendingApply.restore.r.Close()
		}
		// ProposeWait calls this loop holds (see proposals.go).
		for _, p := range n.waiters {
			p.answerStopped()
		}
		answerStopped(n.restoreWaiters)
		if haveApply {
			answerStopped(pendingApply.waiters)
		}
	}()
	for {
		if failed == nil {
			for _, m := range c.takeMessages() {
				n.cfg.Transport.Send(m)
			}
			n.handleSnapshotOutputs()
			if !persistBusy && c.hasPersistWork() {
				// Never blocks: persistc has room for one batch, and the
				// persist loop took the last one before reporting it.
				n.persistc <- c.readyToPersist()
				persistBusy = true
			}
			if from := c.takeReplaced(); from != 0 && len(n.waiters) > 0 {
				n.dropReplacedWaiters(from)
			}
			if !haveApply && c.hasApply() {
				pendingApply = n.nextApplyBatch()
				haveApply = true
			}
			n.publish()
		}

		var (
			applyq chan applyBatch
			propc  = n.props.readyc
		)
		if haveApply {
			applyq = n.applyq
		}
		if failed == nil && c.role == RoleLeader && !n.canAcceptProposals() {
			propc = nil // push back on proposals, never on the protocol
		}

		select {
		case <-ticker.C:
			if failed == nil {
				c.tick()
			}
		case m := <-recvc:
			if failed == nil {
				n.stepMessage(m)
				for i := 0; i < maxRecvBatch; i++ {
					select {
					case m = <-recvc:
						n.stepMessage(m)
						continue
					default:
					}
					break
				}
			}
		case <-propc:
			batch := n.props.take(n.cfg.maxMsgBytes())
			if len(batch) == 0 {
				continue // Stop has answered the queue (see Node.Stop)
			}
			if failed != nil {
				for _, p := range batch {
					p.done <- proposalResult{err: failed}
				}
				clear(batch)
				continue
			}
			n.handleProposals(batch)
		case r := <-n.durablec:
			persistBusy = false
			if r.err != nil {
				failed = fmt.Errorf("%w: %w", ErrPersist, r.err)
				n.fail(failed)
				continue
			}
			c.persisted(r.batch.num)
			c.recycle(r.batch)
		case applyq <- pendingApply:
			pendingApply, haveApply = applyBatch{}, false
		case r := <-n.snapSentc:
			if n.senders[r.s.to] == r.s {
				delete(n.senders, r.s.to)
				if failed == nil && r.ok {
					c.snapshotDone(r.s.to)
				} else if failed == nil {
					c.snapshotFailed(r.s.to)
				}
			}
		case in := <-n.installc:
			if failed != nil {
				in.r.Close()
				continue
			}
			n.installSnapshot(in)
		case req := <-n.snapc:
			if failed != nil {
				req.reply <- snapReply{err: failed}
				continue
			}
			n.handleSnapshotRequest(req)
		case <-n.stopc:
			return
		}
	}
}

// handleSnapshotOutputs carries out what the core asked of snapshot
// transfers: start senders, stop those whose follower no longer needs one,
// and hand accepted chunks to the receiver.
func (n *Node) handleSnapshotOutputs() {
	c := n.core
	for _, s := range c.takeSnapshotSends() {
		if old := n.senders[s.to]; old != nil {
			close(old.stopc)
		}
		n.senders[s.to] = n.startSnapshotSender(s.to, c.term)
	}
	for id, s := range n.senders {
		if c.role != RoleLeader || c.term != s.term || c.prs[id] == nil || c.prs[id].state != stateSnapshot {
			close(s.stopc)
			delete(n.senders, id)
		}
	}
	for _, m := range c.takeSnapshotChunks() {
		select {
		case n.chunkc <- m:
		default:
			// The receiver is behind (its disk is slow): drop the chunk,
			// as a network would; the sender resends it.
		}
	}
	if warn := uint64(100 * n.cfg.snapshotInterval()); c.raftLog.lastIndex()-c.raftLog.offset > max(warn, n.logWarnAt) {
		n.logWarnAt = 2 * (c.raftLog.lastIndex() - c.raftLog.offset)
		n.cfg.logger().Warn("the log keeps growing: call Node.Snapshot to compact it (see ApplyMsg.SnapshotDue)",
			"entries_since_snapshot", c.raftLog.lastIndex()-c.raftLog.offset, "snapshot_interval", n.cfg.snapshotInterval())
	}
}

// installSnapshot offers a snapshot the receiver committed to the core. The
// ProposeWait calls for entries the snapshot covers end first: if this log
// matched the snapshot at its last entry, it held the same entries as the
// leader, so those whose entry is still here with their term were
// committed; otherwise their fate cannot be known here.
func (n *Node) installSnapshot(in snapInstall) {
	c := n.core
	if in.meta.Index <= c.raftLog.committed || c.role == RoleLeader {
		in.r.Close()
		c.installSnapshot(in.meta, in.from) // logs and ignores it
		return
	}
	matched := c.raftLog.matchTerm(in.meta.Index, in.meta.Term)
	for idx, p := range n.waiters {
		if idx > in.meta.Index {
			continue
		}
		delete(n.waiters, idx)
		if t, ok := c.raftLog.term(idx); matched && ok && t == p.term {
			// Committed, and in the snapshot: answered once the
			// application has received the snapshot (see applyLoop).
			n.restoreWaiters = append(n.restoreWaiters, p)
		} else {
			p.done <- proposalResult{index: p.index, term: p.term, err: ErrProposalUnknown, final: true}
		}
	}
	if !c.installSnapshot(in.meta, in.from) {
		in.r.Close()
		return
	}
	if n.restoreReader != nil {
		n.restoreReader.Close() // an older snapshot not yet delivered: this one replaces it
	}
	n.restoreReader = in.r
	n.setSnapshot(in.meta)
}

// setSnapshot records meta as the newest snapshot, for Status and
// SnapshotDue, unless a newer one is known.
func (n *Node) setSnapshot(meta SnapshotMeta) {
	if meta.Index <= n.snapIndex.Load() {
		return
	}
	n.snapIndex.Store(meta.Index)
	n.mu.Lock()
	n.st.Snapshot = meta
	n.mu.Unlock()
}

func (n *Node) stepMessage(m Message) {
	// Errors are malformed messages from a peer; the core has logged them
	// and ignores the message.
	_ = n.core.step(m)
	if m.Type == MsgSnapResp {
		// The core has settled the term; the sender paces the chunks.
		if s := n.senders[m.From]; s != nil && s.term == m.Term {
			select {
			case s.respc <- m:
			default: // the sender is behind; a later answer or a timeout will do
			}
		}
	}
}

// canAcceptProposals reports whether the leader is within its flow-control
// limits: uncommitted bytes, and the backlog of entries the application has
// not yet received. The backlog counts every entry past the applied index,
// committed or not: counting only committed ones let proposals run ahead
// while commits lagged, and the backlog then exceeded its bound.
func (n *Node) canAcceptProposals() bool {
	c := n.core
	if !c.canAcceptBytes(0) {
		return false
	}
	last := c.raftLog.lastIndex()
	return last-min(n.applied.Load(), last) <= uint64(n.cfg.maxApplyBacklog())
}

// handleProposals appends a batch of proposals taken from the queue as one
// batch: one append, one persist, one MsgApp per follower.
func (n *Node) handleProposals(batch []*proposal) {
	c := n.core
	if c.role != RoleLeader {
		for _, p := range batch {
			p.done <- proposalResult{err: &NotLeaderError{Leader: c.lead}}
		}
		clear(batch)
		return
	}
	// The core copies the entries into its log, so one scratch slice serves
	// every batch: no allocation per proposal or per batch.
	ents := n.entBuf[:0]
	for _, p := range batch {
		ents = append(ents, Entry{Type: EntryNormal, Data: p.data})
	}
	firstIndex, term, err := c.propose(ents)
	clear(ents) // drop references to the commands
	n.entBuf = ents
	for i, p := range batch {
		if err != nil {
			if err == errNotLeaderCore {
				p.done <- proposalResult{err: &NotLeaderError{Leader: c.lead}}
			} else {
				p.done <- proposalResult{err: err}
			}
			continue
		}
		p.index, p.term = firstIndex+uint64(i), term
		if p.wait {
			if old, ok := n.waiters[p.index]; ok {
				// An earlier term's proposal at this index has been
				// replaced by this one: it can never be applied.
				old.done <- proposalResult{index: old.index, term: old.term, err: ErrProposalDropped, final: true}
			}
			n.waiters[p.index] = p
			// ProposeWait hears only the final outcome: telling it the
			// index now would wake its goroutine for nothing.
			continue
		}
		p.done <- proposalResult{index: p.index, term: term}
	}
	clear(batch)
}

// nextApplyBatch takes the next committed entries from the core, with the
// ProposeWait calls they answer, or the snapshot that must come first.
func (n *Node) nextApplyBatch() applyBatch {
	if meta, ok := n.core.takeRestored(); ok {
		in := &snapInstall{meta: meta, r: n.restoreReader}
		b := applyBatch{restore: in, waiters: n.restoreWaiters}
		n.restoreReader, n.restoreWaiters = nil, nil
		return b
	}
	b := applyBatch{ents: n.core.nextApply(maxApplyBytes)}
	if len(n.waiters) == 0 {
		return b
	}
	for i := range b.ents {
		e := &b.ents[i]
		p, ok := n.waiters[e.Index]
		if !ok {
			continue
		}
		delete(n.waiters, e.Index)
		if p.term != e.Term {
			// A later leader put another entry at this index: the command
			// will never be applied here.
			p.done <- proposalResult{index: p.index, term: p.term, err: ErrProposalDropped, final: true}
			continue
		}
		b.waiters = append(b.waiters, p)
	}
	return b
}

// dropReplacedWaiters ends the ProposeWait calls whose entries, at from or
// above, were replaced by a new leader's: those commands will never be
// applied at their index, and no later apply may come to release them.
func (n *Node) dropReplacedWaiters(from uint64) {
	for idx, p := range n.waiters {
		if idx < from {
			continue
		}
		if t, ok := n.core.raftLog.term(idx); ok && t == p.term {
			continue
		}
		delete(n.waiters, idx)
		p.done <- proposalResult{index: p.index, term: p.term, err: ErrProposalDropped, final: true}
	}
}

// fail stops the node from taking part after a persist error: it no longer
// steps messages or ticks, so it cannot vote or acknowledge anything it
// could not persist. Proposals fail with err until Stop.
func (n *Node) fail(err error) {
	n.cfg.logger().Error("persist failed; node no longer takes part", "err", err)
	n.mu.Lock()
	n.st.Err = err
	// It leads nothing any more: say so, and tell observers (pitfall 19).
	n.st.Role, n.st.Leader, n.st.Progress = RoleFollower, 0, nil
	close(n.changec)
	n.changec = make(chan struct{})
	n.mu.Unlock()
	for idx, p := range n.waiters {
		p.done <- proposalResult{index: p.index, term: p.term, err: err, final: true}
		delete(n.waiters, idx)
	}
	// Those waiting for a snapshot too: a failed node delivers nothing
	// more, so it would never come, and they would wait until Stop.
	for _, p := range n.restoreWaiters {
		p.done <- proposalResult{index: p.index, term: p.term, err: err, final: true}
	}
	n.restoreWaiters = nil
}

// publish copies the core's state for State and Status, and signals
// LeaderChanged observers on a change of role, term or leader.
func (n *Node) publish() {
	cs := n.core.status()
	n.mu.Lock()
	defer n.mu.Unlock()
	if cs.role != n.st.Role || cs.term != n.st.Term || cs.lead != n.st.Leader {
		close(n.changec)
		n.changec = make(chan struct{})
	}
	n.st.ID = n.id
	n.st.Role, n.st.Term, n.st.Leader = cs.role, cs.term, cs.lead
	n.st.Commit, n.st.LastIndex = cs.commit, cs.last
	n.st.FirstIndex = cs.snapshot.Index + 1
	if cs.role != RoleLeader {
		n.st.Progress = nil
		return
	}
	if n.st.Progress == nil {
		n.st.Progress = make(map[NodeID]PeerProgress, len(n.core.prs))
	}
	for id, pr := range n.core.prs {
		n.st.Progress[id] = PeerProgress{Match: pr.match, Next: pr.next, Probing: pr.state == stateProbe}
	}
}

// persistLoop carries out persist batches in order (see core.readyToPersist).
func (n *Node) persistLoop() {
	defer n.wg.Done()
	p := n.cfg.Persister
	for {
		var b *persistBatch
		select {
		case b = <-n.persistc:
		case <-n.stopc:
			return
		}
		err := n.persist(p, b)
		if err == nil {
			for _, m := range b.afterDurable {
				n.cfg.Transport.Send(m)
			}
		}
		select {
		case n.durablec <- persistResult{batch: b, err: err}:
		case <-n.stopc:
			return
		}
		if err != nil {
			return
		}
	}
}

func (n *Node) persist(p Persister, b *persistBatch) error {
	if b.truncateFrom != 0 {
		if err := p.TruncateFrom(b.truncateFrom); err != nil {
			return fmt.Errorf("truncate from %d: %w", b.truncateFrom, err)
		}
	}
	if b.compactTo != 0 {
		if err := p.Compact(b.compactTo); err != nil {
			return fmt.Errorf("compact to %d: %w", b.compactTo, err)
		}
	}
	if len(b.entries) > 0 {
		if err := p.Append(b.entries); err != nil {
			return fmt.Errorf("append %d..%d: %w", b.entries[0].Index, b.entries[len(b.entries)-1].Index, err)
		}
	}
	if b.saveHardState {
		if err := p.SetHardState(b.hardState); err != nil {
			return fmt.Errorf("save hard state: %w", err)
		}
	}
	if b.mustSync {
		if err := p.Sync(); err != nil {
			return fmt.Errorf("sync: %w", err)
		}
	}
	return nil
}

// deliver sends v on c, ApplyCh or ApplyBatchCh; false if the node stopped
// first. It tries a plain send first: a select that includes stopc locks
// that channel too, once per send, and stopc is shared by every loop of the
// node.
func deliver[T any](n *Node, c chan<- T, v T) bool {
	select {
	case c <- v:
		return true
	default:
	}
	select {
	case c <- v:
		return true
	case <-n.stopc:
		return false
	}
}

// applyArrays are the arrays the apply loop builds its messages in. With
// ApplyBatches two take turns: the receiver may hold the batch sent last,
// so the next is built in the other, which the receiver had finished with
// when it came back for the last. An array grown past maxKeptBatch
// messages (a burst of tiny commands) is not kept.
type applyArrays struct {
	a    [2][]ApplyMsg
	last int // the array of the batch sent last
}

const maxKeptBatch = 4096

// next returns an empty slice of the free array.
func (aa *applyArrays) next() []ApplyMsg { return aa.a[1-aa.last][:0] }

// reuse takes back ms, from next, whose messages were copied out (ApplyCh).
func (aa *applyArrays) reuse(ms []ApplyMsg) {
	clear(ms)
	aa.a[1-aa.last] = keepable(ms)
}

// sent records that the receiver now holds ms, from next: the array of the
// batch before is free, and its references to commands are dropped.
func (aa *applyArrays) sent(ms []ApplyMsg) {
	clear(aa.a[aa.last])
	aa.last = 1 - aa.last
	aa.a[aa.last] = keepable(ms)
}

func keepable(ms []ApplyMsg) []ApplyMsg {
	if cap(ms) > maxKeptBatch {
		return nil
	}
	return ms
}

// applyLoop delivers committed commands on ApplyCh, or in batches on
// ApplyBatchCh, and answers the ProposeWait calls of each batch once the
// application has it all.
func (n *Node) applyLoop() {
	defer n.wg.Done()
	if n.cfg.ApplyBatches {
		defer close(n.batchc)
	} else {
		defer close(n.applyc)
	}
	interval := uint64(n.cfg.snapshotInterval())
	var lastDue uint64 // the index SnapshotDue was last set on
	var arrays applyArrays
	for {
		var b applyBatch
		select {
		case b = <-n.applyq:
		case <-n.stopc:
			return
		}
		msgs := arrays.next()
		var upTo uint64 // the log index the batch brings the application to
		if in := b.restore; in != nil {
			msgs = append(msgs, ApplyMsg{SnapshotValid: true, Snapshot: in.r, SnapshotIndex: in.meta.Index, SnapshotTerm: in.meta.Term})
			upTo = in.meta.Index
		}
		for i := range b.ents {
			e := &b.ents[i]
			upTo = e.Index
			if e.Type != EntryNormal {
				continue
			}
			due := false
			// Due an interval past the snapshot, and again every interval
			// while none is taken (a Snapshot call may fail).
			if e.Index >= max(n.snapIndex.Load(), lastDue)+interval {
				due, lastDue = true, e.Index
			}
			msgs = append(msgs, ApplyMsg{CommandValid: true, Command: e.Data, CommandIndex: e.Index, CommandTerm: e.Term, SnapshotDue: due})
		}
		if got := n.deliverAll(&arrays, msgs); got < len(msgs) {
			// Stopped: what the application received was applied; the
			// rest is unknown. A snapshot's cut is 0: no waiter of it
			// was applied.
			if in := b.restore; in != nil {
				in.r.Close()
			}
			cut := msgs[got].CommandIndex
			for _, p := range b.waiters {
				if p.index < cut {
					p.done <- proposalResult{index: p.index, term: p.term, final: true}
				} else {
					p.answerStopped()
				}
			}
			return
		}
		if upTo != 0 {
			n.applied.Store(upTo)
		}
		for _, p := range b.waiters {
			p.done <- proposalResult{index: p.index, term: p.term, final: true}
		}
	}
}

// deliverAll hands msgs, built in arrays.next(), to the application, and
// returns how many it received before the node stopped: all or none of a
// batch on ApplyBatchCh, each in turn on ApplyCh.
func (n *Node) deliverAll(arrays *applyArrays, msgs []ApplyMsg) int {
	if n.cfg.ApplyBatches {
		if len(msgs) == 0 {
			return 0
		}
		if !deliver(n, n.batchc, msgs) {
			return 0
		}
		arrays.sent(msgs)
		return len(msgs)
	}
	for i, m := range msgs {
		if !deliver(n, n.applyc, m) {
			return i
		}
		if m.CommandValid {
			n.applied.Store(m.CommandIndex)
		}
	}
	arrays.reuse(msgs)
	return len(msgs)
}
