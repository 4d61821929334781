package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// etcdCluster is etcd-io/raft driven the way etcd's own server drives it
// (etcdserver/raft.go):
//
//   - raft.Config as etcd sets it: ElectionTick 10, HeartbeatTick 1 on a
//     100ms ticker, MaxSizePerMsg 1 MiB, MaxInflightMsgs 512, CheckQuorum
//     and PreVote on; MemoryStorage as the raft.Storage.
//   - One Ready loop per node that hands the committed entries to the node's
//     apply goroutine first, then, on the leader, sends its messages before
//     writing to disk (thesis §10.2.1), writes the entries and hard state,
//     appends them to MemoryStorage, sends a follower's messages only after
//     the write, and calls Advance. Of several MsgAppResp in one Ready only
//     the last is sent, as etcd does.
//   - On disk, one append-only file per node: each Ready's entries and hard
//     state as checksummed protobuf records in one write(2), then one
//     fdatasync when Ready.MustSync (etcd's WAL.Save). No preallocation.
//   - The transport is a buffered channel per node (4096 messages, the size
//     of etcd's rafthttp stream buffer; a full one drops, as etcd's does)
//     and a goroutine calling Node.Step; messages are passed without encoding.
//   - A proposer registers its request ID (the command's first 8 bytes),
//     calls Node.Propose on the leader and waits for the leader's apply
//     goroutine to see the entry (etcd's wait.Wait, with pooled channels).
type etcdCluster struct {
	peers  []*etcdPeer
	leader *etcdPeer
	syncs  atomic.Int64

	failOnce sync.Once
	failed   chan struct{} // closed when a node fails; failErr says why
	failErr  error

	closeOnce sync.Once
	closeErr  error
}

type etcdPeer struct {
	c       *etcdCluster
	id      uint64
	node    raft.Node
	storage *raft.MemoryStorage
	disk    *etcdDisk // nil in memory
	recvc   chan *pb.Message
	applyc  chan []*pb.Entry
	stopc   chan struct{}
	wg      sync.WaitGroup
	waits   waitRegistry
}

// etcdRecvQueue is the receive buffer of each node.
const etcdRecvQueue = 4096

// etcdLogger discards etcd-io/raft's logs (it panics through it on fatal
// errors regardless).
var etcdLogger = &raft.DefaultLogger{Logger: log.New(io.Discard, "", 0)}

