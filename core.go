package raft

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
)

// The protocol core.
//
// core is the Raft state machine of one node: Figure 2 of the paper plus
// PreVote and CheckQuorum from Ongaro's thesis. It is deterministic: it owns
// no goroutines, reads no clock, draws randomness only from its own seeded
// generator and iterates peers in sorted order, never over a map. The
// runtime (node.go) or a simulator drives it with inputs and carries out
// the outputs:
//
//	inputs:  tick()                 one unit of logical time has passed
//	         step(m)                a message arrived
//	         propose(ents)          the application proposes entries (leader only)
//	         persisted(num)         the persist batch numbered num is durable
//	         compact(index)         a committed snapshot covers index
//	         installSnapshot(m, f)  the leader f's snapshot m is committed locally
//	         snapshotFailed(to)     streaming a snapshot to a follower failed
//	         snapshotDone(to)       a follower has stored the whole snapshot
//	outputs: takeMessages()         messages that may be sent now
//	         readyToPersist()       a persist batch: truncate, append, hard state,
//	                                and the messages that may go out only once
//	                                it is durable
//	         nextApply(maxBytes)    committed entries to deliver, in index order
//	         takeSnapshotSends()    snapshots to stream to followers
//	         takeSnapshotChunks()   snapshot chunks received, to store
//	         takeRestored()         a snapshot to deliver before the next entries
//
// Invariants, each checked by checkInvariants and kept by the code named:
//  1. Election Safety: at most one leader per term. A node votes at most once
//     per term (handleVote) and its vote is durable before the grant is sent
//     (send routes grants after the batch that records the vote).
//  2. Leader Append-Only: a leader never truncates its own log (only
//     stepFollower's handleAppend calls maybeAppend).
//  3. Log Matching: maybeAppend appends only after prevIndex/prevTerm matched.
//  4. Leader Completeness: votes go only to up-to-date logs (isUpToDate), and
//     commit advances by counting only entries of the current term
//     (maybeCommit, Figure 8).
//  5. State Machine Safety: entries are applied in index order up to the
//     commit index, and a committed entry is never truncated (maybeAppend).
//  6. applied <= committed <= lastIndex (raftLog).
//  7. Nothing is acknowledged before it is durable: append and vote
//     responses leave only after the batch that covers them is durable, and
//     a leader counts itself in a majority only for its durable prefix.
//  8. Durability is acknowledged by (index, term), never by index alone.
//  9. Term and vote never regress: they change only through becomeFollower,
//     becomeCandidate and handleVote, each raising the term or setting a vote
//     that was empty.
type core struct {
	id    NodeID
	peers []NodeID // every voter, this node included, sorted
	cfg   coreConfig
	rng   *rand.Rand
	log   *slog.Logger

	role Role
	term uint64
	vote NodeID
	lead NodeID

	raftLog *raftLog

	// Election state.
	electionElapsed           int // ticks since the last reset (leader contact, vote granted, election start)
	heartbeatElapsed          int // leader only
	randomizedElectionTimeout int // in [electionTicks, 2*electionTicks)
	votes                     map[NodeID]bool

	// Leader state: one progress per peer other than this node.
	prs map[NodeID]*progress
	// uncommittedBytes is the size of the entries this leader appended in its
	// term that are not yet committed; propose refuses past maxUncommittedBytes.
	uncommittedBytes int

	// Output buffers.
	msgs         []Message // may be sent now
	afterDurable []Message // may be sent once everything handed to the Persister so far is durable
	// Snapshot outputs (see snapshot_core.go).
	snapSends  []snapshotSend // leader: snapshots the runtime must stream to followers
	snapChunks []Message      // follower: MsgSnap chunks the runtime must store
	restored   *SnapshotMeta  // a snapshot from the leader replaced the log: deliver it before any entry after it

	// Persistence tracking.
	persistedHS HardState // last hard state handed to the Persister
	durableTerm uint64    // term of the last hard state known durable
	nextNum     uint64    // number of the next persist batch
	pending     []pendingBatch
	freeBatches []*persistBatch // recycled batches, see recycle
	ticks       uint64          // logical clock: ticks since start

	matchBuf []uint64 // scratch space for maybeCommit
}

