package raft

import (
	"fmt"
	"log/slog"

	"github.com/raftkit/raft/internal/simcore"
)

// The simulator's view of the core (internal/simcore): an adapter that
// translates between the core's types and the simulator's built-in ones.
// Registering it costs a user's program one function value; nothing in the
// public API reaches it.

// simLogChunkBits makes the simulated nodes' log chunks 8 entries long, so
// that every run crosses many chunk boundaries while truncating, compacting
// and restoring.
const simLogChunkBits = 3

func init() { simcore.Register(newSimCore) }

// plantedBugs and simcore.Bug share bit values; an index out of range here
// (a compile error) means they drifted apart.
var _ = [1]struct{}{}[simcore.Bug(bugCommitPreviousTerm)^simcore.BugCommitPreviousTerm|
	simcore.Bug(bugVoteBeforePersist)^simcore.BugVoteBeforePersist|
	simcore.Bug(bugTruncateOnStaleAppend)^simcore.BugTruncateOnStaleAppend|
	simcore.Bug(bugVoteWithoutLogCheck)^simcore.BugVoteWithoutLogCheck|
	simcore.Bug(bugNoCheckQuorum)^simcore.BugNoCheckQuorum|
	simcore.Bug(bugInstallStaleSnapshot)^simcore.BugInstallStaleSnapshot]

type simCore struct {
	c         *core
	lastSeen  uint64 // last index when Changed was last called
	changed   uint64 // lowest index changed since Changed was last called
	checkFrom uint64 // lowest index changed since Check was last called
}

