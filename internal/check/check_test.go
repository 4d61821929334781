package check

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestAgreementAccepted(t *testing.T) {
	h := NewHistory(true)
	for _, c := range []string{"a", "b", "c"} {
		h.Proposed([]byte(c))
	}
	n1, n2 := h.Start(1), h.Start(2)
	require.NoError(t, n1.Apply(1, []byte("a")))
	require.NoError(t, n1.Apply(3, []byte("b"))) // index 2 was an internal entry
	require.NoError(t, n2.Apply(1, []byte("a")))
	require.NoError(t, n2.Apply(3, []byte("b")))
	require.NoError(t, n2.Apply(4, []byte("c")))
	require.NoError(t, h.Check())
	cmd, ok := n1.Applied(3)
	require.True(t, ok)
	require.Equal(t, "b", string(cmd))
	require.Equal(t, uint64(4), n2.Last())
}

func TestViolations(t *testing.T) {
	tests := []struct {
		name  string
		apply func(h *History)
		want  string
	}{
		{"different commands at one index", func(h *History) {
			h.Start(1).Apply(1, []byte("a"))
			h.Start(2).Apply(1, []byte("b"))
		}, "another node applied"},
		{"out of order", func(h *History) {
			n := h.Start(1)
			n.Apply(2, []byte("a"))
			n.Apply(1, []byte("b"))
		}, "out of order or twice"},
		{"twice", func(h *History) {
			n := h.Start(1)
			n.Apply(1, []byte("a"))
			n.Apply(1, []byte("a"))
		}, "out of order or twice"},
		{"never proposed", func(h *History) {
			h.Start(1).Apply(1, []byte("zzz"))
		}, "never proposed"},
		{"skipped a command", func(h *History) {
			h.Start(1).Apply(1, []byte("a"))
			n2 := h.Start(2)
			n2.Apply(2, []byte("b"))
		}, "skipped index 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHistory(true)
			h.Proposed([]byte("a"))
			h.Proposed([]byte("b"))
			tt.apply(h)
			err := h.Check()
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestRestartIsNewIncarnation(t *testing.T) {
	h := NewHistory(false)
	first := h.Start(1)
	require.NoError(t, first.Apply(1, []byte("a")))
	again := h.Start(1) // restarted: replays from the start
	require.Equal(t, 1, again.Gen)
	require.NoError(t, again.Apply(1, []byte("a")))
	require.NoError(t, h.Check())
}
