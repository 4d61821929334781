package rafttest

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// NewLogger returns a logger that writes records at level or above to t.Log,
// without timestamps, so that two runs of the same seed log the same text.
// Pass it as Options.Logger to see what the nodes did in a failing test.
func NewLogger(t testing.TB, level slog.Level) *slog.Logger {
	return slog.New(&tHandler{t: t, level: level, mu: &sync.Mutex{}})
}

type tHandler struct {
	t     testing.TB
	level slog.Level
	attrs string
	mu    *sync.Mutex
}

func (h *tHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *tHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String())
	b.WriteByte(' ')
	b.WriteString(r.Message)
	b.WriteString(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	h.t.Log(b.String())
	return nil
}

func (h *tHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	h2 := *h
	var b strings.Builder
	b.WriteString(h.attrs)
	for _, a := range attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	h2.attrs = b.String()
	return &h2
}

func (h *tHandler) WithGroup(name string) slog.Handler { return h }
