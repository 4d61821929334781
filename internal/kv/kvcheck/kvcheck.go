// Package kvcheck judges histories of client operations on the kv store
// with the porcupine linearizability checker: the sequential model of the
// store, a Recorder that collects a history from concurrent clients (with
// wall-clock or virtual timestamps), and Check, which writes porcupine's
// HTML visualization of any history it cannot linearize.
//
// An operation whose outcome the client never learned (it timed out and
// gave up, or was still waiting when the history ended) may have taken
// effect at any time after its call, or never. Following porcupine's own
// models (its etcd test gives such operations an "unknown" output and a
// return after every other event), the Recorder gives it Return = Infinity
// and an Output with Unknown set, which the model accepts in any state: a
// write may then be linearized anywhere after its call (and last, which is
// the same as never), a read constrains nothing.
package kvcheck

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/raftkit/raft/internal/kv"
)

// Infinity is the Return time the Recorder gives an operation whose
// outcome is unknown: later than any real timestamp.
const Infinity int64 = math.MaxInt64

// Input is an operation as called: the Input of a porcupine.Operation.
type Input struct {
	Op    kv.Op
	Key   string
	Value string // for Put and Append
}

// InputOf returns the Input of the operation that c carries.
func InputOf(c kv.Command) Input { return Input{Op: c.Op, Key: c.Key, Value: c.Value} }

// Output is what an operation returned: the Output of a
// porcupine.Operation.
type Output struct {
	// Value is kv.Result.Value: the key's value before the operation.
	Value string
	// Unknown is set when the outcome is unknown (see the package
	// documentation); Value is then meaningless.
	Unknown bool
}

// Model returns the porcupine model of the kv store, partitioned by key:
// each key is an independent register whose state is its value ("" when
// never written). Every operation returns the value before it; Put sets
// the value, Append extends it, Get leaves it. An Unknown output matches
// any value.
func Model() porcupine.Model {
	return porcupine.Model{
		Partition:      partition,
		PartitionEvent: partitionEvent,
		Init:           func() any { return "" },
		Step:           step,
		Hash: func(state any) uint64 {
			h := fnv.New64a()
			h.Write([]byte(state.(string)))
			return h.Sum64()
		},
		DescribeOperation: describeOperation,
		DescribeState:     func(state any) string { return abbrev(state.(string)) },
	}
}

func step(state, input, output any) (bool, any) {
	st, in, out := state.(string), input.(Input), output.(Output)
	if !out.Unknown && out.Value != st {
		return false, st
	}
	switch in.Op {
	case kv.OpGet:
		return true, st
	case kv.OpPut:
		return true, in.Value
	case kv.OpAppend:
		return true, st + in.Value
	}
	return false, st
}

func partition(history []porcupine.Operation) [][]porcupine.Operation {
	byKey := map[string][]porcupine.Operation{}
	for _, op := range history {
		k := op.Input.(Input).Key
		byKey[k] = append(byKey[k], op)
	}
	out := make([][]porcupine.Operation, 0, len(byKey))
	for _, k := range sortedKeys(byKey) {
		out = append(out, byKey[k])
	}
	return out
}