// coreConfig is Config resolved to the core's units: ticks and bytes.
type coreConfig struct {
	electionTicks       int
	heartbeatTicks      int
	preVote             bool
	checkQuorum         bool
	maxMsgBytes         int // entries per MsgApp
	maxInflightMsgs     int
	maxInflightBytes    int
	maxUncommittedBytes int
	seed                uint64
	logChunkBits        uint        // 0 for logChunkBits; the simulator's is small
	bugs                plantedBugs // zero except in the simulator's bug-planting tests
}

// plantedBugs are deliberate protocol bugs, one bit per simcore.Bug (same
// values). Only the simulator's tests set them, through internal/simcore, to
// prove that the simulator catches each; Config has no way to reach them.
type plantedBugs uint32

const (
	bugCommitPreviousTerm plantedBugs = 1 << iota
	bugVoteBeforePersist
	bugTruncateOnStaleAppend
	bugVoteWithoutLogCheck
	bugNoCheckQuorum
	bugInstallStaleSnapshot // see simCore.InstallSnapshot
)

// pendingBatch records a persist batch handed to the runtime and not yet
// reported durable.
type pendingBatch struct {
	num       uint64
	lastIndex uint64 // log position the batch makes durable
	lastTerm  uint64
	hs        HardState
	issued    uint64 // tick at which the batch was handed out
}

// persistBatch is what the runtime must write, in order: truncate the log
// from TruncateFrom (if nonzero), compact it to CompactTo (if nonzero),
// append Entries, save HardState (if
// SaveHardState), then Sync if MustSync; once that has returned, send
// AfterDurable and report persisted(Num).
type persistBatch struct {
	num           uint64
	truncateFrom  uint64
	compactTo     uint64 // Persister.Compact(compactTo) after the truncation, if nonzero
	entries       []Entry
	saveHardState bool
	hardState     HardState
	mustSync      bool
	afterDurable  []Message
}

var errNotLeaderCore = errors.New("raft: core: not leader")

func newCore(id NodeID, peers []NodeID, cfg coreConfig, st PersistentState, logger *slog.Logger) (*core, error) {
	rl, err := newRaftLog(st.Snapshot, st.Entries, st.HardState.Commit, cfg.logChunkBits)
	if err != nil {
		return nil, err
	}
	rl.bugTruncateOnStaleAppend = cfg.bugs&bugTruncateOnStaleAppend != 0
	if st.HardState.Vote != 0 && !slices.Contains(peers, st.HardState.Vote) {
		return nil, fmt.Errorf("raft: %w: persisted vote for %d, not a peer", ErrCorrupt, st.HardState.Vote)
	}
	term, vote := st.HardState.Term, st.HardState.Vote
	if lt := rl.lastTerm(); lt > term {
		// A crash kept the entries of a persist batch but not the hard state
		// written after them (a Persister keeps a prefix of unsynced writes;
		// batches write entries first so that a surviving commit index never
		// covers entries that did not survive). The node had adopted the
		// entries' term in memory. Nothing that depended on that term left
		// it: responses and votes wait for the batch to be durable, and a
		// leader sends nothing before its term is durable. So the node may
		// adopt the term again, with no vote (found by the simulator).
		logger.Warn("log term above the persisted term: a crash lost the hard state written after entries",
			"persisted_term", term, "last_log_term", lt)
		term, vote = lt, 0
	}
	ps := slices.Clone(peers)
	slices.Sort(ps)
	c := &core{
		id:          id,
		peers:       ps,
		cfg:         cfg,
		rng:         rand.New(rand.NewPCG(cfg.seed, uint64(id))),
		log:         logger,
		term:        term,
		vote:        vote,
		raftLog:     rl,
		persistedHS: st.HardState,
		durableTerm: st.HardState.Term,
		matchBuf:    make([]uint64, 0, len(ps)),
	}
	c.persistedHS.Commit = rl.committed
	c.becomeFollower(c.term, 0)
	return c, nil
}

func (c *core) hardState() HardState {
	return HardState{Term: c.term, Vote: c.vote, Commit: c.raftLog.committed}
}

