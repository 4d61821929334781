// Package simcore is the seam between the protocol core of package raft and
// the deterministic simulator in internal/sim.
//
// The core is unexported (users embed Node, never the core), so the
// simulator cannot construct it directly. Instead package raft registers a
// constructor here when it is initialised, and the simulator calls New. The
// types below use only built-in types, so that this package imports nothing
// of raft and raft can import it without a cycle; Msg carries the core's own
// message value opaquely.
//
// Nothing here is reachable from the public API of raft: a user's program
// never imports an internal package, and Node never sets Config.Bugs.
package simcore

import (
	"errors"
	"log/slog"
)

// Bug is a set of deliberate protocol bugs the core plants on request. They
// exist so that tests can prove that the simulator catches each classic Raft
// bug; see the constants. The Node runtime never sets any.
type Bug uint32

// The plantable bugs, each a shortcut that a real implementation shipped.
const (
	// BugCommitPreviousTerm commits an entry of an earlier term by counting
	// replicas (paper §5.4.2, Figure 8; pitfall 1).
	BugCommitPreviousTerm Bug = 1 << iota
	// BugVoteBeforePersist sends a vote grant before the vote is durable
	// (pitfall 3).
	BugVoteBeforePersist
	// BugTruncateOnStaleAppend truncates the log at the first entry of every
	// AppendEntries, even where the entries match (pitfall 2).
	BugTruncateOnStaleAppend
	// BugVoteWithoutLogCheck grants votes without the up-to-date check of
	// §5.4.1.
	BugVoteWithoutLogCheck
	// BugNoCheckQuorum keeps a leader leading when it cannot hear from a
	// majority (thesis §6.2): a liveness and staleness bug.
	BugNoCheckQuorum
	// BugInstallStaleSnapshot lets a follower install a leader's snapshot
	// at or below its commit index, rolling its log, commit index and state
	// machine back (paper §7 says to discard such a snapshot).
	BugInstallStaleSnapshot
)

// Config configures one core. Zero sizes take the runtime's defaults.
type Config struct {
	ID             uint64
	Peers          []uint64 // every voter, ID included
	ElectionTicks  int
	HeartbeatTicks int
	PreVote        bool
	CheckQuorum    bool
	Seed           uint64
	Bugs           Bug
	// MaxMsgBytes and MaxInflightMsgs bound replication as the Config
	// fields of the same names do; zero means the runtime's default.
	MaxMsgBytes     int
	MaxInflightMsgs int
	Logger          *slog.Logger // nil: discard
}

// Entry is a log entry.
type Entry struct {
	Index, Term uint64
	Noop        bool // written by the protocol, never applied
	Data        []byte
}

// HardState is the term, vote and commit index a core persists.
type HardState struct {
	Term, Vote, Commit uint64
}

// SnapshotMeta names a snapshot: the state after applying every entry up to
// and including Index, whose term is Term.
type SnapshotMeta struct {
	Index, Term uint64
}

// DiskState is what a core restarts from: what its disk holds, as a
// Persister's Load returns it.
type DiskState struct {
	HardState HardState
	// Snapshot is the newest committed snapshot (zero if none).
	Snapshot SnapshotMeta
	Entries  []Entry // contiguous from Snapshot.Index+1
}

// Msg is a message between cores. The simulator routes it by From and To,
// uses the other fields for its trace, and hands Raw back to the receiver.
type Msg struct {
	From, To uint64
	Kind     string
	Term     uint64
	Index    uint64 // as in the core's message: prev index, last index, ack
	LogTerm  uint64
	Commit   uint64
	Reject   bool
	Entries  int // number of entries carried
	// Offset, Data and Done are the snapshot-transfer fields of KindSnap
	// and KindSnapResp messages, as in the core's message.
	Offset uint64
	Data   []byte
	Done   bool
	Raw    any
}

// The kinds of the snapshot-transfer messages, which the runtime (here the
// simulator) builds itself: Step accepts a Msg of these kinds with no Raw.
const (
	KindSnap     = "MsgSnap"     // one chunk of the leader's snapshot
	KindSnapResp = "MsgSnapResp" // the follower holds Offset bytes; Reject: resume from there
)

