package main

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/lightdht/lightdht/krpc"
)

// keygenCmd writes a new ed25519 key for mutable BEP 44 items.
func keygenCmd(c *cli) func(context.Context, []string) error {
	c.addJSON()
	return func(ctx context.Context, args []string) error {
		if err := nargs(args, 1, 1, "FILE"); err != nil {
			return err
		}
		priv, err := writeKey(args[0])
		if err != nil {
			return fmt.Errorf("keygen: %w", err)
		}
		pub := priv.Public().(ed25519.PublicKey)
		out := map[string]string{"file": args[0], "pubkey": hex.EncodeToString(pub)}
		return c.output(out, func(w io.Writer) {
			fmt.Fprintf(w, "wrote %s\npublic key %x\n", args[0], []byte(pub))
		})
	}
}

// readKey reads a key file written by keygen: the 32-byte seed in hex.
func readKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	seed, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, usagef("key file %s: want %d bytes of hex (as written by lightdht keygen)", path, ed25519.SeedSize)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// bencodeString returns s as a bencoded string.
func bencodeString(s string) []byte {
	return []byte(strconv.Itoa(len(s)) + ":" + s)
}

// friendly turns BEP 44 refusals into a sentence a user can act on.
func friendly(err error, seq int64) error {
	var kerr *krpc.Error
	if !errors.As(err, &kerr) {
		return err
	}
	switch kerr.Code {
	case krpc.CodeSeqTooLow:
		return fmt.Errorf("sequence number %d is not newer than the one stored (use a higher --seq, or none to take the next one): %w", seq, err)
	case krpc.CodeCASMismatch:
		return fmt.Errorf("compare-and-swap failed: the stored sequence number is not the --cas given: %w", err)
	case krpc.CodeBadSignature:
		return fmt.Errorf("the nodes refused the signature: %w", err)
	case krpc.CodeValueTooBig:
		return fmt.Errorf("the value is too large for BEP 44: %w", err)
	case krpc.CodeSaltTooBig:
		return fmt.Errorf("the salt is too long for BEP 44: %w", err)
	}
	return err
}

// bencodedString decodes v if it is one bencoded string.
func bencodedString(v []byte) (string, bool) {
	i := strings.IndexByte(string(v), ':')
	if i <= 0 {
		return "", false
	}
	n, err := strconv.Atoi(string(v[:i]))
	if err != nil || n != len(v)-i-1 {
		return "", false
	}
	return string(v[i+1:]), true
}
