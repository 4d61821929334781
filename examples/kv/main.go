// Command kv runs a three-node replicated key-value store in one process on
// raft's in-memory test network: it writes keys through the leader, crashes
// the leader, writes more through the new one, and shows that every node
// holds the same data.
//
// Each node takes a snapshot of its map every few commands (when the node
// marks one SnapshotDue), so that its log stays short; a node restarted,
// or left behind, starts from a snapshot and the commands after it.
//
// Each node keeps its log in a FilePersister, in its own subdirectory of
// the -data directory (node1, node2, node3). A later run recovers it: each
// node replays what it had committed, which the program prints before
// writing the same keys again; the node crashed in the earlier run comes
// back with what it had then and catches up. To start clean, remove the
// directory. The default is under the system's temporary directory, so
// that running the example from a source tree leaves nothing in it. With
// -mem the nodes keep their logs in memory and every run starts empty.
//
//	go run ./examples/kv
//	go run ./examples/kv -data ./raftkv-data
//	go run ./examples/kv -mem
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/rafttest"
)

// store is the replicated state machine: a map fed by ApplyMsgs.
type store struct {
	mu    sync.Mutex
	data  map[string]string
	index uint64 // last log index applied
}

func (s *store) apply(msg raft.ApplyMsg) {
	k, v, _ := strings.Cut(string(msg.Command), "=")
	s.mu.Lock()
	s.data[k] = v
	s.index = msg.CommandIndex
	s.mu.Unlock()
}

// writeTo writes the map, one "key=value" line per key in key order: the
// snapshot Node.Snapshot stores.
func (s *store) writeTo(w io.Writer) error {
	s.mu.Lock()
	keys := slices.Sorted(maps.Keys(s.data))
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s\n", k, s.data[k])
	}
	s.mu.Unlock()
	_, err := io.WriteString(w, b.String())
	return err
}

// restore replaces the map by a snapshot's, which covers the log up to
// index.
func (s *store) restore(r io.Reader, index uint64) error {
	data := map[string]string{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			return fmt.Errorf("snapshot line %q: no '='", sc.Text())
		}
		data[k] = v
	}
	if err := sc.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	s.data, s.index = data, index
	s.mu.Unlock()
	return nil
}

func (s *store) applied() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.index
}

func (s *store) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprint(s.data)
}

// clusterID is written into each node's data directory, so that a
// directory of another cluster is refused (raft.ErrWrongDirectory) rather
// than joined.
const clusterID = 0x6b76 // "kv"

