package kv

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCommand_RoundTrip(t *testing.T) {
	tests := []struct {
		name string
		cmd  Command
	}{
		{"get", Command{ClientID: 1, Seq: 1, Op: OpGet, Key: "k"}},
		{"put", Command{ClientID: 7, Seq: 300, Op: OpPut, Key: "k1", Value: "v"}},
		{"append", Command{ClientID: 2, Seq: 3, Op: OpAppend, Key: "x", Value: "yz"}},
		{"empty key and value", Command{Op: OpPut}},
		{"max ids", Command{ClientID: math.MaxUint64, Seq: math.MaxUint64, Op: OpAppend, Key: "k", Value: "v"}},
		{"get carries a value", Command{ClientID: 1, Seq: 2, Op: OpGet, Key: "k", Value: "ignored"}},
		{"binary strings", Command{ClientID: 1, Seq: 2, Op: OpPut, Key: "\x00\xff", Value: "\x80\x80"}},
		{"long value", Command{ClientID: 1, Seq: 2, Op: OpPut, Key: "k", Value: strings.Repeat("v", 1000)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.cmd.Encode()
			require.Len(t, b, tt.cmd.encodedLen(), "encodedLen")
			got, err := Decode(b)
			require.NoError(t, err)
			require.Equal(t, tt.cmd, got)
			prefix := []byte("prefix")
			require.Equal(t, append([]byte("prefix"), b...), tt.cmd.AppendEncode(prefix))
		})
	}
}

func TestCommand_EncodingIsCompact(t *testing.T) {
	// Op, ClientID, Seq, len(key), key, len(value), value: 8 bytes.
	b := Command{ClientID: 3, Seq: 9, Op: OpPut, Key: "k", Value: "vv"}.Encode()
	require.Equal(t, []byte{byte(OpPut), 3, 9, 1, 'k', 2, 'v', 'v'}, b)
}

func TestDecode_RejectsMalformed(t *testing.T) {
	valid := Command{ClientID: 1, Seq: 2, Op: OpPut, Key: "k", Value: "v"}.Encode()
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"nil", nil, "empty"},
		{"empty", []byte{}, "empty"},
		{"zero op", []byte{0, 1, 2, 1, 'k', 0}, "unknown op 0"},
		{"unknown op", []byte{9, 1, 2, 1, 'k', 0}, "unknown op 9"},
		{"op only", []byte{byte(OpGet)}, "client id: truncated varint"},
		{"truncated varint", []byte{byte(OpGet), 0x80}, "client id: truncated varint"},
		{"overflowing varint", append([]byte{byte(OpGet)}, bytes.Repeat([]byte{0xff}, 11)...), "overflows"},
		{"non-minimal varint", []byte{byte(OpGet), 0x81, 0x00, 2, 1, 'k', 0}, "client id: non-minimal"},
		{"missing seq", []byte{byte(OpGet), 1}, "seq: truncated"},
		{"missing key length", []byte{byte(OpGet), 1, 2}, "key length: truncated"},
		{"key past the end", []byte{byte(OpGet), 1, 2, 5, 'k'}, "key: length 5"},
		{"huge key length", append([]byte{byte(OpGet), 1, 2}, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), "exceeds"},
		{"missing value length", []byte{byte(OpGet), 1, 2, 1, 'k'}, "value length: truncated"},
		{"value past the end", []byte{byte(OpPut), 1, 2, 1, 'k', 3, 'v'}, "value: length 3"},
		{"trailing bytes", append(valid[:len(valid):len(valid)], 0), "1 trailing bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Decode(tt.data)
			require.ErrorIs(t, err, ErrMalformed)
			require.ErrorContains(t, err, tt.want)
			require.Zero(t, c)
		})
	}
}

func TestDecode_CopiesStrings(t *testing.T) {
	b := Command{ClientID: 1, Seq: 2, Op: OpPut, Key: "k", Value: "v"}.Encode()
	c, err := Decode(b)
	require.NoError(t, err)
	for i := range b {
		b[i] = 0
	}
	require.Equal(t, "k", c.Key)
	require.Equal(t, "v", c.Value)
}

func TestOp_String(t *testing.T) {
	require.Equal(t, "get", OpGet.String())
	require.Equal(t, "put", OpPut.String())
	require.Equal(t, "append", OpAppend.String())
	require.Equal(t, "Op(0)", Op(0).String())
	require.Equal(t, `c3#7 append("k1", "x")`, Command{ClientID: 3, Seq: 7, Op: OpAppend, Key: "k1", Value: "x"}.String())
	require.Equal(t, `c3#8 get("k1")`, Command{ClientID: 3, Seq: 8, Op: OpGet, Key: "k1"}.String())
}

// FuzzDecode: Decode never panics; what it accepts is the one encoding of
// the command it returns; what it rejects wraps ErrMalformed.
func FuzzDecode(f *testing.F) {
	for _, c := range []Command{
		{ClientID: 1, Seq: 1, Op: OpGet, Key: "k"},
		{ClientID: 300, Seq: 1 << 40, Op: OpPut, Key: "key", Value: "value"},
		{ClientID: math.MaxUint64, Seq: 0, Op: OpAppend, Key: "", Value: "\x00"},
	} {
		f.Add(c.Encode())
	}
	f.Add([]byte{})
	f.Add([]byte{byte(OpGet), 0x80, 0x00})
	f.Add([]byte{byte(OpPut), 1, 2, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Decode(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode(%x): error %v does not wrap ErrMalformed", data, err)
			}
			return
		}
		if got := c.Encode(); !bytes.Equal(got, data) {
			t.Fatalf("Decode(%x) = %v, which encodes as %x", data, c, got)
		}
	})
}

// FuzzRoundTrip: every command with a valid Op decodes from its encoding.
func FuzzRoundTrip(f *testing.F) {
	f.Add(uint64(1), uint64(2), uint8(OpPut), "k", "v")
	f.Add(uint64(math.MaxUint64), uint64(0), uint8(OpGet), "", "")
	f.Fuzz(func(t *testing.T, client, seq uint64, op uint8, key, value string) {
		c := Command{ClientID: client, Seq: seq, Op: Op(op%3 + 1), Key: key, Value: value}
		got, err := Decode(c.Encode())
		if err != nil || got != c {
			t.Fatalf("Decode(Encode(%v)) = %v, %v", c, got, err)
		}
	})
}