func (c *core) quorum() int { return len(c.peers)/2 + 1 }

// tick advances logical time by one unit: the role's timer.
func (c *core) tick() {
	c.ticks++
	if c.role == RoleLeader {
		c.tickHeartbeat()
	} else {
		c.tickElection()
	}
}

// step processes one message from a peer. It first settles the term, the
// same way for every role (Figure 2, "Rules for Servers: All Servers"), then
// hands the message to the role's step function. Messages from unknown nodes
// and with stale terms are dropped; an error reports a malformed message.
func (c *core) step(m Message) error {
	if m.To != c.id || m.From == c.id || !slices.Contains(c.peers, m.From) {
		c.log.Debug("drop message from unknown node", "from", m.From, "to", m.To, "type", m.Type)
		return nil
	}
	switch {
	case m.Term > c.term:
		if (m.Type == MsgVote || m.Type == MsgPreVote) && c.inLease() {
			// Thesis §4.2.3: a node that heard from a live leader within the
			// minimum election timeout ignores vote requests, so a node that
			// was partitioned away (or removed) cannot depose a healthy
			// leader by inflating its term (pitfall 12).
			c.log.Debug("ignore vote request inside leader lease", "from", m.From, "term", m.Term, "type", m.Type)
			return nil
		}
		switch {
		case m.Type == MsgPreVote:
			// A PreVote does not change our term (thesis §9.6).
		case m.Type == MsgPreVoteResp && !m.Reject:
			// A grant carries the term we would campaign in, not the
			// responder's term.
		case m.Type == MsgApp || m.Type == MsgHeartbeat || m.Type == MsgSnap:
			c.becomeFollower(m.Term, m.From)
		default:
			c.becomeFollower(m.Term, 0)
		}
	case m.Term < c.term:
		switch {
		case (c.cfg.checkQuorum || c.cfg.preVote) && (m.Type == MsgApp || m.Type == MsgHeartbeat || m.Type == MsgSnap):
			// A leader of an older term is talking to us. With PreVote or
			// CheckQuorum we may never advance its term through our votes,
			// so tell it our term: it steps down and a fresh election can
			// include us (pitfall 9, etcd-io/etcd#8243).
			c.send(Message{Type: MsgAppResp, To: m.From, Term: c.term})
		case m.Type == MsgPreVote:
			// Reject at our term, so that a pre-candidate behind us learns
			// it; dropping it could leave the cluster leaderless (pitfall 9).
			c.send(Message{Type: MsgPreVoteResp, To: m.From, Term: c.term, Reject: true})
		default:
			c.log.Debug("drop stale message", "from", m.From, "type", m.Type, "msg_term", m.Term, "term", c.term)
		}
		return nil
	}

	switch m.Type {
	case MsgVote, MsgPreVote:
		c.handleVote(m)
		return nil
	}
	switch c.role {
	case RoleLeader:
		return c.stepLeader(m)
	case RoleCandidate, RolePreCandidate:
		return c.stepCandidate(m)
	default:
		return c.stepFollower(m)
	}
}

// inLease reports whether this node has heard from a leader (or, as leader,
// from a quorum) within the minimum election timeout.
func (c *core) inLease() bool {
	return c.cfg.checkQuorum && c.lead != 0 && c.electionElapsed < c.cfg.electionTicks
}

// propose appends ents, whose Type and Data the caller has set, to the
// leader's log in one batch and starts replicating them. It fills in each
// entry's Index and Term and returns the index of the first. The core copies
// the entries; the caller may reuse the slice (not the Data it points to).
func (c *core) propose(ents []Entry) (first, term uint64, err error) {
	if c.role != RoleLeader {
		return 0, 0, errNotLeaderCore
	}
	size := 0
	for i := range ents {
		size += entrySize(&ents[i])
	}
	if !c.canAcceptBytes(0) {
		return 0, 0, ErrBusy
	}
	first = c.raftLog.lastIndex() + 1
	for i := range ents {
		ents[i].Index = first + uint64(i)
		ents[i].Term = c.term
	}
	c.raftLog.append(ents...)
	c.uncommittedBytes += size
	c.bcastAppend(false)
	return first, c.term, nil
}

