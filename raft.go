// Package raft is an embeddable implementation of the Raft consensus
// algorithm (Ongaro and Ousterhout, "In Search of an Understandable Consensus
// Algorithm", extended version, and Ongaro's thesis).
//
// A Node replicates a log of commands across a cluster and delivers every
// committed command, in the same order on every node, on its ApplyCh (or,
// in batches, on its ApplyBatchCh). The application proposes commands on
// the leader with Propose (or ProposeWait, which returns once the command
// is applied locally) and applies what arrives to its own state machine.
//
// A Node talks to its peers through a Transport and stores its state through
// a Persister; both are interfaces. Package rafttest provides an in-memory,
// fault-injecting Transport and a cluster harness for tests, and this
// package provides MemoryPersister.
//
// Inside, a deterministic protocol core (no goroutines, no clock, no global
// randomness) implements the rules of the paper's Figure 2, PreVote and
// CheckQuorum; the Node is the runtime that drives it with timers, the
// transport and the persister.
package raft

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned by Node methods. Match them with errors.Is.
var (
	// ErrNotLeader: the node is not the leader. The error is a
	// *NotLeaderError carrying the leader this node knows of, if any.
	ErrNotLeader = errors.New("raft: not the leader")
	// ErrStopped: the node has been stopped.
	ErrStopped = errors.New("raft: node stopped")
	// ErrTooLarge: the command exceeds Config.MaxEntrySize.
	ErrTooLarge = errors.New("raft: command too large")
	// ErrBusy: the leader holds Config.MaxUncommittedBytes of uncommitted
	// entries and accepts no more for now.
	ErrBusy = errors.New("raft: too many uncommitted entries")
	// ErrProposalDropped: ProposeWait's command was appended at an index that
	// a later leader filled with another entry; it will never be applied.
	// The command may be proposed again.
	ErrProposalDropped = errors.New("raft: proposal dropped by a leader change")
	// ErrCorrupt: the Persister returned state that cannot be right (a gap
	// in the log, a term going backwards).
	ErrCorrupt = errors.New("raft: persisted state is corrupt")
	// ErrPersist: a Persister call failed. The node stops taking part in the
	// cluster (it must not vote or acknowledge what it could not persist);
	// Status().Err holds the cause.
	ErrPersist = errors.New("raft: persist failed")
	// ErrProposalUnknown: ProposeWait's command was appended on this node,
	// then a snapshot from a new leader replaced that part of the log; it
	// may or may not be in the snapshot.
	ErrProposalUnknown = errors.New("raft: proposal outcome unknown")
)

// NotLeaderError is the error Propose returns on a node that is not the
// leader. errors.Is(err, ErrNotLeader) holds for it.
type NotLeaderError struct {
	// Leader is the leader this node knows of, or 0 if it knows none.
	Leader NodeID
}

// Error says that the node is not the leader, and which node is, if known.
func (e *NotLeaderError) Error() string {
	if e.Leader == 0 {
		return "raft: not the leader (leader unknown)"
	}
	return fmt.Sprintf("raft: not the leader (leader is %d)", e.Leader)
}

// Is reports whether target is ErrNotLeader.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

// Role is a node's role in its current term.
type Role uint8

// The roles. RolePreCandidate is the PreVote round that precedes a real
// election when PreVote is enabled.
const (
	RoleFollower Role = iota
	RolePreCandidate
	RoleCandidate
	RoleLeader
)

// String returns the role's name, such as "leader".
func (r Role) String() string {
	switch r {
	case RoleFollower:
		return "follower"
	case RolePreCandidate:
		return "pre-candidate"
	case RoleCandidate:
		return "candidate"
	case RoleLeader:
		return "leader"
	}
	return fmt.Sprintf("Role(%d)", uint8(r))
}

