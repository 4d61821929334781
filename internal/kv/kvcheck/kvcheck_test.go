package kvcheck

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/raftkit/raft/internal/kv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func get(key string) Input        { return Input{Op: kv.OpGet, Key: key} }
func put(key, value string) Input { return Input{Op: kv.OpPut, Key: key, Value: value} }
func app(key, value string) Input { return Input{Op: kv.OpAppend, Key: key, Value: value} }

// op is one operation of a hand-written history.
func op(client int, in Input, call int64, out string, ret int64) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: Output{Value: out}, Return: ret}
}

// unknown is an operation whose client gave up: as the Recorder makes it.
func unknown(client int, in Input, call int64) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: Output{Unknown: true}, Return: Infinity}
}

// checkIn runs Check with visualizations going to a fresh directory, and
// returns what it reported and the files it wrote.
func checkIn(t *testing.T, history []porcupine.Operation) (bool, error, []string) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv(DirEnv, dir)
	ok, err := Check(history, 10*time.Second)
	files, globErr := filepath.Glob(filepath.Join(dir, "*.html"))
	require.NoError(t, globErr)
	return ok, err, files
}

func TestCheck_Linearizable(t *testing.T) {
	tests := []struct {
		name    string
		history []porcupine.Operation
	}{
		{"empty", nil},
		{"sequential", []porcupine.Operation{
			op(0, put("x", "a"), 0, "", 10),
			op(0, app("x", "b"), 20, "a", 30),
			op(0, get("x"), 40, "ab", 50),
			op(0, get("y"), 60, "", 70),
		}},
		{"concurrent writes, read sees the later one", []porcupine.Operation{
			op(0, put("x", "a"), 0, "", 100),
			op(1, put("x", "b"), 10, "a", 90), // linearized after a
			op(2, get("x"), 110, "b", 120),
		}},
		{"read concurrent with a write sees either", []porcupine.Operation{
			op(0, put("x", "a"), 0, "", 10),
			op(1, put("x", "b"), 20, "a", 60),
			op(2, get("x"), 30, "a", 40),
			op(3, get("x"), 50, "b", 70),
		}},
		{"closed intervals touch", []porcupine.Operation{
			op(0, put("x", "a"), 0, "", 10),
			op(1, get("x"), 10, "", 20), // concurrent with the put at 10
		}},
		{"keys are independent", []porcupine.Operation{
			op(0, put("x", "a"), 0, "", 10),
			op(1, put("y", "b"), 0, "", 10),
			op(0, app("x", "c"), 20, "a", 30),
			op(1, get("y"), 20, "b", 30),
			op(2, get("x"), 40, "ac", 50),
		}},
		{"unknown write may take effect", []porcupine.Operation{
			op(0, put("x", "a"), 0, "", 10),
			unknown(1, app("x", "b"), 20),
			op(2, get("x"), 100, "ab", 110),
			op(2, get("x"), 120, "ab", 130),
		}},
		{"unknown write may never take effect", []porcupine.Operation{
			op(0, put("x", "a"), 0, "", 10),
			unknown(1, put("x", "b"), 20),
			op(2, get("x"), 100, "a", 110),
		}},
		{"unknown write may take effect late", []porcupine.Operation{
			unknown(1, put("x", "b"), 0),
			op(0, get("x"), 10, "", 20),
			op(0, put("x", "a"), 30, "", 40),
			op(2, get("x"), 50, "b", 60),
		}},
		{"unknown read matches anything", []porcupine.Operation{
			op(0, put("x", "a"), 0, "", 10),
			unknown(1, get("x"), 20),
			op(2, get("x"), 100, "a", 110),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, err, files := checkIn(t, tt.history)
			require.NoError(t, err)
			require.True(t, ok)
			require.Empty(t, files, "a visualization was written for a linearizable history")
		})
	}
}

func TestCheck_NotLinearizable(t *testing.T) {
	tests := []struct {
		name    string
		history []porcupine.Operation
	}{
		{"stale read after a completed put", []porcupine.Operation{
			op(0, put("x", "a"), 0, "", 10),
			op(0, put("x", "b"), 20, "a", 30),
			op(1, get("x"), 40, "a", 50),
		}},
		{"read of a value never written", []porcupine.Operation{
			op(0, put("x", "a"), 0, "", 10),
			op(1, get("x"), 20, "z", 30),
		}},
		{"lost append", []porcupine.Operation{
			op(0, app("x", "a"), 0, "", 10),
			op(1, app("x", "b"), 0, "", 10), // both saw "": one was lost
			op(2, get("x"), 20, "ab", 30),
		}},
		{"write reports a wrong previous value", []porcupine.Operation{
			op(0, put("x", "a"), 0, "", 10),
			op(1, put("x", "b"), 20, "", 30),
		}},
		{"read goes back in time across an unknown write", []porcupine.Operation{
			op(0, put("x", "a"), 0, "", 10),
			unknown(1, put("x", "b"), 20),
			op(2, get("x"), 30, "b", 40),
			op(2, get("x"), 50, "a", 60),
		}},
		{"one bad key among good ones", []porcupine.Operation{
			op(0, put("y", "1"), 0, "", 10),
			op(1, get("y"), 20, "1", 30),
			op(0, put("x", "a"), 0, "", 10),
			op(1, get("x"), 20, "", 30),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, err, files := checkIn(t, tt.history)
			require.False(t, ok)
			t.Log(err)
			require.ErrorContains(t, err, "is not linearizable")
			require.Len(t, files, 1)
			require.ErrorContains(t, err, files[0], "the error names the visualization")
			html, readErr := os.ReadFile(files[0])
			require.NoError(t, readErr)
			require.True(t, strings.Contains(string(html), "<html"), "not an HTML file")
			require.True(t, strings.Contains(string(html), `(\"x\"`), "the visualization does not describe the operations")
		})
	}
}

