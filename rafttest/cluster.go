package rafttest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/internal/check"
)

// Options configure a Cluster. The zero value is a reliable network, the
// timings below and a seed of 1.
type Options struct {
	// Seed seeds the network's faults and every node's election timeouts.
	// Zero means 1.
	Seed uint64
	// Config, if set, adjusts each node's Config before it starts (also on
	// restart). ID, Peers, Transport and Persister are filled in already.
	Config func(cfg *raft.Config)
	// Persister, if set, makes the persister for each node; the default is
	// a *raft.MemoryPersister. Crash calls the persister's Crash method if
	// it has one (func()).
	Persister func(id raft.NodeID) raft.Persister
	// OnApply, if set, is called for every ApplyMsg, by the goroutine that
	// drains that node's ApplyCh (or ApplyBatchCh, with
	// Config.ApplyBatches), before the message is checked. A slow
	// OnApply models a slow application.
	OnApply func(id raft.NodeID, msg raft.ApplyMsg)
	// Logger, if set, receives every node's logs.
	Logger *slog.Logger
	// SnapshotEvery, if positive, makes each node's application take a
	// snapshot (Node.Snapshot) every SnapshotEvery commands it applies.
	// The application's state is the digest of the commands applied (see
	// internal/check); a snapshot holds it, followed by SnapshotPadding
	// bytes of filler so that snapshots can be made as large as a test
	// needs. A snapshot received is read to the end, checked and
	// restored, and must match the state every node had at its index.
	SnapshotEvery   int
	SnapshotPadding int
	// SnapshotState and RestoreState, with SnapshotEvery, put the
	// application's own state in the snapshots. SnapshotState returns node
	// id's state as of the command at which the snapshot is taken: it runs
	// in the goroutine that calls OnApply, right after OnApply handled that
	// command. RestoreState replaces node id's state by one received in a
	// snapshot covering up to index. OnApply sees snapshot messages too,
	// before RestoreState, but must not read them.
	SnapshotState func(id raft.NodeID) []byte
	RestoreState  func(id raft.NodeID, index uint64, state []byte) error
	// SnapshotErrorOK, if set, says whether an error of the application's
	// Node.Snapshot is expected (a test whose disks fail on purpose);
	// other errors, but ErrStopped and ErrStaleSnapshot, fail the test.
	SnapshotErrorOK func(id raft.NodeID, err error) bool
}

// Cluster timings: heartbeats every 100ms (at most 10 per second per
// follower), elections after 500ms to 1s of silence. Waits in the helpers
// are generous multiples of these.
const (
	HeartbeatInterval = 100 * time.Millisecond
	ElectionTimeout   = 500 * time.Millisecond
	// LeaderWait is how long the helpers wait for a leader to emerge.
	LeaderWait = 10 * time.Second
	// AgreementWait is how long One waits for a command to be applied.
	AgreementWait = 10 * time.Second
)

// Cluster runs N nodes (IDs 1..N) on a Network in one process and checks
// every command they apply (see internal/check): the same command at each
// index on every node, in order, at most once per node run, none skipped,
// and only commands proposed through the Cluster. Helpers fail the test
// with t.Fatal; they must be called from the test's goroutine.
type Cluster struct {
	t    testing.TB
	Net  *Network
	IDs  []raft.NodeID
	opts Options
	hist *check.History

	mu      sync.Mutex
	members map[raft.NodeID]*member
}

type member struct {
	persister raft.Persister
	node      *raft.Node // nil while crashed
	inc       *check.Incarnation
	drained   chan struct{} // closed when the apply channel's consumer exits
	connected bool
}

// NewCluster starts n nodes and registers Close with t.Cleanup.
func NewCluster(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	c := &Cluster{
		t:       t,
		Net:     NewNetwork(opts.Seed),
		opts:    opts,
		hist:    check.NewHistory(true),
		members: map[raft.NodeID]*member{},
	}
	for i := 1; i <= n; i++ {
		c.IDs = append(c.IDs, raft.NodeID(i))
	}
	t.Cleanup(c.Close)
	for _, id := range c.IDs {
		m := &member{connected: true}
		if opts.Persister != nil {
			m.persister = opts.Persister(id)
		} else {
			m.persister = raft.NewMemoryPersister()
		}
		c.members[id] = m
		c.start(id)
	}
	return c
}