// ApplyMsg is one committed command, delivered on Node.ApplyCh (or in a
// batch on Node.ApplyBatchCh) in log order.
//
// A message carries either a command (CommandValid) or a snapshot
// (SnapshotValid). Only commands passed to Propose are delivered. The
// entries the protocol writes for itself (a new leader's empty entry, and
// later configuration changes) occupy log indexes too, so CommandIndex can
// skip values.
//
// A snapshot replaces the application's state: it is the state after every
// command up to SnapshotIndex, and the next command delivered follows it.
// The node delivers one first when it starts from a snapshot, and whenever
// the leader sends one because this node fell behind entries that the
// leader has compacted away.
type ApplyMsg struct {
	// CommandValid is true when the message carries a command.
	CommandValid bool
	// Command is the command as proposed. It is shared with the node's log:
	// do not modify it.
	Command []byte
	// CommandIndex and CommandTerm are the command's log position.
	CommandIndex uint64
	CommandTerm  uint64
	// SnapshotDue marks the first command SnapshotInterval entries past
	// the last snapshot: a good moment to call Node.Snapshot with
	// CommandIndex once this command is applied.
	SnapshotDue bool

	// SnapshotValid is true when the message carries a snapshot.
	SnapshotValid bool
	// Snapshot reads the snapshot's data, as the application wrote it in
	// Node.Snapshot (on this node or on the leader). The data is checked as
	// it is read: a Read returns an error wrapping ErrCorrupt if it does
	// not match what was written. Close it when done, before receiving the
	// next message.
	Snapshot io.ReadCloser
	// SnapshotIndex and SnapshotTerm are the position of the last command
	// the snapshot covers.
	SnapshotIndex uint64
	SnapshotTerm  uint64
}

// PeerProgress is the leader's view of one follower.
type PeerProgress struct {
	// Match is the highest index known to be replicated on the follower.
	Match uint64
	// Next is the index of the next entry to send.
	Next uint64
	// Probing is true while the leader is searching for where the
	// follower's log matches its own, one message at a time.
	Probing bool
}

// Status is a snapshot of a node's state.
type Status struct {
	ID        NodeID
	Role      Role
	Term      uint64
	Leader    NodeID // 0 if unknown
	Commit    uint64 // highest index known committed
	Applied   uint64 // highest index the application received from ApplyCh or ApplyBatchCh (or skipped as internal)
	LastIndex uint64 // last index in the log
	// FirstIndex is the first index still in the log: the entries before
	// it exist only in a snapshot.
	FirstIndex uint64
	// Snapshot is the position of the newest snapshot this node has taken
	// or installed; zero if none.
	Snapshot SnapshotMeta
	// Progress is the leader's view of each follower; nil on other roles.
	Progress map[NodeID]PeerProgress
	// Err is why the node stopped taking part, if it did (see ErrPersist).
	Err error
}

// Node is one member of a Raft cluster. Its methods are safe for concurrent
// use. Create it with NewNode, stop it with Stop.
type Node struct {
	id  NodeID
	cfg Config

	// Owned by the run loop (node.go) once started.
	core    *core
	waiters map[uint64]*proposal
	entBuf  []Entry // scratch for handleProposals
	senders map[NodeID]*snapSender
	// restoreReader reads the snapshot the core's takeRestored returns
	// next; the run loop hands both to the apply loop.
	restoreReader io.ReadCloser
	// restoreWaiters are ProposeWait calls whose entries the snapshot
	// covers; they are answered once the application has received it.
	restoreWaiters []*proposal
	logWarnAt      uint64 // log length past the snapshot at which to warn next

	props    propQueue // Propose calls to the run loop
	persistc chan *persistBatch
	durablec chan persistResult
	applyq   chan applyBatch
	applyc   chan ApplyMsg   // closed from the start with Config.ApplyBatches
	batchc   chan []ApplyMsg // closed from the start without it
	// Snapshots (snapshot_stream.go, Node.Snapshot).
	snapSentc chan snapSendResult // senders to the run loop
	chunkc    chan Message        // run loop to the receiver
	installc  chan snapInstall    // receiver to the run loop
	snapc     chan snapRequest    // Node.Snapshot to the run loop
	snapMu    sync.Mutex          // serializes Node.Snapshot calls
	snapIndex atomic.Uint64       // index of the newest snapshot taken or installed
	stopc     chan struct{}
	stopOnce  sync.Once
	wg        sync.WaitGroup

	applied atomic.Uint64 // written by the apply loop

	mu      sync.Mutex // guards st and changec
	st      Status
	changec chan struct{}
}