// canAcceptBytes reports whether a leader would accept n more bytes of
// proposals now. The runtime stops reading proposals when it would not; a
// batch accepted below the bound may cross it, so the bound holds to within
// one batch (Config.MaxMsgBytes plus one entry).
func (c *core) canAcceptBytes(n int) bool {
	return c.uncommittedBytes == 0 || c.uncommittedBytes+n <= c.cfg.maxUncommittedBytes
}

// send routes an outgoing message by its durability rule. A response (an
// append acknowledgement, a vote grant, any reply carrying our term) and our
// own MsgVote depend on state that must be durable first: the entries
// acknowledged, the vote cast, the term adopted (paper Figure 2, thesis
// §3.8). They leave only once everything handed to the Persister before them
// is durable. A leader's MsgApp and heartbeats may leave at once, in
// parallel with its own disk write (thesis §10.2.1), as long as the term
// they carry is durable; PreVote messages change no state.
func (c *core) send(m Message) {
	m.From = c.id
	if m.Term == 0 {
		m.Term = c.term
	}
	switch m.Type {
	case MsgApp, MsgHeartbeat:
		if c.durableTerm == c.term && c.persistedHS.Term == c.term {
			c.msgs = append(c.msgs, m)
			return
		}
	case MsgPreVote, MsgPreVoteResp:
		c.msgs = append(c.msgs, m)
		return
	case MsgVoteResp:
		if c.cfg.bugs&bugVoteBeforePersist != 0 {
			c.msgs = append(c.msgs, m) // planted bug: grant before the vote is durable
			return
		}
	}
	if len(c.afterDurable) >= maxAfterDurable {
		// The disk is stalled and responses pile up (one per heartbeat at
		// least). Dropping one is a network loss, which Raft tolerates;
		// growing without bound is not.
		c.log.Debug("drop response: too many waiting for a stalled persist", "type", m.Type, "to", m.To)
		return
	}
	c.afterDurable = append(c.afterDurable, m)
}

// maxAfterDurable bounds the messages waiting for a persist to complete.
const maxAfterDurable = 4096

// takeMessages returns the messages that may be sent now and clears the
// buffer. The slice is valid only until the next call into the core, which
// reuses its array; the messages themselves are values the caller may keep.
func (c *core) takeMessages() []Message {
	m := c.msgs
	c.msgs = c.msgs[:0]
	return m
}

// hasPersistWork reports whether readyToPersist would return a batch.
func (c *core) hasPersistWork() bool {
	return c.raftLog.hasUnstable() || c.hardState() != c.persistedHS || len(c.afterDurable) > 0
}

// readyToPersist returns the next persist batch. The runtime must carry out
// batches in the order they were returned and report each with persisted.
func (c *core) readyToPersist() *persistBatch {
	var b *persistBatch
	if n := len(c.freeBatches); n > 0 {
		b = c.freeBatches[n-1]
		c.freeBatches = c.freeBatches[:n-1]
		*b = persistBatch{afterDurable: b.afterDurable[:0]}
	} else {
		b = &persistBatch{}
	}
	b.num = c.nextNum
	c.nextNum++
	b.truncateFrom, b.compactTo, b.entries = c.raftLog.takeUnstable()
	hs := c.hardState()
	if hs != c.persistedHS {
		b.saveHardState = true
		b.hardState = hs
		// The commit index alone need not be synced: losing it only makes a
		// restarted node wait for the leader to repeat it.
		b.mustSync = hs.Term != c.persistedHS.Term || hs.Vote != c.persistedHS.Vote
		c.persistedHS = hs
	}
	b.mustSync = b.mustSync || b.truncateFrom != 0 || len(b.entries) > 0
	// Swap buffers: the batch takes the queued messages, the core keeps the
	// recycled batch's empty array.
	b.afterDurable, c.afterDurable = c.afterDurable, b.afterDurable
	c.pending = append(c.pending, pendingBatch{
		num: b.num, lastIndex: c.raftLog.lastIndex(), lastTerm: c.raftLog.lastTerm(),
		hs: hs, issued: c.ticks,
	})
	return b
}

