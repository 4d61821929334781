package raft

import "fmt"

// NodeID identifies a node of a cluster. Zero is not a valid ID: it means
// "none" (no vote cast, no leader known).
type NodeID uint64

// MessageType says what a Message is. The names follow the Raft paper's RPCs:
// AppendEntries and RequestVote, each with its response, plus the PreVote
// round of Ongaro's thesis §9.6 and a heartbeat that carries no entries.
type MessageType uint8

// The message types exchanged between nodes.
const (
	MsgApp           MessageType = iota + 1 // AppendEntries request
	MsgAppResp                              // AppendEntries response
	MsgVote                                 // RequestVote request
	MsgVoteResp                             // RequestVote response
	MsgPreVote                              // PreVote request (thesis §9.6): asks "would you vote for me?"
	MsgPreVoteResp                          // PreVote response
	MsgHeartbeat                            // leader heartbeat: no entries, no consistency check
	MsgHeartbeatResp                        // heartbeat response
	MsgSnap                                 // InstallSnapshot request: one chunk of the leader's snapshot
	MsgSnapResp                             // InstallSnapshot chunk acknowledgement
)

var messageTypeNames = [...]string{
	MsgApp:           "MsgApp",
	MsgAppResp:       "MsgAppResp",
	MsgVote:          "MsgVote",
	MsgVoteResp:      "MsgVoteResp",
	MsgPreVote:       "MsgPreVote",
	MsgPreVoteResp:   "MsgPreVoteResp",
	MsgHeartbeat:     "MsgHeartbeat",
	MsgHeartbeatResp: "MsgHeartbeatResp",
	MsgSnap:          "MsgSnap",
	MsgSnapResp:      "MsgSnapResp",
}

// String returns the type's name, such as "MsgApp".
func (t MessageType) String() string {
	if int(t) < len(messageTypeNames) && messageTypeNames[t] != "" {
		return messageTypeNames[t]
	}
	return fmt.Sprintf("MessageType(%d)", uint8(t))
}

// Message is one protocol message between two nodes. A Transport moves it
// unchanged; it needs to know nothing of its meaning beyond From and To.
//
// Entries and their Data are shared, not copied, between the sender's log and
// every receiver: neither a Transport nor a receiver may modify them.
type Message struct {
	Type MessageType
	From NodeID
	To   NodeID
	// Term is the sender's current term (for MsgPreVote, the term it would
	// campaign in).
	Term uint64

	// Index and LogTerm locate a log entry. MsgApp: the entry preceding
	// Entries (prevLogIndex, prevLogTerm). MsgVote and MsgPreVote: the
	// candidate's last entry. MsgAppResp: on success the highest index the
	// follower now knows to match the leader; on rejection the prevLogIndex it
	// rejected, so that the leader can ignore stale rejections.
	Index   uint64
	LogTerm uint64

	// Entries are the entries to append (MsgApp only).
	Entries []Entry
	// Commit is the leader's commit index (MsgApp, MsgHeartbeat).
	Commit uint64

	// Reject is set on a response that refuses the request.
	Reject bool
	// ConflictIndex and ConflictTerm are a rejecting follower's hint for fast
	// backtracking (paper §5.3, last paragraphs): ConflictTerm is the term of
	// its entry at the rejected index (zero if it has no such entry) and
	// ConflictIndex the first index it holds of that term (or its last index
	// plus one when ConflictTerm is zero).
	ConflictIndex uint64
	ConflictTerm  uint64
	// Snapshot transfer (paper §7, InstallSnapshot). MsgSnap: Index and
	// LogTerm are the snapshot's last included index and term, Offset is
	// where Data, one chunk of the snapshot, starts in it, and Done marks
	// the last chunk. MsgSnapResp: Index and LogTerm name the snapshot and
	// Offset is how many of its bytes the follower holds, in order; Reject
	// asks the leader to start over from Offset.
	Offset uint64
	Data   []byte
	Done   bool
}

// Size returns the approximate encoded size of m in bytes: a fixed header plus
// each entry's header and data. Transports and flow control use it.
func (m *Message) Size() int {
	n := messageHeaderBytes + len(m.Data)
	for i := range m.Entries {
		n += entrySize(&m.Entries[i])
	}
	return n
}

// Approximate fixed costs, in bytes, of a message and of one entry beyond its
// data, in memory or encoded. Flow control charges them too, so that empty
// entries are not free.
const (
	messageHeaderBytes = 64
	entryHeaderBytes   = 24
)

// entrySize is what an entry costs flow control: its header and its data.
func entrySize(e *Entry) int { return entryHeaderBytes + len(e.Data) }

// Transport moves messages between the nodes of a cluster. The Node calls
// Send from its own goroutines and reads Receive until it stops; the
// Transport owns any goroutines, connections and buffers it needs, and the
// caller that created it closes it after the Node has stopped.
//
// Raft tolerates a lossy network: a Transport may drop, delay, duplicate or
// reorder messages. What it must not do is block the Node: Send returns
// promptly, dropping the message if it cannot be queued.
type Transport interface {
	// Send queues m for delivery to m.To. It is safe for concurrent use and
	// must not block on the network. The transport may keep m, including
	// m.Entries, but must not modify it.
	Send(m Message)
	// Receive returns the channel on which messages addressed to this node
	// arrive. The Node calls it once, at NewNode, and reads from it until
	// Stop; the channel need never be closed.
	Receive() <-chan Message
}