func main() {
	dataDir := flag.String("data", filepath.Join(os.TempDir(), "raftkv-data"),
		"`directory` for the nodes' logs, one subdirectory per node; a later run recovers them")
	mem := flag.Bool("mem", false, "keep the logs in memory (every run starts empty) instead of in -data")
	flag.Parse()
	if err := run(*dataDir, *mem); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

func run(dataDir string, mem bool) (err error) {
	net := rafttest.NewNetwork(1)
	defer net.Close()
	peers := []raft.NodeID{1, 2, 3}

	// The persisters outlive the nodes: closed last (deferred first),
	// once every node has stopped.
	persisters := map[raft.NodeID]raft.Persister{}
	recovered := map[raft.NodeID]uint64{} // index of the last committed command found on disk
	defer func() {
		for id, p := range persisters {
			if fp, ok := p.(*raft.FilePersister); ok {
				if cerr := fp.Close(); cerr != nil {
					err = errors.Join(err, fmt.Errorf("node %d: close storage: %w", id, cerr))
				}
			}
		}
	}()
	if mem {
		fmt.Println("logs in memory (-mem): nothing survives this run")
	} else {
		fmt.Printf("logs in %s (one directory per node); a later run recovers them, rm -r it to start clean\n", dataDir)
	}
	for _, id := range peers {
		if mem {
			persisters[id] = raft.NewMemoryPersister()
			continue
		}
		dir := filepath.Join(dataDir, fmt.Sprintf("node%d", id))
		p, err := raft.OpenFilePersister(dir, id, raft.FileOptions{ClusterID: clusterID})
		if err != nil {
			return fmt.Errorf("node %d: %w", id, err)
		}
		persisters[id] = p
		st, err := p.Load()
		if err != nil {
			return fmt.Errorf("node %d: %w", id, err)
		}
		if len(st.Entries) == 0 && st.Snapshot.Index == 0 {
			fmt.Printf("node %d: %s: new\n", id, dir)
			continue
		}
		recovered[id] = st.Snapshot.Index
		for _, e := range st.Entries {
			if e.Index <= st.HardState.Commit && e.Type == raft.EntryNormal {
				recovered[id] = e.Index
			}
		}
		snap := "no snapshot"
		if st.Snapshot.Index > 0 {
			snap = fmt.Sprintf("a snapshot up to index %d", st.Snapshot.Index)
		}
		fmt.Printf("node %d: %s: %s and %d log entries after it from an earlier run, %d known committed\n",
			id, dir, snap, len(st.Entries), max(st.HardState.Commit, st.Snapshot.Index))
	}

	nodes := map[raft.NodeID]*raft.Node{}
	stores := map[raft.NodeID]*store{}
	var wg sync.WaitGroup
	defer func() {
		for _, n := range nodes {
			n.Stop()
		}
		wg.Wait()
	}()
	for _, id := range peers {
		n, err := raft.NewNode(raft.Config{
			ID:                id,
			Peers:             peers,
			Transport:         net.Endpoint(id),
			Persister:         persisters[id],
			ElectionTimeout:   300 * time.Millisecond,
			HeartbeatInterval: 50 * time.Millisecond,
			// Tiny, to show snapshots in a short run; the default is 10,000.
			SnapshotInterval: 4,
			TrailingEntries:  2,
		})
		if err != nil {
			return err
		}
		s := &store{data: map[string]string{}}
		nodes[id], stores[id] = n, s
		wg.Add(1)
		go func() { // apply loop: ends when the node stops and closes ApplyCh
			defer wg.Done()
			for msg := range n.ApplyCh() {
				switch {
				case msg.SnapshotValid:
					err := s.restore(msg.Snapshot, msg.SnapshotIndex)
					msg.Snapshot.Close()
					if err != nil {
						log.Printf("node %d: restore snapshot: %v", id, err)
					}
				case msg.CommandValid:
					s.apply(msg)
					if msg.SnapshotDue {
						// The map is as of this command: snapshot it.
						err := n.Snapshot(context.Background(), msg.CommandIndex, s.writeTo)
						if err != nil && !errors.Is(err, raft.ErrStopped) {
							log.Printf("node %d: snapshot: %v", id, err)
						}
					}
				}
			}
		}()
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A restarted node replays, at once, the commands its log says were
	// committed. The commit index is saved lazily, so a node may replay a
	// little less than it had applied (the crashed leader above all): it
	// gets the rest from the leader, like any follower that fell behind.
	for _, id := range peers {
		if recovered[id] == 0 {
			continue
		}
		if err := waitStore(ctx, id, stores[id], recovered[id]); err != nil {
			return err
		}
		fmt.Printf("node %d recovered: %v\n", id, stores[id])
	}
	for _, kv := range []string{"color=blue", "shape=circle", "size=large"} {
		if _, err := put(ctx, nodes, kv); err != nil {
			return err
		}
	}
	leader := leaderOf(nodes)
	fmt.Printf("leader is node %d; crashing it\n", leader.ID())
	leader.Stop()
	net.Disconnect(leader.ID())
	delete(nodes, leader.ID())
	if _, err := put(ctx, nodes, "color=green"); err != nil {
		return err
	}
	fmt.Printf("new leader is node %d\n", leaderOf(nodes).ID())
	last, err := put(ctx, nodes, "done=yes")
	if err != nil {
		return err
	}
	if err := waitApplied(ctx, nodes, stores, last); err != nil {
		return err
	}
	for _, id := range peers {
		if nodes[id] == nil {
			fmt.Printf("node %d (crashed): %v\n", id, stores[id])
			continue
		}
		fmt.Printf("node %d: %v\n", id, stores[id])
	}
	return nil
}

// put proposes kv on whichever node is leader, retrying while an election
// is in progress, and returns its log index once it is committed.
func put(ctx context.Context, nodes map[raft.NodeID]*raft.Node, kv string) (uint64, error) {
	for {
		for _, n := range nodes {
			index, _, err := n.ProposeWait(ctx, []byte(kv))
			if err == nil {
				return index, nil
			}
			if !errors.Is(err, raft.ErrNotLeader) && !errors.Is(err, raft.ErrProposalDropped) {
				return 0, fmt.Errorf("put %s: %w", kv, err)
			}
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("put %s: %w", kv, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func leaderOf(nodes map[raft.NodeID]*raft.Node) *raft.Node {
	for {
		for _, n := range nodes {
			if _, ok := n.State(); ok {
				return n
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitApplied waits until every running node's store has applied index.
func waitApplied(ctx context.Context, nodes map[raft.NodeID]*raft.Node, stores map[raft.NodeID]*store, last uint64) error {
	for id := range nodes {
		if err := waitStore(ctx, id, stores[id], last); err != nil {
			return err
		}
	}
	return nil
}

// waitStore waits until node id's store has applied index.
func waitStore(ctx context.Context, id raft.NodeID, s *store, index uint64) error {
	for s.applied() < index {
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %d: waiting for index %d: %w", id, index, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}