// persisted reports that every persist batch up to and including num is
// durable.
func (c *core) persisted(num uint64) {
	var last *pendingBatch
	n := 0
	for n < len(c.pending) && c.pending[n].num <= num {
		last = &c.pending[n]
		n++
	}
	if last == nil {
		return
	}
	c.durableTerm = last.hs.Term
	c.raftLog.stableTo(last.lastIndex, last.lastTerm)
	c.pending = slices.Delete(c.pending, 0, n)
	if c.role == RoleLeader && c.maybeCommit() {
		c.bcastAppend(true)
	}
}

// recycle returns a batch that the runtime has finished with (persisted and
// its messages sent), so that its buffers serve a later batch.
func (c *core) recycle(b *persistBatch) {
	b.entries = nil // shares the log's array; do not keep it alive
	if len(c.freeBatches) < 4 {
		c.freeBatches = append(c.freeBatches, b)
	}
}

// diskStalled reports whether the oldest persist batch has been outstanding
// for an election timeout.
func (c *core) diskStalled() bool {
	return len(c.pending) > 0 && c.ticks-c.pending[0].issued >= uint64(c.cfg.electionTicks)
}

// nextApply returns committed entries to deliver, in index order, at most
// about maxBytes of them. The caller must not modify them.
func (c *core) nextApply(maxBytes int) []Entry { return c.raftLog.nextApply(maxBytes) }

// takeReplaced returns the lowest log index whose entry was replaced (after
// a conflict with a new leader's log) since the last call, or 0 if none was.
func (c *core) takeReplaced() uint64 {
	i := c.raftLog.replacedFrom
	c.raftLog.replacedFrom = 0
	return i
}

// hasApply reports whether nextApply would return entries or takeRestored a
// snapshot.
func (c *core) hasApply() bool { return c.restored != nil || c.raftLog.applied < c.raftLog.committed }

func (c *core) reset(term uint64) {
	if c.term != term {
		c.term = term
		c.vote = 0
	}
	c.lead = 0
	c.electionElapsed = 0
	c.heartbeatElapsed = 0
	c.resetRandomizedElectionTimeout()
	c.votes = nil
	c.prs = nil
	c.uncommittedBytes = 0
}

func (c *core) resetRandomizedElectionTimeout() {
	c.randomizedElectionTimeout = c.cfg.electionTicks + c.rng.IntN(c.cfg.electionTicks)
}

// checkInvariants returns an error naming the first broken invariant of this
// node's own state. Cross-node invariants (Election Safety, Log Matching,
// State Machine Safety) need every node and live in the checkers.
func (c *core) checkInvariants() error { return c.checkInvariantsFrom(c.raftLog.offset + 1) }

// checkInvariantsFrom is checkInvariants with the scan of log entries
// starting at index from.
func (c *core) checkInvariantsFrom(from uint64) error {
	if err := c.raftLog.checkInvariantsFrom(from); err != nil {
		return err
	}
	if c.raftLog.lastTerm() > c.term {
		return fmt.Errorf("core: last log term %d > current term %d", c.raftLog.lastTerm(), c.term)
	}
	if c.role == RoleLeader && c.lead != c.id {
		return fmt.Errorf("core: leader with lead %d", c.lead)
	}
	if c.persistedHS.Term > c.term {
		return fmt.Errorf("core: persisted term %d > term %d", c.persistedHS.Term, c.term)
	}
	for _, id := range c.peers {
		if pr := c.prs[id]; pr != nil {
			if err := pr.check(); err != nil {
				return fmt.Errorf("core: peer %d: %w", id, err)
			}
		}
	}
	return nil
}

// coreStatus is a copy of the core's state for Status. Applied is not here:
// it is what the application received, which only the apply loop knows.
type coreStatus struct {
	role         Role
	term         uint64
	lead         NodeID
	commit, last uint64
	snapshot     SnapshotMeta // the log's compaction point
}

func (c *core) status() coreStatus {
	return coreStatus{
		role: c.role, term: c.term, lead: c.lead,
		commit: c.raftLog.committed, last: c.raftLog.lastIndex(),
		snapshot: c.raftLog.snapshot(),
	}
}