// NewNode starts a node configured by cfg, restoring its term, vote and log
// from cfg.Persister. It returns an error, and starts nothing, if cfg is
// invalid or the persisted state cannot be loaded.
//
// The node delivers, on ApplyCh or ApplyBatchCh (see Config.ApplyBatches),
// every committed command it holds (after a restart: from the start of the
// log up to the last commit index it had persisted, then onwards as the
// leader tells it).
func NewNode(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Peers = append([]NodeID(nil), cfg.Peers...)
	st, err := cfg.Persister.Load()
	if err != nil {
		return nil, fmt.Errorf("raft: load persisted state: %w", err)
	}
	// What Load returned may have been written but never synced by a
	// process that crashed; the core treats it as durable (it may re-send
	// a vote it finds there). Make it so before anything depends on it.
	if err := cfg.Persister.Sync(); err != nil {
		return nil, fmt.Errorf("raft: sync loaded state: %w", err)
	}
	c, err := newCore(cfg.ID, cfg.Peers, cfg.coreConfig(), st, cfg.logger())
	if err != nil {
		return nil, err
	}
	var restore io.ReadCloser
	if st.Snapshot.Index > 0 {
		// The application starts from the snapshot: open it now, so that
		// a missing or different one fails here and not in the apply loop.
		meta, r, err := cfg.Persister.OpenSnapshot()
		if err == nil && meta != st.Snapshot {
			r.Close()
			err = fmt.Errorf("%w: Load returned snapshot %d/%d, OpenSnapshot %d/%d",
				ErrCorrupt, st.Snapshot.Index, st.Snapshot.Term, meta.Index, meta.Term)
		}
		if err != nil {
			return nil, fmt.Errorf("raft: open snapshot: %w", err)
		}
		restore = r
		c.restored = &meta
	}
	n := &Node{
		id:       cfg.ID,
		cfg:      cfg,
		core:     c,
		props:    newPropQueue(),
		waiters:  map[uint64]*proposal{},
		persistc: make(chan *persistBatch, 1), // see run: the batch is cut when the loop is idle
		durablec: make(chan persistResult),
		applyq:   make(chan applyBatch),
		// Unbuffered: a send completes only when the application has
		// received the message, so Status().Applied, ProposeWait and
		// MaxApplyBacklog all count what the application really has.
		applyc:        make(chan ApplyMsg),
		batchc:        make(chan []ApplyMsg),
		senders:       map[NodeID]*snapSender{},
		restoreReader: restore,
		snapSentc:     make(chan snapSendResult),
		chunkc:        make(chan Message, chunkQueue),
		installc:      make(chan snapInstall),
		snapc:         make(chan snapRequest),
		stopc:         make(chan struct{}),
		changec:       make(chan struct{}),
	}
	// The channel not in use is closed, so that a range over it ends
	// instead of waiting forever.
	if cfg.ApplyBatches {
		close(n.applyc)
	} else {
		close(n.batchc)
	}
	n.applied.Store(st.Snapshot.Index)
	n.setSnapshot(st.Snapshot)
	n.publish()
	recvc := cfg.Transport.Receive()
	n.wg.Add(4)
	go n.run(recvc)    // owner: Node; exits when stopc closes
	go n.persistLoop() // owner: Node; exits when stopc closes or a persist fails
	go n.applyLoop()   // owner: Node; exits when stopc closes; closes applyc or batchc
	go n.receiveLoop() // owner: Node; exits when stopc closes
	return n, nil
}

// ID returns the node's ID.
func (n *Node) ID() NodeID { return n.id }

// ApplyCh returns the channel on which the node delivers committed commands
// in log order, each exactly once per Node. The channel is unbuffered: a
// command counts as applied (Status().Applied, ProposeWait) once received.
// Receive from it promptly: while Config.MaxApplyBacklog entries wait, the
// leader stops accepting proposals (replication and elections go on
// regardless). The channel is closed after Stop, and from the start when
// Config.ApplyBatches is set (use ApplyBatchCh then).
func (n *Node) ApplyCh() <-chan ApplyMsg { return n.applyc }