func (c *Cluster) start(id raft.NodeID) {
	c.t.Helper()
	m := c.members[id]
	cfg := raft.Config{
		ID:                id,
		Peers:             slices.Clone(c.IDs),
		ElectionTimeout:   ElectionTimeout,
		HeartbeatInterval: HeartbeatInterval,
		Transport:         c.Net.Endpoint(id),
		Persister:         m.persister,
		Logger:            c.opts.Logger,
		Seed:              c.opts.Seed*1000 + uint64(id),
	}
	if c.opts.Config != nil {
		c.opts.Config(&cfg)
	}
	node, err := raft.NewNode(cfg)
	if err != nil {
		c.t.Fatalf("rafttest: start node %d: %v", id, err)
	}
	inc := c.hist.Start(uint64(id))
	drained := make(chan struct{})
	since := 0 // commands applied since the last snapshot
	apply := func(msg raft.ApplyMsg) {
		if c.opts.OnApply != nil {
			c.opts.OnApply(id, msg)
		}
		switch {
		case msg.SnapshotValid:
			since = 0
			index, d, state, err := readSnapshot(msg.Snapshot)
			msg.Snapshot.Close()
			if err == nil && index != msg.SnapshotIndex {
				err = fmt.Errorf("snapshot data is for index %d, message says %d", index, msg.SnapshotIndex)
			}
			if err == nil {
				err = inc.Restore(index, d)
			}
			if err == nil && c.opts.RestoreState != nil {
				err = c.opts.RestoreState(id, index, state)
			}
			if err != nil {
				c.t.Errorf("rafttest: node %d: restore snapshot: %v", id, err)
			}
		case msg.CommandValid:
			if err := inc.Apply(msg.CommandIndex, msg.Command); err != nil {
				c.t.Errorf("rafttest: %v", err)
			}
			if since++; c.opts.SnapshotEvery > 0 && since >= c.opts.SnapshotEvery {
				since = 0
				d := inc.Digest()
				var state []byte
				if c.opts.SnapshotState != nil {
					state = c.opts.SnapshotState(id)
				}
				err := node.Snapshot(context.Background(), msg.CommandIndex, func(w io.Writer) error {
					return writeSnapshot(w, msg.CommandIndex, d, state, c.opts.SnapshotPadding)
				})
				if err != nil && !errors.Is(err, raft.ErrStopped) && !errors.Is(err, raft.ErrStaleSnapshot) &&
					(c.opts.SnapshotErrorOK == nil || !c.opts.SnapshotErrorOK(id, err)) {
					c.t.Errorf("rafttest: node %d: snapshot at %d: %v", id, msg.CommandIndex, err)
				}
			}
		}
	}
	go func() { // owner: the Cluster; exits when node.Stop closes the apply channel
		defer close(drained)
		if cfg.ApplyBatches {
			for batch := range node.ApplyBatchCh() {
				if len(batch) == 0 || len(batch) > 1 && slices.ContainsFunc(batch, func(m raft.ApplyMsg) bool { return m.SnapshotValid }) {
					c.t.Errorf("rafttest: node %d: a batch of %d messages, empty or a snapshot not alone", id, len(batch))
				}
				for _, msg := range batch {
					apply(msg)
				}
			}
			return
		}
		for msg := range node.ApplyCh() {
			apply(msg)
		}
	}()
	c.mu.Lock()
	m.node, m.inc, m.drained = node, inc, drained
	c.mu.Unlock()
}

// Node returns node id, or nil while it is crashed.
func (c *Cluster) Node(id raft.NodeID) *raft.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[id].node
}

// Persister returns node id's persister.
func (c *Cluster) Persister(id raft.NodeID) raft.Persister {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[id].persister
}

// Crash stops node id and, if its persister can (MemoryPersister can),
// discards the writes it had not synced, as a power loss would.
func (c *Cluster) Crash(id raft.NodeID) {
	c.t.Helper()
	c.mu.Lock()
	m := c.members[id]
	node, drained := m.node, m.drained
	m.node = nil
	c.mu.Unlock()
	if node == nil {
		return
	}
	node.Stop()
	<-drained
	if cr, ok := m.persister.(interface{ Crash() }); ok {
		cr.Crash()
	}
}

// Restart starts a crashed node id again on its persister. It is a new
// incarnation: it replays its log to its application.
func (c *Cluster) Restart(id raft.NodeID) {
	c.t.Helper()
	c.Crash(id)
	c.start(id)
}

