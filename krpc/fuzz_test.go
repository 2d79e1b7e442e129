package krpc

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzUnmarshal feeds arbitrary packets to the decoder. It must never
// panic; every failure must be a *DecodeError; and whatever decodes must
// encode, and that encoding must be a fixed point of decode-then-encode.
// (The first encoding may differ from the input: unknown keys are dropped,
// and a BEP 51 reply always carries interval, num and samples together.)
func FuzzUnmarshal(f *testing.F) {
	for _, tc := range goldenCases {
		f.Add([]byte(tc.wire))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		Limits{}.peekTID(data) // must not panic either (Transport.handleReply)
		var m Msg
		err := Unmarshal(data, &m)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		first, err := m.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded message does not encode: %v\ninput %q", err, data)
		}
		var m2 Msg
		if err := Unmarshal(first, &m2); err != nil {
			t.Fatalf("re-decoding our own encoding: %v\n%q", err, first)
		}
		second, err := m2.MarshalBinary()
		if err != nil || !bytes.Equal(first, second) {
			t.Fatalf("encoding is not stable (err %v)\nfirst  %q\nsecond %q", err, first, second)
		}
	})
}