func newSimCore(cfg simcore.Config, st simcore.DiskState) (simcore.Core, error) {
	peers := make([]NodeID, len(cfg.Peers))
	for i, p := range cfg.Peers {
		peers[i] = NodeID(p)
	}
	ents := make([]Entry, len(st.Entries))
	for i, e := range st.Entries {
		ents[i] = fromSimEntry(e)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cc := coreConfig{
		electionTicks:       cfg.ElectionTicks,
		heartbeatTicks:      cfg.HeartbeatTicks,
		preVote:             cfg.PreVote,
		checkQuorum:         cfg.CheckQuorum,
		maxMsgBytes:         orDefault(cfg.MaxMsgBytes, DefaultMaxMsgBytes),
		maxInflightMsgs:     orDefault(cfg.MaxInflightMsgs, DefaultMaxInflightMsgs),
		maxInflightBytes:    DefaultMaxInflightBytes,
		maxUncommittedBytes: DefaultMaxUncommittedBytes,
		seed:                cfg.Seed,
		logChunkBits:        simLogChunkBits,
		bugs:                plantedBugs(cfg.Bugs),
	}
	hs := HardState{Term: st.HardState.Term, Vote: NodeID(st.HardState.Vote), Commit: st.HardState.Commit}
	snap := SnapshotMeta{Index: st.Snapshot.Index, Term: st.Snapshot.Term}
	c, err := newCore(NodeID(cfg.ID), peers, cc, PersistentState{HardState: hs, Snapshot: snap, Entries: ents}, logger.With("node", cfg.ID))
	if err != nil {
		return nil, err
	}
	return &simCore{c: c, lastSeen: c.raftLog.lastIndex()}, nil
}

func fromSimEntry(e simcore.Entry) Entry {
	t := EntryNormal
	if e.Noop {
		t = EntryNoop
	}
	return Entry{Index: e.Index, Term: e.Term, Type: t, Data: e.Data}
}

func toSimEntry(e *Entry) simcore.Entry {
	return simcore.Entry{Index: e.Index, Term: e.Term, Noop: e.Type == EntryNoop, Data: e.Data}
}

func toSimMsg(m Message) simcore.Msg {
	return simcore.Msg{
		From: uint64(m.From), To: uint64(m.To), Kind: m.Type.String(), Term: m.Term,
		Index: m.Index, LogTerm: m.LogTerm, Commit: m.Commit, Reject: m.Reject,
		Entries: len(m.Entries), Offset: m.Offset, Data: m.Data, Done: m.Done, Raw: m,
	}
}

// fromSimMsg returns the core's message: Raw, or for a snapshot-transfer
// message that the simulator built (as the runtime builds them), one made
// from its fields.
func fromSimMsg(m simcore.Msg) (Message, error) {
	if raw, ok := m.Raw.(Message); ok {
		return raw, nil
	}
	var t MessageType
	switch m.Kind {
	case simcore.KindSnap:
		t = MsgSnap
	case simcore.KindSnapResp:
		t = MsgSnapResp
	default:
		return Message{}, fmt.Errorf("simcore: %s message without the core's value", m.Kind)
	}
	return Message{
		Type: t, From: NodeID(m.From), To: NodeID(m.To), Term: m.Term,
		Index: m.Index, LogTerm: m.LogTerm, Reject: m.Reject,
		Offset: m.Offset, Data: m.Data, Done: m.Done,
	}, nil
}

func (s *simCore) Tick() { s.c.tick(); s.noteChanges() }

func (s *simCore) Step(m simcore.Msg) error {
	raw, err := fromSimMsg(m)
	if err != nil {
		return err
	}
	err = s.c.step(raw)
	s.noteChanges()
	return err
}

func (s *simCore) Propose(data []byte) (uint64, uint64, error) {
	ents := [1]Entry{{Type: EntryNormal, Data: data}}
	idx, term, err := s.c.propose(ents[:])
	s.noteChanges()
	return idx, term, err
}

func (s *simCore) Messages(dst []simcore.Msg) []simcore.Msg {
	for _, m := range s.c.takeMessages() {
		dst = append(dst, toSimMsg(m))
	}
	return dst
}

func (s *simCore) Persist() *simcore.Batch {
	if !s.c.hasPersistWork() {
		return nil
	}
	b := s.c.readyToPersist()
	sb := &simcore.Batch{Num: b.num, TruncateFrom: b.truncateFrom, CompactTo: b.compactTo, MustSync: b.mustSync}
	if len(b.entries) > 0 {
		sb.Entries = make([]simcore.Entry, len(b.entries))
		for i := range b.entries {
			sb.Entries[i] = toSimEntry(&b.entries[i])
		}
	}
	if b.saveHardState {
		sb.HardState = &simcore.HardState{Term: b.hardState.Term, Vote: uint64(b.hardState.Vote), Commit: b.hardState.Commit}
	}
	for _, m := range b.afterDurable {
		sb.AfterDurable = append(sb.AfterDurable, toSimMsg(m))
	}
	s.c.recycle(b)
	return sb
}

func (s *simCore) Persisted(num uint64) { s.c.persisted(num); s.noteChanges() }

func (s *simCore) Apply(dst []simcore.Entry) []simcore.Entry {
	for l := s.c.raftLog; l.applied < l.committed; {
		ents := s.c.nextApply(1 << 30)
		for i := range ents {
			dst = append(dst, toSimEntry(&ents[i]))
		}
	}
	return dst
}

func (s *simCore) Status() simcore.Status {
	c := s.c
	return simcore.Status{
		Role: simcore.Role(c.role), Term: c.term, Vote: uint64(c.vote), Lead: uint64(c.lead),
		Commit: c.raftLog.committed, Applied: c.raftLog.applied, LastIndex: c.raftLog.lastIndex(),
		SnapIndex: c.raftLog.offset, SnapTerm: c.raftLog.snapTerm,
		Ticks: c.ticks,
	}
}

func (s *simCore) Compact(index uint64) { s.c.compact(index); s.noteChanges() }

// InstallSnapshot is the runtime's report that a leader's snapshot is
// committed locally. With BugInstallStaleSnapshot planted, a follower
// forgets, just before, that its log is committed past the snapshot, so
// that the core's never-roll-back check lets the snapshot in.
func (s *simCore) InstallSnapshot(snap simcore.SnapshotMeta, from uint64) bool {
	c, l := s.c, s.c.raftLog
	meta := SnapshotMeta{Index: snap.Index, Term: snap.Term}
	if c.cfg.bugs&bugInstallStaleSnapshot != 0 && c.role != RoleLeader && meta.Term <= c.term &&
		l.offset < meta.Index && meta.Index <= l.committed {
		l.committed = meta.Index - 1 // planted bug: roll back
		l.applied = min(l.applied, l.committed)
	}
	ok := c.installSnapshot(meta, NodeID(from))
	s.noteChanges()
	return ok
}

func (s *simCore) SnapshotFailed(to uint64) { s.c.snapshotFailed(NodeID(to)); s.noteChanges() }

func (s *simCore) SnapshotSends(dst []simcore.SnapshotSend) []simcore.SnapshotSend {
	for _, ss := range s.c.takeSnapshotSends() {
		dst = append(dst, simcore.SnapshotSend{To: uint64(ss.to), Snapshot: simcore.SnapshotMeta{Index: ss.meta.Index, Term: ss.meta.Term}})
	}
	return dst
}

func (s *simCore) SnapshotChunks(dst []simcore.Msg) []simcore.Msg {
	for _, m := range s.c.takeSnapshotChunks() {
		dst = append(dst, toSimMsg(m))
	}
	return dst
}

func (s *simCore) Restored() (simcore.SnapshotMeta, bool) {
	m, ok := s.c.takeRestored()
	return simcore.SnapshotMeta{Index: m.Index, Term: m.Term}, ok
}

// noteChanges folds the log's replaced and appended positions into changed
// and checkFrom.
func (s *simCore) noteChanges() {
	l := s.c.raftLog
	from := s.c.takeReplaced()
	if last := l.lastIndex(); last != s.lastSeen {
		if last > s.lastSeen && (from == 0 || s.lastSeen+1 < from) {
			from = s.lastSeen + 1
		}
		s.lastSeen = last
	}
	if from != 0 {
		if s.changed == 0 || from < s.changed {
			s.changed = from
		}
		if s.checkFrom == 0 || from < s.checkFrom {
			s.checkFrom = from
		}
	}
}

func (s *simCore) Changed() uint64 {
	ch := s.changed
	s.changed = 0
	return ch
}

func (s *simCore) Entries(dst []simcore.Entry, lo, hi uint64) []simcore.Entry {
	l := s.c.raftLog
	hi = min(hi, l.lastIndex())
	for i := max(lo, l.offset+1); i <= hi; i++ {
		dst = append(dst, toSimEntry(l.at(i)))
	}
	return dst
}

// Check checks the core's invariants, scanning the log entry by entry only
// from the lowest index that changed since the last Check (the entry before
// it included, for the link between them).
func (s *simCore) Check() error {
	from := s.c.raftLog.lastIndex() + 1
	if s.checkFrom != 0 {
		from = min(from, s.checkFrom)
	}
	s.checkFrom = 0
	return s.c.checkInvariantsFrom(max(from, s.c.raftLog.offset+2) - 1)
}