func partitionEvent(history []porcupine.Event) [][]porcupine.Event {
	byKey := map[string][]porcupine.Event{}
	keyOf := map[int]string{} // event Id -> key, from its call
	for _, ev := range history {
		if ev.Kind == porcupine.CallEvent {
			keyOf[ev.Id] = ev.Value.(Input).Key
		}
		k := keyOf[ev.Id]
		byKey[k] = append(byKey[k], ev)
	}
	out := make([][]porcupine.Event, 0, len(byKey))
	for _, k := range sortedKeys(byKey) {
		out = append(out, byKey[k])
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func describeOperation(input, output any) string {
	in, out := input.(Input), output.(Output)
	ret := abbrev(out.Value)
	if out.Unknown {
		ret = "unknown"
	}
	if in.Op == kv.OpGet {
		return fmt.Sprintf("get(%q) -> %s", in.Key, ret)
	}
	return fmt.Sprintf("%v(%q, %s) -> %s", in.Op, in.Key, abbrev(in.Value), ret)
}

// abbrev quotes s, keeping only its tail when long: appended values grow,
// and their last parts tell them apart.
func abbrev(s string) string {
	const keep = 24
	if len(s) <= keep {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("…%q (%d bytes)", s[len(s)-keep:], len(s))
}

// OpID names an operation in a Recorder.
type OpID int

// Recorder collects a history from concurrent clients. Its methods are safe
// for concurrent use. The zero Recorder is empty and ready to use.
//
// Timestamps are int64 in any unit, the same for all operations, and must
// be below Infinity; the runtime tests pass time.Since(start).Nanoseconds(),
// the simulator its virtual nanoseconds. A client records an operation's
// Call before it first sends it anywhere and its Return after it has the
// result, so that the interval covers every point where it may take
// effect.
type Recorder struct {
	mu  sync.Mutex
	ops []recorded
}

type recorded struct {
	op       porcupine.Operation
	returned bool
	notes    []string
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{} }

// Call records that client called in at time call, and returns the
// operation's ID for Return, Note or nothing: an operation never returned
// has an unknown outcome. client is porcupine's ClientId (zero-based; the
// visualization draws one line per client): give a client that abandoned
// an operation a new one, so its lines never overlap.
func (r *Recorder) Call(client int, in Input, call int64) OpID {
	if call < 0 || call >= Infinity {
		panic(fmt.Sprintf("kvcheck: Call at %d: timestamps must be in [0, Infinity)", call))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, recorded{op: porcupine.Operation{ClientId: client, Input: in, Call: call}})
	return OpID(len(r.ops) - 1)
}

// Return records that operation id returned out at time ret. It panics if
// id is unknown or returned already, if ret is before the call, or if
// out.Unknown is set (leave an operation whose outcome is unknown
// unreturned instead).
func (r *Recorder) Return(id OpID, out Output, ret int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	op := r.get(id)
	switch {
	case op.returned:
		panic(fmt.Sprintf("kvcheck: operation %d returned twice", id))
	case out.Unknown:
		panic(fmt.Sprintf("kvcheck: operation %d: an unknown outcome is recorded by not returning", id))
	case ret < op.op.Call || ret >= Infinity:
		panic(fmt.Sprintf("kvcheck: operation %d returns at %d, called at %d", id, ret, op.op.Call))
	}
	op.op.Output, op.op.Return, op.returned = out, ret, true
}

// Note attaches a remark to operation id (which node served it, at which
// log index) that the visualization shows with it.
func (r *Recorder) Note(id OpID, note string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	op := r.get(id)
	op.notes = append(op.notes, note)
}

func (r *Recorder) get(id OpID) *recorded {
	if id < 0 || int(id) >= len(r.ops) {
		panic(fmt.Sprintf("kvcheck: no operation %d", id))
	}
	return &r.ops[id]
}

// Operations returns the history recorded so far, in Call order, as a new
// slice. An operation not returned has an unknown outcome: Output{Unknown:
// true} and Return = Infinity.
func (r *Recorder) Operations() []porcupine.Operation {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]porcupine.Operation, len(r.ops))
	for i, rec := range r.ops {
		op := rec.op
		if !rec.returned {
			op.Output, op.Return = Output{Unknown: true}, Infinity
		}
		if len(rec.notes) > 0 {
			op.Metadata = strings.Join(rec.notes, "; ")
		}
		out[i] = op
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Call < out[j].Call })
	return out
}

// Counts returns how many operations were recorded, and how many of them
// have a known outcome.
func (r *Recorder) Counts() (total, returned int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.ops {
		if rec.returned {
			returned++
		}
	}
	return len(r.ops), returned
}

// DirEnv names the environment variable that says where Check writes
// visualizations; unset, they go to os.TempDir().
const DirEnv = "RAFT_PORCUPINE_DIR"

// Check reports whether history is linearizable with respect to Model,
// giving porcupine at most timeout (0: no limit). If it is not, or if the
// check times out (porcupine's Unknown, a failure to investigate, not a
// pass), Check writes porcupine's visualization of the history to an HTML
// file in $RAFT_PORCUPINE_DIR (created if need be) or os.TempDir(), and
// returns false and an error naming the file.
func Check(history []porcupine.Operation, timeout time.Duration) (ok bool, err error) {
	model := Model()
	res, info := porcupine.CheckOperationsVerbose(model, history, timeout)
	if res == porcupine.Ok {
		return true, nil
	}
	what := "is not linearizable"
	if res == porcupine.Unknown {
		what = fmt.Sprintf("could not be checked within %v (porcupine returned Unknown)", timeout)
	}
	err = fmt.Errorf("kvcheck: the history of %d operations on %d key(s) %s", len(history), len(partition(history)), what)
	path, verr := visualize(model, info)
	if verr != nil {
		return false, errors.Join(err, fmt.Errorf("kvcheck: write visualization: %w", verr))
	}
	return false, fmt.Errorf("%w; visualization: %s", err, path)
}

func visualize(model porcupine.Model, info porcupine.LinearizationInfo) (string, error) {
	dir := os.Getenv(DirEnv)
	if dir == "" {
		dir = os.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, "kvcheck-*.html")
	if err != nil {
		return "", err
	}
	path := f.Name()
	if err := f.Close(); err != nil {
		return "", err
	}
	return path, porcupine.VisualizePath(model, info, path)
}
