package raft

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"
)

// Config configures a Node. The zero value of every field other than ID,
// Peers, Transport and Persister selects a documented default, so a Config
// needs only those four. Validate reports every problem at once.
type Config struct {
	// ID is this node's ID. Required, nonzero.
	ID NodeID
	// Peers lists every voting member of the cluster, this node included.
	// Required; no duplicates, no zero.
	Peers []NodeID

	// ElectionTimeout is the minimum time a follower waits without hearing
	// from a leader before it starts an election. Each wait is drawn anew at
	// random from [ElectionTimeout, 2*ElectionTimeout) so that split votes
	// resolve (paper §5.2). It is also the CheckQuorum period and how long a
	// leader tolerates its own disk not completing a write. Zero means 1s.
	// It must be at least 2*HeartbeatInterval.
	ElectionTimeout time.Duration
	// HeartbeatInterval is how often a leader sends heartbeats; it is also
	// the resolution of every timer of the node. Zero means 100ms.
	HeartbeatInterval time.Duration

	// Transport carries messages to and from the other nodes. Required.
	Transport Transport
	// Persister stores the hard state and the log. Required.
	Persister Persister
	// Logger receives the node's logs, with a "node" attribute added. Nil
	// means discard.
	Logger *slog.Logger

	// MaxEntrySize is the largest command Propose accepts, in bytes; larger
	// ones fail with ErrTooLarge. Zero means 1 MiB.
	MaxEntrySize int
	// MaxMsgBytes bounds the entry bytes of one AppendEntries message, and so
	// of one batch of concurrent proposals (a single larger entry still goes
	// alone). Zero means 1 MiB.
	MaxMsgBytes int
	// MaxInflightMsgs is how many AppendEntries messages may be
	// unacknowledged at once to one follower (pipelining). A deep pipeline
	// starves batching, so the default is small. Zero means 4.
	MaxInflightMsgs int
	// MaxInflightBytes bounds the bytes of those messages. Zero means 8 MiB.
	MaxInflightBytes int
	// MaxUncommittedBytes bounds the bytes of entries a leader holds that are
	// not yet committed (to within one batch: a batch accepted below the
	// bound may cross it). Past it, Propose blocks until entries commit or
	// its context ends. Zero means 64 MiB; it must be at least MaxEntrySize.
	MaxUncommittedBytes int
	// ApplyBatches makes the node deliver committed commands in batches on
	// Node.ApplyBatchCh instead of one at a time on Node.ApplyCh (see
	// ApplyBatchCh for how long a batch is the application's). Each receive
	// is a hand-off between two goroutines, so one per batch costs much less
	// than one per command when many proposals are in flight.
	ApplyBatches bool
	// MaxApplyBacklog is how many entries a leader may hold that the
	// application has not yet received (from ApplyCh or ApplyBatchCh),
	// committed or not, before it stops accepting proposals (Propose then
	// blocks); a batch of proposals taken below the bound may cross it.
	// Replication, heartbeats and votes never wait for the application.
	// Zero means 8192.
	MaxApplyBacklog int

	// SnapshotInterval is how many entries the application is expected to
	// apply between two calls of Node.Snapshot. The node marks the first
	// command past that many entries since the last snapshot with
	// ApplyMsg.SnapshotDue, and logs a warning when the log grows a hundred
	// times past it. Zero means 10,000.
	SnapshotInterval int
	// TrailingEntries is how many entries the log keeps behind each
	// snapshot, so that a follower only slightly behind catches up from the
	// log rather than by a whole snapshot. Zero means 1024.
	TrailingEntries int

	// DisablePreVote turns off the PreVote round (thesis §9.6), which keeps
	// a node that was partitioned away from deposing a healthy leader when
	// it rejoins. PreVote is on by default.
	DisablePreVote bool
	// DisableCheckQuorum turns off CheckQuorum (thesis §6.2): a leader that
	// has not heard from a majority for an election timeout steps down, and
	// followers that hear from a live leader ignore vote requests. On by
	// default.
	DisableCheckQuorum bool

	// Seed seeds the node's random election timeouts; runs with the same
	// seeds and inputs make the same choices. Zero means a seed derived from
	// the current time.
	Seed uint64
}

// Defaults applied for zero Config fields.
const (
	DefaultElectionTimeout     = time.Second
	DefaultHeartbeatInterval   = 100 * time.Millisecond
	DefaultMaxEntrySize        = 1 << 20
	DefaultMaxMsgBytes         = 1 << 20
	DefaultMaxInflightMsgs     = 4
	DefaultMaxInflightBytes    = 8 << 20
	DefaultMaxUncommittedBytes = 64 << 20
	DefaultMaxApplyBacklog     = 8192
	DefaultSnapshotInterval    = 10000
	DefaultTrailingEntries     = 1024
)

// ErrInvalidConfig is matched (with errors.Is) by every error Validate
// returns.
var ErrInvalidConfig = errors.New("raft: invalid config")

