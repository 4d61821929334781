package sim

import (
	"fmt"
	"time"

	"github.com/raftkit/raft/internal/simcore"
)

// trace keeps the last events of a run, formatted only when asked for.
type trace struct {
	buf  []traceEntry
	next int
	full bool
}

type traceEntry struct {
	at     int64
	what   string
	node   uint64
	detail string
	msg    simcore.Msg
	isMsg  bool
	bytes  int // a snapshot chunk's size
}

func (t *trace) init(n int) { t.buf = make([]traceEntry, n) }

func (t *trace) put(e traceEntry) {
	t.buf[t.next] = e
	t.next++
	if t.next == len(t.buf) {
		t.next, t.full = 0, true
	}
}

func (t *trace) add(at int64, what string, node uint64, detail string) {
	t.put(traceEntry{at: at, what: what, node: node, detail: detail})
}

func (t *trace) addMsg(at int64, m simcore.Msg) {
	n := len(m.Data)
	m.Raw, m.Data = nil, nil // keep nothing alive
	t.put(traceEntry{at: at, msg: m, isMsg: true, bytes: n})
}

func (t *trace) lines() []string {
	var out []string
	emit := func(e traceEntry) {
		ts := time.Duration(e.at).String()
		if e.isMsg && (e.msg.Kind == simcore.KindSnap || e.msg.Kind == simcore.KindSnapResp) {
			m := e.msg
			out = append(out, fmt.Sprintf("%12s  %d->%d %s term=%d snapshot=%d/%d offset=%d bytes=%d done=%v reject=%v",
				ts, m.From, m.To, m.Kind, m.Term, m.Index, m.LogTerm, m.Offset, e.bytes, m.Done, m.Reject))
			return
		}
		if e.isMsg {
			m := e.msg
			out = append(out, fmt.Sprintf("%12s  %d->%d %s term=%d index=%d logterm=%d commit=%d entries=%d reject=%v",
				ts, m.From, m.To, m.Kind, m.Term, m.Index, m.LogTerm, m.Commit, m.Entries, m.Reject))
			return
		}
		out = append(out, fmt.Sprintf("%12s  [%d] %s %s", ts, e.node, e.what, e.detail))
	}
	if t.full {
		for _, e := range t.buf[t.next:] {
			emit(e)
		}
	}
	for _, e := range t.buf[:t.next] {
		emit(e)
	}
	return out
}