// SnapshotSend asks the runtime of a leader to stream its newest snapshot,
// which covers at least Snapshot, to node To.
type SnapshotSend struct {
	To       uint64
	Snapshot SnapshotMeta
}

// Batch is a persist batch: truncate the log from TruncateFrom (if nonzero),
// compact it to CompactTo (if nonzero), append Entries, save HardState (if
// non-nil), make it durable, then send AfterDurable and report
// Persisted(Num).
type Batch struct {
	Num          uint64
	TruncateFrom uint64
	// CompactTo: a committed snapshot covers the entries at or below it;
	// the log drops them. If the log ends before it, the next entry
	// appended is CompactTo+1.
	CompactTo uint64
	Entries   []Entry
	HardState *HardState
	// MustSync is false when the batch only advances the commit index, which
	// the runtime writes without a Sync: losing it in a crash is harmless.
	MustSync     bool
	AfterDurable []Msg
}

// Role is a core's role, as package raft numbers them.
type Role uint8

// The roles.
const (
	Follower Role = iota
	PreCandidate
	Candidate
	Leader
)

// Status is a snapshot of a core's volatile and persistent state.
type Status struct {
	Role      Role
	Term      uint64
	Vote      uint64
	Lead      uint64
	Commit    uint64
	Applied   uint64
	LastIndex uint64
	// SnapIndex and SnapTerm are the log's compaction point: the entries at
	// or below SnapIndex exist only in a snapshot; SnapTerm is the term of
	// the entry at SnapIndex.
	SnapIndex, SnapTerm uint64
	Ticks               uint64 // ticks since the core started
}

// Core is one protocol core as the simulator drives it. It is not safe for
// concurrent use; the simulator is single-threaded per run.
type Core interface {
	Tick()
	Step(m Msg) error
	// Propose appends data to a leader's log; it returns the entry's index
	// and term or an error (not leader, busy).
	Propose(data []byte) (index, term uint64, err error)
	// Messages appends the messages that may be sent now to dst.
	Messages(dst []Msg) []Msg
	// Persist returns the next persist batch, or nil if there is nothing to
	// write.
	Persist() *Batch
	Persisted(num uint64)
	// Apply appends the committed entries not yet applied to dst and marks
	// them applied. Call Restored first: a snapshot it returns comes before
	// these entries.
	Apply(dst []Entry) []Entry
	// Compact reports that a committed snapshot covers index: the core
	// drops the entries up to it (if it has applied them) and compacts the
	// disk's log through a later Batch.
	Compact(index uint64)
	// InstallSnapshot reports that the snapshot from leader from, snap, is
	// committed on this node's disk. It returns whether the core installed
	// it (it covers more than the core has committed).
	InstallSnapshot(snap SnapshotMeta, from uint64) bool
	// SnapshotFailed reports that streaming a snapshot to node to failed
	// or was abandoned.
	SnapshotFailed(to uint64)
	// SnapshotSends appends the snapshots a leader must stream to dst.
	SnapshotSends(dst []SnapshotSend) []SnapshotSend
	// SnapshotChunks appends the KindSnap chunks the core accepted, which
	// the runtime must store, to dst.
	SnapshotChunks(dst []Msg) []Msg
	// Restored returns the snapshot installed since the last call, if
	// any: the state machine must take its state before applying more.
	Restored() (SnapshotMeta, bool)
	Status() Status
	// Changed returns the lowest log index whose entry was appended or
	// replaced since the last call (0 if none) and resets it.
	Changed() uint64
	// Entries appends the log entries in [lo, hi] to dst; none at or
	// below SnapIndex.
	Entries(dst []Entry, lo, hi uint64) []Entry
	// Check returns an error naming the first broken invariant of the
	// core's own state.
	Check() error
}

var newCore func(Config, DiskState) (Core, error)

// Register installs the core's constructor. Package raft calls it from an
// init function.
func Register(f func(Config, DiskState) (Core, error)) { newCore = f }

// ErrNotRegistered is returned by New when package raft is not linked in.
var ErrNotRegistered = errors.New("simcore: no core registered: import github.com/raftkit/raft")

// New starts a core on a disk state.
func New(cfg Config, st DiskState) (Core, error) {
	if newCore == nil {
		return nil, ErrNotRegistered
	}
	return newCore(cfg, st)
}