// Disconnect cuts node id off the network.
func (c *Cluster) Disconnect(id raft.NodeID) {
	c.Net.Disconnect(id)
	c.mu.Lock()
	c.members[id].connected = false
	c.mu.Unlock()
}

// Connect reconnects node id.
func (c *Cluster) Connect(id raft.NodeID) {
	c.Net.Connect(id)
	c.mu.Lock()
	c.members[id].connected = true
	c.mu.Unlock()
}

// live returns the running, connected nodes.
func (c *Cluster) live() map[raft.NodeID]*raft.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[raft.NodeID]*raft.Node{}
	for id, m := range c.members {
		if m.node != nil && m.connected {
			out[id] = m.node
		}
	}
	return out
}

// Leader waits until exactly one of the running, connected nodes is leader
// in the highest term any of them leads, and returns it. It fails the test
// if two nodes lead the same term, or if no leader emerges within
// LeaderWait. A leader cut off from the others keeps believing it leads
// for up to two election timeouts, until CheckQuorum runs; if it is
// reachable again (Connect) within that window, Leader can return it.
func (c *Cluster) Leader() raft.NodeID {
	c.t.Helper()
	deadline := time.Now().Add(LeaderWait)
	for {
		leaders := map[uint64][]raft.NodeID{}
		var top uint64
		for id, n := range c.live() {
			if term, ok := n.State(); ok {
				leaders[term] = append(leaders[term], id)
				top = max(top, term)
			}
		}
		for term, ids := range leaders {
			if len(ids) > 1 {
				c.t.Fatalf("rafttest: term %d has %d leaders: %v", term, len(ids), ids)
			}
		}
		if top != 0 {
			return leaders[top][0]
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("rafttest: no leader within %v", LeaderWait)
		}
		time.Sleep(10 * time.Millisecond) // poll interval of a poll-with-deadline
	}
}