func startEtcd(ctx context.Context, s spec) (cluster, error) {
	c := &etcdCluster{failed: make(chan struct{})}
	var peers []raft.Peer
	for i := 1; i <= s.nodes; i++ {
		peers = append(peers, raft.Peer{ID: uint64(i)})
	}
	for i := 1; i <= s.nodes; i++ {
		p := &etcdPeer{
			c:       c,
			id:      uint64(i),
			storage: raft.NewMemoryStorage(),
			recvc:   make(chan *pb.Message, etcdRecvQueue),
			applyc:  make(chan []*pb.Entry),
			stopc:   make(chan struct{}),
		}
		p.waits.init()
		if s.dir != "" {
			d, err := openEtcdDisk(filepath.Join(s.dir, fmt.Sprintf("node%d", i)), &c.syncs)
			if err != nil {
				c.close()
				return nil, err
			}
			p.disk = d
		}
		c.peers = append(c.peers, p)
	}
	for _, p := range c.peers {
		p.node = raft.StartNode(&raft.Config{
			ID:              p.id,
			ElectionTick:    10,
			HeartbeatTick:   1,
			Storage:         p.storage,
			MaxSizePerMsg:   1 << 20,
			MaxInflightMsgs: 4096 / 8,
			CheckQuorum:     true,
			PreVote:         true,
			Logger:          etcdLogger,
		}, peers)
		p.wg.Add(3)
		go p.run()
		go p.receive()
		go p.apply()
	}
	err := waitLeader(ctx, func() bool {
		for _, p := range c.peers {
			if p.node.Status().RaftState == raft.StateLeader {
				c.leader = p
				// Commit the leader's first entry before measuring anything.
				wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				return c.propose(wctx, make([]byte, 8)) == nil
			}
		}
		return false
	})
	if err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// run is the node's Ready loop.
func (p *etcdPeer) run() {
	defer p.wg.Done()
	defer close(p.applyc)
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	isLeader := false
	for {
		select {
		case <-ticker.C:
			p.node.Tick()
		case rd := <-p.node.Ready():
			if rd.SoftState != nil {
				isLeader = rd.RaftState == raft.StateLeader
			}
			if len(rd.CommittedEntries) > 0 {
				select {
				case p.applyc <- rd.CommittedEntries:
				case <-p.stopc:
					return
				}
			}
			if isLeader {
				p.c.send(rd.Messages)
			}
			if p.disk != nil {
				if err := p.disk.save(rd.HardState, rd.Entries, rd.MustSync); err != nil {
					p.c.fail(fmt.Errorf("node %d: %w", p.id, err))
					return
				}
			}
			if err := p.storage.Append(rd.Entries); err != nil {
				p.c.fail(fmt.Errorf("node %d: %w", p.id, err))
				return
			}
			if !isLeader {
				p.c.send(rd.Messages)
			}
			p.node.Advance()
		case <-p.stopc:
			return
		}
	}
}

// receive steps the messages other nodes sent to this one.
func (p *etcdPeer) receive() {
	defer p.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for {
		select {
		case m := <-p.recvc:
			if err := p.node.Step(ctx, m); errors.Is(err, raft.ErrStopped) {
				return
			}
		case <-p.stopc:
			return
		}
	}
}

// apply is the node's state machine: it does nothing but wake the
// proposers waiting for their entries, and apply configuration changes.
func (p *etcdPeer) apply() {
	defer p.wg.Done()
	for ents := range p.applyc {
		for _, e := range ents {
			switch e.GetType() {
			case pb.EntryNormal:
				if d := e.GetData(); len(d) >= 8 {
					p.waits.trigger(binary.LittleEndian.Uint64(d))
				}
			case pb.EntryConfChange:
				var cc pb.ConfChange
				if err := proto.Unmarshal(e.GetData(), &cc); err != nil {
					p.c.fail(fmt.Errorf("node %d: %w", p.id, err))
					return
				}
				p.node.ApplyConfChange(&cc)
			}
		}
	}
}

// send delivers msgs to their nodes' queues, dropping a message whose queue
// is full. Only the last MsgAppResp is sent: it supersedes the others.
func (c *etcdCluster) send(msgs []*pb.Message) {
	last := -1
	for i, m := range msgs {
		if m.GetType() == pb.MsgAppResp {
			last = i
		}
	}
	for i, m := range msgs {
		if m.GetType() == pb.MsgAppResp && i != last {
			continue
		}
		to := m.GetTo()
		if to == 0 || to > uint64(len(c.peers)) {
			continue
		}
		select {
		case c.peers[to-1].recvc <- m:
		default:
		}
	}
}

var waitChans = sync.Pool{New: func() any { return make(chan struct{}, 1) }}

func (c *etcdCluster) propose(ctx context.Context, cmd []byte) error {
	p := c.leader
	id := binary.LittleEndian.Uint64(cmd)
	ch := waitChans.Get().(chan struct{})
	p.waits.register(id, ch)
	if err := p.node.Propose(ctx, cmd); err != nil {
		p.waits.cancel(id) // ch may still be signalled: not reused
		return err
	}
	select {
	case <-ch:
		waitChans.Put(ch)
		return nil
	case <-ctx.Done():
		p.waits.cancel(id)
		return ctx.Err()
	case <-c.failed:
		return c.failErr
	}
}

func (c *etcdCluster) commitIndex() (uint64, error) {
	st := c.leader.node.Status()
	if st.RaftState != raft.StateLeader {
		return 0, fmt.Errorf("node %d is no longer the leader", st.ID)
	}
	return st.GetCommit(), nil
}

func (c *etcdCluster) fsyncs() int64 { return c.syncs.Load() }

func (c *etcdCluster) fail(err error) {
	c.failOnce.Do(func() {
		c.failErr = err
		close(c.failed)
	})
}

func (c *etcdCluster) close() error {
	c.closeOnce.Do(func() {
		var errs []error
		for _, p := range c.peers {
			if p.node != nil {
				close(p.stopc)
				p.node.Stop()
				p.wg.Wait()
			}
			if p.disk != nil {
				errs = append(errs, p.disk.f.Close())
			}
		}
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

// waitRegistry maps request IDs to the channels of the proposers waiting
// for them, in shards to spread the lock.
type waitRegistry struct {
	shards [64]struct {
		mu sync.Mutex
		m  map[uint64]chan struct{}
	}
}

func (w *waitRegistry) init() {
	for i := range w.shards {
		w.shards[i].m = map[uint64]chan struct{}{}
	}
}

func (w *waitRegistry) register(id uint64, ch chan struct{}) {
	s := &w.shards[id%uint64(len(w.shards))]
	s.mu.Lock()
	s.m[id] = ch
	s.mu.Unlock()
}

func (w *waitRegistry) cancel(id uint64) {
	s := &w.shards[id%uint64(len(w.shards))]
	s.mu.Lock()
	delete(s.m, id)
	s.mu.Unlock()
}

func (w *waitRegistry) trigger(id uint64) {
	s := &w.shards[id%uint64(len(w.shards))]
	s.mu.Lock()
	ch, ok := s.m[id]
	delete(s.m, id)
	s.mu.Unlock()
	if ok {
		ch <- struct{}{} // buffered, and each channel waits for one ID
	}
}

// etcdDisk is a node's durable log: an append-only file of records, each
// [length uint32][CRC-32C uint32][type byte][protobuf], written with one
// write(2) per Ready and made durable by fdatasync, as etcd's WAL does.
type etcdDisk struct {
	f     *os.File
	buf   []byte
	syncs *atomic.Int64
}

const (
	recEntry     byte = 1
	recHardState byte = 2
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func openEtcdDisk(dir string, syncs *atomic.Int64) (*etcdDisk, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, "wal"), os.O_WRONLY|os.O_CREATE|os.O_APPEND|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syncDir(dir); err != nil {
		f.Close()
		return nil, err
	}
	return &etcdDisk{f: f, syncs: syncs}, nil
}

// save writes one Ready's entries and hard state, and syncs them if the
// Ready says it must (new entries, or a new term or vote).
func (d *etcdDisk) save(hs *pb.HardState, ents []*pb.Entry, mustSync bool) error {
	d.buf = d.buf[:0]
	var err error
	for _, e := range ents {
		if d.buf, err = appendRecord(d.buf, recEntry, e); err != nil {
			return err
		}
	}
	if !raft.IsEmptyHardState(hs) {
		if d.buf, err = appendRecord(d.buf, recHardState, hs); err != nil {
			return err
		}
	}
	if len(d.buf) == 0 {
		return nil
	}
	if _, err := d.f.Write(d.buf); err != nil {
		return err
	}
	if !mustSync {
		return nil
	}
	d.syncs.Add(1)
	return fdatasync(d.f)
}

func appendRecord(buf []byte, typ byte, m proto.Message) ([]byte, error) {
	start := len(buf)
	buf = append(buf, 0, 0, 0, 0, 0, 0, 0, 0, typ)
	buf, err := proto.MarshalOptions{}.MarshalAppend(buf, m)
	if err != nil {
		return buf[:start], err
	}
	body := buf[start+8:]
	binary.LittleEndian.PutUint32(buf[start:], uint32(len(body)))
	binary.LittleEndian.PutUint32(buf[start+4:], crc32.Checksum(body, castagnoli))
	return buf, nil
}