// ConfigError reports one invalid Config field.
type ConfigError struct {
	Field  string // the field's name, such as "ElectionTimeout"
	Reason string
}

// Error returns "raft: invalid config: Field: reason".
func (e *ConfigError) Error() string {
	return fmt.Sprintf("raft: invalid config: %s: %s", e.Field, e.Reason)
}

// Is reports whether target is ErrInvalidConfig.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

// Validate reports every invalid field of c, each as a *ConfigError naming
// the field, joined with errors.Join. It does not modify c.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	if c.ID == 0 {
		bad("ID", "must be nonzero")
	}
	switch {
	case len(c.Peers) == 0:
		bad("Peers", "must list every voter, this node included")
	case !slices.Contains(c.Peers, c.ID):
		bad("Peers", "does not include ID %d", c.ID)
	}
	seen := make(map[NodeID]bool, len(c.Peers))
	for _, p := range c.Peers {
		if p == 0 {
			bad("Peers", "contains the zero ID")
		} else if seen[p] {
			bad("Peers", "lists %d twice", p)
		}
		seen[p] = true
	}
	if c.ElectionTimeout < 0 {
		bad("ElectionTimeout", "negative: %v", c.ElectionTimeout)
	}
	if c.HeartbeatInterval < 0 {
		bad("HeartbeatInterval", "negative: %v", c.HeartbeatInterval)
	}
	// Compare the resolved values: a zero field means its default here too.
	if c.ElectionTimeout >= 0 && c.HeartbeatInterval >= 0 && c.electionTimeout() < 2*c.heartbeatInterval() {
		bad("ElectionTimeout", "%v is less than twice HeartbeatInterval %v", c.electionTimeout(), c.heartbeatInterval())
	}
	if c.Transport == nil {
		bad("Transport", "required")
	}
	if c.Persister == nil {
		bad("Persister", "required")
	}
	for _, f := range []struct {
		name string
		v    int
	}{
		{"MaxEntrySize", c.MaxEntrySize},
		{"MaxMsgBytes", c.MaxMsgBytes},
		{"MaxInflightMsgs", c.MaxInflightMsgs},
		{"MaxInflightBytes", c.MaxInflightBytes},
		{"MaxUncommittedBytes", c.MaxUncommittedBytes},
		{"MaxApplyBacklog", c.MaxApplyBacklog},
		{"SnapshotInterval", c.SnapshotInterval},
		{"TrailingEntries", c.TrailingEntries},
	} {
		if f.v < 0 {
			bad(f.name, "negative: %d", f.v)
		}
	}
	if c.MaxEntrySize >= 0 && c.MaxUncommittedBytes >= 0 && c.maxUncommittedBytes() < c.maxEntrySize() {
		bad("MaxUncommittedBytes", "%d is less than MaxEntrySize %d", c.maxUncommittedBytes(), c.maxEntrySize())
	}
	return errors.Join(errs...)
}

// Accessors resolving zero values to defaults: the one place defaults live.

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func (c *Config) electionTimeout() time.Duration {
	return orDefault(c.ElectionTimeout, DefaultElectionTimeout)
}
func (c *Config) heartbeatInterval() time.Duration {
	return orDefault(c.HeartbeatInterval, DefaultHeartbeatInterval)
}
func (c *Config) maxEntrySize() int    { return orDefault(c.MaxEntrySize, DefaultMaxEntrySize) }
func (c *Config) maxMsgBytes() int     { return orDefault(c.MaxMsgBytes, DefaultMaxMsgBytes) }
func (c *Config) maxInflightMsgs() int { return orDefault(c.MaxInflightMsgs, DefaultMaxInflightMsgs) }
func (c *Config) maxInflightBytes() int {
	return orDefault(c.MaxInflightBytes, DefaultMaxInflightBytes)
}
func (c *Config) maxUncommittedBytes() int {
	return orDefault(c.MaxUncommittedBytes, DefaultMaxUncommittedBytes)
}
func (c *Config) maxApplyBacklog() int { return orDefault(c.MaxApplyBacklog, DefaultMaxApplyBacklog) }
func (c *Config) snapshotInterval() int {
	return orDefault(c.SnapshotInterval, DefaultSnapshotInterval)
}
func (c *Config) trailingEntries() int { return orDefault(c.TrailingEntries, DefaultTrailingEntries) }

func (c *Config) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger.With("node", c.ID)
}

// coreConfig converts durations to ticks of HeartbeatInterval.
func (c *Config) coreConfig() coreConfig {
	hb := c.heartbeatInterval()
	seed := c.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	return coreConfig{
		electionTicks:       int(c.electionTimeout() / hb),
		heartbeatTicks:      1,
		preVote:             !c.DisablePreVote,
		checkQuorum:         !c.DisableCheckQuorum,
		maxMsgBytes:         c.maxMsgBytes(),
		maxInflightMsgs:     c.maxInflightMsgs(),
		maxInflightBytes:    c.maxInflightBytes(),
		maxUncommittedBytes: c.maxUncommittedBytes(),
		seed:                seed,
	}
}
