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

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/bep44"
	"github.com/lightdht/lightdht/krpc"
)

// keygenCmd writes a new ed25519 key for mutable BEP 44 items.
func keygenCmd(c *cli) func(context.Context, []string) error {
	c.addJSON()
	return func(ctx context.Context, args []string) error {
		if err := nargs(args, 1, 1, "FILE"); err != nil {
			return err
		}
		pub, priv, err := ed25519.GenerateKey(nil)
		if err != nil {
			return err
		}
		// O_EXCL: never overwrite a key someone's items depend on.
		f, err := os.OpenFile(args[0], os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("keygen: %w", err)
		}
		if _, err := fmt.Fprintln(f, hex.EncodeToString(priv.Seed())); err != nil {
			f.Close()
			return fmt.Errorf("keygen: %w", err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("keygen: %w", err)
		}
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

type putResult struct {
	Target   string     `json:"target"`
	Mutable  bool       `json:"mutable"`
	Seq      *int64     `json:"seq,omitempty"`
	StoredAt []nodeJSON `json:"stored_at"`
	Refused  int        `json:"refused"`
}

func putCmd(c *cli) func(context.Context, []string) error {
	nf, timeout := c.iterFlags()
	keyFile := c.fs.String("key", "", "ed25519 key file from keygen: store a mutable item")
	salt := c.fs.String("salt", "", "salt of a mutable item (at most 64 bytes)")
	seqFlag := c.optIntFlag("seq", "sequence `number` of a mutable item (default: one more than the stored one, or 1)")
	casFlag := c.optIntFlag("cas", "store only if the stored sequence number is this `number` (compare-and-swap; default: unconditionally)")
	return func(ctx context.Context, args []string) error {
		if err := nargs(args, 1, 1, "VALUE"); err != nil {
			return err
		}
		item := bep44.Item{V: bencodeString(args[0])}
		if len(item.V) > bep44.MaxValueLen {
			return usagef("value of %d bytes bencoded is over BEP 44's %d-byte limit", len(item.V), bep44.MaxValueLen)
		}
		var priv ed25519.PrivateKey
		if *keyFile != "" {
			var err error
			if priv, err = readKey(*keyFile); err != nil {
				return err
			}
			if len(*salt) > bep44.MaxSaltLen {
				return usagef("salt of %d bytes is over BEP 44's %d-byte limit", len(*salt), bep44.MaxSaltLen)
			}
			item.Mutable, item.K, item.Salt = true, [32]byte(priv.Public().(ed25519.PublicKey)), []byte(*salt)
		} else if c.isSet("salt") || c.isSet("seq") || c.isSet("cas") {
			return usagef("--salt, --seq and --cas need --key (they apply to mutable items)")
		}
		var cas *int64
		if c.isSet("cas") {
			cas = &casFlag.v
		}
		return c.withTempNode(ctx, nf, *timeout, func(ctx context.Context, n *lightdht.Node) error {
			if item.Mutable {
				item.Seq = seqFlag.v
				if !c.isSet("seq") {
					item.Seq = 1
					if cur, err := n.GetMutable(ctx, item.K, item.Salt); err == nil {
						item.Seq = cur.Item.Seq + 1
					} else if !errors.Is(err, bep44.ErrNotFound) {
						return fmt.Errorf("put: reading the current sequence number: %w", err)
					}
				} else if item.Seq < 0 {
					return usagef("--seq must not be negative")
				}
				item.Sig = bep44.Sign(priv, item.Salt, item.Seq, item.V)
			}
			r, err := n.Put(ctx, item, cas)
			if err != nil {
				return fmt.Errorf("put %v: %w", item.Target(), friendly(firstRefusal(r, err), item.Seq))
			}
			out := putResult{Target: r.Target.String(), Mutable: item.Mutable, StoredAt: nodesJSON(r.StoredAt), Refused: len(r.Refused)}
			if item.Mutable {
				out.Seq = &item.Seq
			}
			return c.output(out, func(w io.Writer) {
				fmt.Fprintf(w, "target %s\n", out.Target)
				if out.Seq != nil {
					fmt.Fprintf(w, "seq %d\n", *out.Seq)
				}
				fmt.Fprintf(w, "stored at %d nodes (%d refused); items live 2 hours unless put again\n", len(out.StoredAt), out.Refused)
			})
		})
	}
}

// firstRefusal returns one node's refusal when every node refused, so that
// its KRPC code can be explained; otherwise err.
func firstRefusal(r lightdht.PutResult, err error) error {
	for _, e := range r.Refused {
		return e
	}
	return err
}

type getResult struct {
	Target  string `json:"target"`
	Mutable bool   `json:"mutable"`
	Seq     *int64 `json:"seq,omitempty"`
	Value   string `json:"value,omitempty"` // when the item is a bencoded string
	Raw     string `json:"raw"`             // the bencoded value
}

func getCmd(c *cli) func(context.Context, []string) error {
	nf, timeout := c.iterFlags()
	pubFlag := c.fs.String("pubkey", "", "public key (hex) of a mutable item")
	salt := c.fs.String("salt", "", "salt of a mutable item")
	return func(ctx context.Context, args []string) error {
		var target krpc.ID
		var k [32]byte
		mutable := *pubFlag != ""
		if mutable {
			if err := nargs(args, 0, 0, ""); err != nil {
				return err
			}
			b, err := hex.DecodeString(*pubFlag)
			if err != nil || len(b) != 32 {
				return usagef("bad --pubkey %q: want 64 hex digits", *pubFlag)
			}
			k = [32]byte(b)
		} else {
			if err := nargs(args, 1, 1, "TARGET"); err != nil {
				return err
			}
			var err error
			if target, err = parseID("target", args[0]); err != nil {
				return err
			}
		}
		return c.withTempNode(ctx, nf, *timeout, func(ctx context.Context, n *lightdht.Node) error {
			var (
				r   lightdht.GetItemResult
				err error
			)
			if mutable {
				r, err = n.GetMutable(ctx, k, []byte(*salt))
			} else {
				r, err = n.Get(ctx, target)
			}
			if err != nil {
				return fmt.Errorf("get: %w", err)
			}
			out := getResult{Target: r.Item.Target().String(), Mutable: r.Item.Mutable, Raw: string(r.Item.V)}
			if r.Item.Mutable {
				out.Seq = &r.Item.Seq
			}
			if s, ok := bencodedString(r.Item.V); ok {
				out.Value = s
			}
			return c.output(out, func(w io.Writer) {
				if out.Seq != nil {
					fmt.Fprintf(w, "seq %d\n", *out.Seq)
				}
				if s, ok := bencodedString(r.Item.V); ok {
					fmt.Fprintln(w, s)
				} else {
					fmt.Fprintf(w, "(bencoded) %s\n", out.Raw)
				}
			})
		})
	}
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