// WaitNoLeader waits until none of the given nodes (all running, connected
// nodes if none are given) believes it is the leader, and fails the test if
// that does not happen within LeaderWait.
func (c *Cluster) WaitNoLeader(ids ...raft.NodeID) {
	c.t.Helper()
	deadline := time.Now().Add(LeaderWait)
	for {
		nodes := c.live()
		if len(ids) > 0 {
			nodes = map[raft.NodeID]*raft.Node{}
			for _, id := range ids {
				if n := c.Node(id); n != nil {
					nodes[id] = n
				}
			}
		}
		var leader raft.NodeID
		for id, n := range nodes {
			if _, ok := n.State(); ok {
				leader = id
			}
		}
		if leader == 0 {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("rafttest: node %d still leader after %v", leader, LeaderWait)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Terms returns the current term of every running, connected node.
func (c *Cluster) Terms() map[raft.NodeID]uint64 {
	out := map[raft.NodeID]uint64{}
	for id, n := range c.live() {
		out[id], _ = n.State()
	}
	return out
}

// Propose records cmd as proposed and proposes it on node id.
func (c *Cluster) Propose(ctx context.Context, id raft.NodeID, cmd []byte) (index, term uint64, err error) {
	n := c.Node(id)
	if n == nil {
		return 0, 0, raft.ErrStopped
	}
	c.hist.Proposed(cmd)
	return n.Propose(ctx, cmd)
}

// Applied returns how many running nodes have applied index and the command
// there, failing the test if the history holds a violation.
func (c *Cluster) Applied(index uint64) (count int, cmd []byte) {
	c.t.Helper()
	if err := c.hist.Err(); err != nil {
		c.t.Fatalf("rafttest: %v", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.members {
		if m.node == nil {
			continue
		}
		if got, ok := m.inc.Applied(index); ok {
			count++
			cmd = got
		}
	}
	return count, cmd
}

// LastApplied returns the highest index node id's current run has applied.
func (c *Cluster) LastApplied(id raft.NodeID) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[id].inc.Last()
}

// WaitApplied waits until at least n running nodes have applied index, and
// returns the command there. It fails the test after AgreementWait.
func (c *Cluster) WaitApplied(index uint64, n int) []byte {
	c.t.Helper()
	deadline := time.Now().Add(AgreementWait)
	for {
		count, cmd := c.Applied(index)
		if count >= n {
			return cmd
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("rafttest: index %d applied on %d nodes after %v, want %d", index, count, AgreementWait, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// One gets cmd committed and applied on at least expected running nodes,
// and returns its index. It tries each running, connected node as leader
// until one accepts; if the command is not applied within a few seconds it
// proposes again when retry is set, and fails the test otherwise. It fails
// the test if cmd is not applied within AgreementWait in all.
func (c *Cluster) One(cmd []byte, expected int, retry bool) uint64 {
	c.t.Helper()
	deadline := time.Now().Add(AgreementWait)
	for time.Now().Before(deadline) {
		index, ok := c.proposeAnywhere(cmd)
		if !ok {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		wait := time.Now().Add(2 * time.Second)
		for time.Now().Before(wait) {
			n, got := c.Applied(index)
			if n >= expected && bytes.Equal(got, cmd) {
				return index
			}
			time.Sleep(10 * time.Millisecond)
		}
		if !retry {
			c.t.Fatalf("rafttest: One(%q) failed to reach agreement on %d nodes", cmd, expected)
		}
	}
	c.t.Fatalf("rafttest: One(%q) failed to reach agreement within %v", cmd, AgreementWait)
	return 0
}

func (c *Cluster) proposeAnywhere(cmd []byte) (uint64, bool) {
	live := c.live()
	for _, id := range c.IDs {
		if live[id] == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		index, _, err := c.Propose(ctx, id, cmd)
		cancel()
		if err == nil {
			return index, true
		}
	}
	return 0, false
}

// Check returns the first violation in what the nodes applied so far.
func (c *Cluster) Check() error { return c.hist.Check() }

// Close stops every node and the network, then fails the test if the
// history holds a violation. Cleanup calls it; calling it again is harmless.
func (c *Cluster) Close() {
	var wg sync.WaitGroup
	for _, id := range c.IDs {
		wg.Add(1)
		go func() { // owner: Close; exits when the node has stopped
			defer wg.Done()
			c.Crash(id)
		}()
	}
	wg.Wait()
	c.Net.Close()
	if err := c.hist.Check(); err != nil {
		c.t.Errorf("rafttest: %v", err)
	}
}

// writeSnapshot writes the Cluster's application state: the index, the
// digest, the user's state, and padding bytes of filler, each a function of
// its offset.
func writeSnapshot(w io.Writer, index uint64, d check.Digest, state []byte, padding int) error {
	hdr := binary.BigEndian.AppendUint64(nil, index)
	hdr = binary.BigEndian.AppendUint64(hdr, uint64(padding))
	hdr = append(hdr, d[:]...)
	hdr = binary.BigEndian.AppendUint64(hdr, uint64(len(state)))
	hdr = append(hdr, state...)
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	buf := make([]byte, 32<<10)
	for off := 0; off < padding; {
		n := min(len(buf), padding-off)
		for i := range buf[:n] {
			buf[i] = byte(off + i)
		}
		if _, err := w.Write(buf[:n]); err != nil {
			return err
		}
		off += n
	}
	return nil
}

// readSnapshot reads what writeSnapshot wrote, to the end, and checks it.
func readSnapshot(r io.Reader) (index uint64, d check.Digest, state []byte, err error) {
	hdr := make([]byte, 16+len(d)+8)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return 0, d, nil, fmt.Errorf("read snapshot header: %w", err)
	}
	index = binary.BigEndian.Uint64(hdr)
	padding := binary.BigEndian.Uint64(hdr[8:])
	copy(d[:], hdr[16:])
	n := binary.BigEndian.Uint64(hdr[16+len(d):])
	if n > 1<<30 {
		return 0, d, nil, fmt.Errorf("snapshot state of %d bytes: corrupt length", n)
	}
	state = make([]byte, n)
	if _, err := io.ReadFull(r, state); err != nil {
		return 0, d, nil, fmt.Errorf("read snapshot state: %w", err)
	}
	buf := make([]byte, 32<<10)
	var off uint64
	for {
		n, err := r.Read(buf)
		for i := range buf[:n] {
			if buf[i] != byte(off+uint64(i)) {
				return 0, d, nil, fmt.Errorf("snapshot filler byte %d is wrong", off+uint64(i))
			}
		}
		off += uint64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, d, nil, fmt.Errorf("read snapshot: %w", err)
		}
	}
	if off != padding {
		return 0, d, nil, fmt.Errorf("snapshot has %d filler bytes, want %d", off, padding)
	}
	return index, d, state, nil
}