// TestCheck_VisualizationDefaultsToTempDir: with RAFT_PORCUPINE_DIR unset,
// the visualization goes to os.TempDir().
func TestCheck_VisualizationDefaultsToTempDir(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(DirEnv, "")
	t.Setenv("TMPDIR", dir)
	ok, err := Check([]porcupine.Operation{
		op(0, put("x", "a"), 0, "", 10),
		op(1, get("x"), 20, "", 30),
	}, 0)
	require.False(t, ok)
	files, _ := filepath.Glob(filepath.Join(dir, "kvcheck-*.html"))
	require.Len(t, files, 1)
	require.ErrorContains(t, err, files[0])
}

func TestModel_PartitionEvent(t *testing.T) {
	ev := func(kind porcupine.EventKind, id int, v any) porcupine.Event {
		return porcupine.Event{Kind: kind, Id: id, Value: v}
	}
	good := []porcupine.Event{
		ev(porcupine.CallEvent, 0, put("x", "a")),
		ev(porcupine.CallEvent, 1, put("y", "b")),
		ev(porcupine.ReturnEvent, 0, Output{}),
		ev(porcupine.ReturnEvent, 1, Output{}),
		ev(porcupine.CallEvent, 2, get("x")),
		ev(porcupine.CallEvent, 3, get("y")),
		ev(porcupine.ReturnEvent, 3, Output{Value: "b"}),
		ev(porcupine.ReturnEvent, 2, Output{Value: "a"}),
	}
	require.Len(t, Model().PartitionEvent(good), 2)
	require.True(t, porcupine.CheckEvents(Model(), good))
	bad := append([]porcupine.Event(nil), good...)
	bad[7] = ev(porcupine.ReturnEvent, 2, Output{Value: "b"}) // x read y's value
	require.False(t, porcupine.CheckEvents(Model(), bad))
}

func TestInputOf(t *testing.T) {
	require.Equal(t, app("k", "v"), InputOf(kv.Command{ClientID: 1, Seq: 2, Op: kv.OpAppend, Key: "k", Value: "v"}))
}

func TestModel_Describe(t *testing.T) {
	m := Model()
	require.Equal(t, `get("k") -> "v"`, m.DescribeOperation(get("k"), Output{Value: "v"}))
	require.Equal(t, `append("k", "x") -> unknown`, m.DescribeOperation(app("k", "x"), Output{Unknown: true}))
	long := strings.Repeat("a", 30) + "END"
	require.Equal(t, `…"aaaaaaaaaaaaaaaaaaaaaEND" (33 bytes)`, m.DescribeState(long))
}

func TestRecorder_ConcurrentClients(t *testing.T) {
	var r Recorder
	var wg sync.WaitGroup
	for c := range 8 {
		wg.Add(1)
		go func() { // owner: the test; exits after its operations
			defer wg.Done()
			for i := range 50 {
				key := fmt.Sprintf("k%d", c)
				t0 := int64(c*1000 + i*10)
				id := r.Call(c, app(key, "x"), t0)
				if i == 49 {
					r.Note(id, "abandoned")
					continue // never returned: unknown outcome
				}
				r.Note(id, fmt.Sprintf("node %d", c))
				r.Return(id, Output{Value: strings.Repeat("x", i)}, t0+5)
			}
		}()
	}
	wg.Wait()
	total, returned := r.Counts()
	require.Equal(t, 400, total)
	require.Equal(t, 392, returned)
	ops := r.Operations()
	require.Len(t, ops, 400)
	var unknowns int
	for i, o := range ops {
		if i > 0 {
			require.LessOrEqual(t, ops[i-1].Call, o.Call, "Operations is in Call order")
		}
		if o.Output.(Output).Unknown {
			unknowns++
			require.Equal(t, Infinity, o.Return)
			require.Equal(t, "abandoned", o.Metadata)
		} else {
			require.Equal(t, o.Call+5, o.Return)
			require.Equal(t, fmt.Sprintf("node %d", o.ClientId), o.Metadata)
		}
	}
	require.Equal(t, 8, unknowns)
	ok, err, _ := checkIn(t, ops)
	require.NoError(t, err)
	require.True(t, ok)
}

func TestRecorder_Misuse(t *testing.T) {
	r := NewRecorder()
	id := r.Call(0, get("k"), 10)
	require.Panics(t, func() { r.Return(id, Output{}, 9) }, "return before call")
	require.Panics(t, func() { r.Return(id, Output{Unknown: true}, 20) }, "unknown by Return")
	require.Panics(t, func() { r.Return(id+1, Output{}, 20) }, "no such operation")
	require.Panics(t, func() { r.Call(0, get("k"), Infinity) }, "call at infinity")
	r.Return(id, Output{}, 10)
	require.Panics(t, func() { r.Return(id, Output{}, 20) }, "returned twice")
}