// ApplyBatchCh returns the channel on which the node delivers what ApplyCh
// would, in batches, when Config.ApplyBatches is set. A batch is not empty,
// holds messages in log order, and a snapshot comes alone in its batch.
// Every command of a batch counts as applied once the batch is received.
// The channel is unbuffered, and closed after Stop, and from the start
// without Config.ApplyBatches.
//
// The node reuses a batch's array once the batch after it has been
// received: receive from one goroutine, which owns each batch until its
// next receive, or copy the messages before handing them to another. The
// commands themselves are never reused.
func (n *Node) ApplyBatchCh() <-chan []ApplyMsg { return n.batchc }

// Propose appends cmd to the log if this node is the leader, and returns
// the index and term it was given. It returns before the command is
// committed: the command is committed once it is delivered at that index
// with that term; if a leader change replaces it, a different command (or
// none) arrives at that index.
//
// Propose takes ownership of cmd: the caller must not modify it afterwards.
// It fails with a *NotLeaderError (errors.Is(err, ErrNotLeader)) on a
// non-leader, ErrTooLarge when len(cmd) > MaxEntrySize, ErrStopped after
// Stop, and ctx.Err() if ctx ends first. It blocks only while the leader is
// at its flow-control limits (MaxUncommittedBytes, MaxApplyBacklog) and
// 4,096 proposals already wait for it. If ctx ends after the command was
// queued, the command may still be appended and committed: the error means
// "outcome unknown", not "not proposed".
func (n *Node) Propose(ctx context.Context, cmd []byte) (index, term uint64, err error) {
	r, err := n.propose(ctx, cmd, false)
	return r.index, r.term, err
}

// ProposeWait is Propose, then waits until the command has committed and the
// application has received it from this node's ApplyCh (or, in a batch,
// from its ApplyBatchCh), and returns its
// index and term. It fails with ErrProposalDropped if a leader change
// replaced the command, and with ctx.Err() if ctx ends first (the command
// may still commit later).
func (n *Node) ProposeWait(ctx context.Context, cmd []byte) (index, term uint64, err error) {
	r, err := n.propose(ctx, cmd, true)
	return r.index, r.term, err
}

// State returns the node's current term and whether it believes it is the
// leader. It does not block on the node.
func (n *Node) State() (term uint64, isLeader bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.st.Term, n.st.Role == RoleLeader
}

// Status returns a snapshot of the node's state. It does not block on the
// node.
func (n *Node) Status() Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.st
	if n.st.Progress != nil {
		s.Progress = make(map[NodeID]PeerProgress, len(n.st.Progress))
		for id, p := range n.st.Progress {
			s.Progress[id] = p
		}
	}
	s.Applied = n.applied.Load()
	return s
}

// LeaderChanged returns a channel that is closed at the next change of this
// node's role, term or known leader. Call State or Status to see the new
// state, then LeaderChanged again for the next change. Observation is
// level-triggered: a slow observer misses intermediate states, never the
// latest one, and can never stall the node.
func (n *Node) LeaderChanged() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.changec
}

// Stop stops the node: it returns once every goroutine of the node has
// exited and the persist in progress, if any, has completed. Writes not yet
// handed to the Persister are dropped, as in a crash; nothing was
// acknowledged for them. Stop is safe to call more than once and
// concurrently. Afterwards Propose returns ErrStopped, and ApplyCh and
// ApplyBatchCh are closed.
func (n *Node) Stop() {
	n.stopOnce.Do(func() { close(n.stopc) })
	// Close the queue before waiting, not after: the wait lasts as long as
	// the persist in progress, which a stalled disk can make last any time,
	// and queued or blocked callers must not wait with it. What the run loop
	// took before this it answers itself (see proposals.go); what is still
	// queued is answered here, and nothing can be queued afterwards.
	answerStopped(n.props.stop())
	n.wg.Wait()
}

// ticker interval: the heartbeat interval is the resolution of all timers.
func (n *Node) tickInterval() time.Duration { return n.cfg.heartbeatInterval() }
