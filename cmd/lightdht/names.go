package main

// Names: BEP 44 mutable items as a key-value store. A name is the salt of
// a mutable item under the user's own key pair, so that the target is
// SHA-1(public key + name): only the key's owner can change the value,
// and anyone with the public key can read it. Immutable items (put VALUE,
// get TARGET) go through the same functions.

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/bep44"
	"github.com/lightdht/lightdht/krpc"
)

// itemLifetime is how long nodes keep an item after its last put (BEP 44
// recommends at least 2 hours; lightdht's store keeps them that long).
const itemLifetime = "2 hours"

// defaultKeyPath is the key file of names when --key is not given:
// lightdht/key in the user's configuration directory, or "" when there is
// none.
func defaultKeyPath() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "lightdht", "key")
}

// keyPathOr returns path, or the default key path when path is empty.
func keyPathOr(path string) (string, error) {
	if path != "" {
		return path, nil
	}
	if p := defaultKeyPath(); p != "" {
		return p, nil
	}
	return "", usagef("no configuration directory for the default key file ($HOME or $XDG_CONFIG_HOME unset): give --key FILE")
}

// writeKey writes a new key to path with mode 0600, never over an
// existing file: someone's names may depend on it.
func writeKey(path string) (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if _, err := fmt.Fprintln(f, hex.EncodeToString(priv.Seed())); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return nil, err
	}
	return priv, nil
}

// openKey reads the key file at path. When there is none and create is
// set, it creates one (its directory with mode 0700) and says so on w,
// with the public key others need to read the user's names.
func openKey(path string, create bool, w io.Writer) (ed25519.PrivateKey, error) {
	priv, err := readKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return priv, err
	}
	if !create {
		return nil, fmt.Errorf("no key file at %s (a put of a name creates one; or give --key FILE, or --pubkey HEX to read another's)", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	priv, err = writeKey(path)
	if errors.Is(err, fs.ErrExist) {
		return readKey(path) // another process made it first
	}
	if err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	fmt.Fprintf(w, "created a new key pair in %s (mode 0600): keep it, only it can change your names; others read them with --pubkey %x\n",
		path, []byte(priv.Public().(ed25519.PublicKey)))
	return priv, nil
}

// checkName refuses a name that cannot be a BEP 44 salt.
func checkName(name string) error {
	switch {
	case name == "":
		return usagef("empty name")
	case len(name) > bep44.MaxSaltLen:
		return usagef("name of %d bytes is over BEP 44's %d-byte limit (a name is the item's salt)", len(name), bep44.MaxSaltLen)
	}
	return nil
}

// checkValue returns value bencoded, or an error if it is over BEP 44's
// limit.
func checkValue(value string) ([]byte, error) {
	v := bencodeString(value)
	if len(v) > bep44.MaxValueLen {
		return nil, usagef("value of %d bytes bencoded is over BEP 44's %d-byte limit", len(v), bep44.MaxValueLen)
	}
	return v, nil
}

// putReq is one put: immutable when priv is nil.
type putReq struct {
	v    []byte             // the bencoded value
	priv ed25519.PrivateKey // signs a mutable item
	salt []byte
	name string // the name the salt comes from, for the output
	seq  *int64 // nil: one more than the stored seq, or 1
	cas  *int64 // nil: unconditionally
}

type putResult struct {
	Target   string     `json:"target"`
	Mutable  bool       `json:"mutable"`
	Name     string     `json:"name,omitempty"`
	Pubkey   string     `json:"pubkey,omitempty"`
	Seq      *int64     `json:"seq,omitempty"`
	StoredAt []nodeJSON `json:"stored_at"`
	Refused  int        `json:"refused"`
}

// putItem signs (for a mutable item, at the next sequence number unless
// one is given) and stores the item.
func putItem(ctx context.Context, n *lightdht.Node, req putReq) (putResult, error) {
	item := bep44.Item{V: req.v}
	if req.priv != nil {
		item.Mutable, item.K, item.Salt = true, [32]byte(req.priv.Public().(ed25519.PublicKey)), req.salt
		if req.seq != nil {
			if *req.seq < 0 {
				return putResult{}, usagef("--seq must not be negative")
			}
			item.Seq = *req.seq
		} else {
			item.Seq = 1
			if cur, err := n.GetMutable(ctx, item.K, item.Salt); err == nil {
				item.Seq = cur.Item.Seq + 1
			} else if !errors.Is(err, bep44.ErrNotFound) {
				return putResult{}, fmt.Errorf("reading the current sequence number: %w", err)
			}
		}
		item.Sig = bep44.Sign(req.priv, item.Salt, item.Seq, item.V)
	}
	r, err := n.Put(ctx, item, req.cas)
	if err != nil {
		what := item.Target().String()
		if req.name != "" {
			what = fmt.Sprintf("%q", req.name)
		}
		return putResult{}, fmt.Errorf("put %s: %w", what, friendly(firstRefusal(r, err), item.Seq))
	}
	out := putResult{Target: r.Target.String(), Mutable: item.Mutable, Name: req.name, StoredAt: nodesJSON(r.StoredAt), Refused: len(r.Refused)}
	if item.Mutable {
		out.Seq, out.Pubkey = &item.Seq, hex.EncodeToString(item.K[:])
	}
	return out, nil
}

func printPut(w io.Writer, out putResult) {
	if out.Name != "" {
		fmt.Fprintf(w, "put %q seq %d: stored at %d nodes (%d refused); target %s\n", out.Name, *out.Seq, len(out.StoredAt), out.Refused, out.Target)
		fmt.Fprintf(w, "items expire %s after the last put unless put again\n", itemLifetime)
		return
	}
	fmt.Fprintf(w, "target %s\n", out.Target)
	if out.Seq != nil {
		fmt.Fprintf(w, "seq %d\n", *out.Seq)
	}
	fmt.Fprintf(w, "stored at %d nodes (%d refused); items live %s unless put again\n", len(out.StoredAt), out.Refused, itemLifetime)
}

// firstRefusal returns one node's refusal when every node refused, so that
// its KRPC code can be explained; otherwise err.
func firstRefusal(r lightdht.PutResult, err error) error {
	for _, e := range r.Refused {
		return e
	}
	return err
}

// deleteName stores an empty value under name at the next sequence
// number: BEP 44 has no delete, so the best an owner can do is replace
// the value, and let every copy expire.
func deleteName(ctx context.Context, n *lightdht.Node, priv ed25519.PrivateKey, name string) (putResult, error) {
	k := [32]byte(priv.Public().(ed25519.PublicKey))
	if _, err := n.GetMutable(ctx, k, []byte(name)); errors.Is(err, bep44.ErrNotFound) {
		return putResult{}, fmt.Errorf("delete %q: no item of that name under your key was found: nothing to delete", name)
	} else if err != nil {
		return putResult{}, fmt.Errorf("delete %q: %w", name, err)
	}
	return putItem(ctx, n, putReq{v: bencodeString(""), priv: priv, salt: []byte(name), name: name})
}

func printDelete(w io.Writer, out putResult) {
	fmt.Fprintf(w, "BEP 44 has no delete: %q now holds an empty value (seq %d, stored at %d nodes, %d refused).\n", out.Name, *out.Seq, len(out.StoredAt), out.Refused)
	fmt.Fprintf(w, "Nodes drop an item %s after its last put; copies of the old value expire then, unless someone puts them again.\n", itemLifetime)
}

// getReq is one get: of an immutable item by target, or of a mutable one
// by public key and salt.
type getReq struct {
	target  krpc.ID
	mutable bool
	k       [32]byte
	salt    []byte
	name    string
}

type getResult struct {
	Target  string `json:"target"`
	Mutable bool   `json:"mutable"`
	Name    string `json:"name,omitempty"`
	Pubkey  string `json:"pubkey,omitempty"`
	Seq     *int64 `json:"seq,omitempty"`
	Value   string `json:"value,omitempty"` // when the item is a bencoded string
	Raw     string `json:"raw"`             // the bencoded value
}

func getItem(ctx context.Context, n *lightdht.Node, req getReq) (getResult, error) {
	var (
		r   lightdht.GetItemResult
		err error
	)
	if req.mutable {
		r, err = n.GetMutable(ctx, req.k, req.salt)
	} else {
		r, err = n.Get(ctx, req.target)
	}
	if err != nil {
		if req.name != "" && errors.Is(err, bep44.ErrNotFound) {
			return getResult{}, fmt.Errorf("get %q: not found under public key %x (items expire %s after the last put)", req.name, req.k[:], itemLifetime)
		}
		return getResult{}, fmt.Errorf("get: %w", err)
	}
	out := getResult{Target: r.Item.Target().String(), Mutable: r.Item.Mutable, Name: req.name, Raw: string(r.Item.V)}
	if r.Item.Mutable {
		out.Seq, out.Pubkey = &r.Item.Seq, hex.EncodeToString(r.Item.K[:])
	}
	if s, ok := bencodedString(r.Item.V); ok {
		out.Value = s
	}
	return out, nil
}

func printGet(w io.Writer, out getResult) {
	if out.Seq != nil {
		fmt.Fprintf(w, "seq %d\n", *out.Seq)
	}
	switch s, ok := bencodedString([]byte(out.Raw)); {
	case ok && s == "" && out.Mutable:
		fmt.Fprintln(w, "(empty value: deleted)")
	case ok:
		fmt.Fprintln(w, s)
	default:
		fmt.Fprintf(w, "(bencoded) %s\n", out.Raw)
	}
}

// parsePubkey parses a public key of 64 hex digits.
func parsePubkey(s string) ([32]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		return [32]byte{}, usagef("bad --pubkey %q: want 64 hex digits", s)
	}
	return [32]byte(b), nil
}

// isTarget reports whether s reads as a 40-hex-digit target rather than
// a name.
func isTarget(s string) bool {
	_, err := parseID("target", s)
	return err == nil
}

func putCmd(c *cli) func(context.Context, []string) error {
	nf, timeout := c.iterFlags()
	keyFile := c.fs.String("key", "", "ed25519 key `file`: with NAME VALUE, the key of your names (default: "+defaultKeyPathHelp()+", created on first use); with VALUE alone, store a mutable item under --salt")
	salt := c.fs.String("salt", "", "salt of a mutable item put as VALUE --key FILE (at most 64 bytes)")
	seqFlag := c.optIntFlag("seq", "sequence `number` of a mutable item (default: one more than the stored one, or 1)")
	casFlag := c.optIntFlag("cas", "store only if the stored sequence number is this `number` (compare-and-swap; default: unconditionally)")
	return func(ctx context.Context, args []string) error {
		if err := nargs(args, 1, 2, "VALUE or NAME VALUE"); err != nil {
			return err
		}
		req := putReq{}
		var err error
		if req.v, err = checkValue(args[len(args)-1]); err != nil {
			return err
		}
		switch {
		case len(args) == 2:
			if c.isSet("salt") {
				return usagef("--salt is the NAME of a put NAME VALUE: give one or the other")
			}
			req.name = args[0]
			if err := checkName(req.name); err != nil {
				return err
			}
			path, err := keyPathOr(*keyFile)
			if err != nil {
				return err
			}
			if req.priv, err = openKey(path, true, c.stderr); err != nil {
				return err
			}
			req.salt = []byte(req.name)
		case *keyFile != "":
			if len(*salt) > bep44.MaxSaltLen {
				return usagef("salt of %d bytes is over BEP 44's %d-byte limit", len(*salt), bep44.MaxSaltLen)
			}
			if req.priv, err = readKey(*keyFile); err != nil {
				return err
			}
			req.salt = []byte(*salt)
		case c.isSet("salt") || c.isSet("seq") || c.isSet("cas"):
			return usagef("--salt, --seq and --cas need --key or a NAME (they apply to mutable items)")
		}
		if c.isSet("seq") {
			req.seq = &seqFlag.v
		}
		if c.isSet("cas") {
			req.cas = &casFlag.v
		}
		return c.withTempNode(ctx, nf, *timeout, func(ctx context.Context, n *lightdht.Node) error {
			out, err := putItem(ctx, n, req)
			if err != nil {
				return err
			}
			return c.output(out, func(w io.Writer) { printPut(w, out) })
		})
	}
}

// defaultKeyPathHelp is the default key file as the help shows it.
func defaultKeyPathHelp() string {
	if p := defaultKeyPath(); p != "" {
		return p
	}
	return "lightdht/key in the configuration directory"
}

func getCmd(c *cli) func(context.Context, []string) error {
	nf, timeout := c.iterFlags()
	pubFlag := c.fs.String("pubkey", "", "public key (hex) of the owner of NAME, or of a mutable item with --salt (default: your own, from --key)")
	salt := c.fs.String("salt", "", "salt of a mutable item (instead of NAME)")
	keyFile := c.fs.String("key", "", "ed25519 key `file` whose public key reads your own names (default: "+defaultKeyPathHelp()+")")
	return func(ctx context.Context, args []string) error {
		if err := nargs(args, 0, 1, "TARGET or NAME"); err != nil {
			return err
		}
		req, err := c.getRequest(args, *pubFlag, c.isSet("pubkey"), *salt, c.isSet("salt"), *keyFile)
		if err != nil {
			return err
		}
		return c.withTempNode(ctx, nf, *timeout, func(ctx context.Context, n *lightdht.Node) error {
			out, err := getItem(ctx, n, req)
			if err != nil {
				return err
			}
			return c.output(out, func(w io.Writer) { printGet(w, out) })
		})
	}
}

// getRequest works out what a get asks for: a TARGET of 40 hex digits
// with neither --pubkey nor --salt is an immutable item; any other
// argument is a name (the salt) under --pubkey or the user's own key.
func (c *cli) getRequest(args []string, pub string, pubSet bool, salt string, saltSet bool, keyFile string) (getReq, error) {
	var req getReq
	if len(args) == 1 && !pubSet && !saltSet && isTarget(args[0]) {
		req.target, _ = parseID("target", args[0])
		return req, nil
	}
	req.mutable = true
	switch {
	case len(args) == 1 && saltSet:
		return req, usagef("--salt is the NAME: give one or the other")
	case len(args) == 1:
		req.name, req.salt = args[0], []byte(args[0])
		if err := checkName(req.name); err != nil {
			return req, err
		}
	case saltSet:
		req.salt = []byte(salt)
	case pubSet:
		// --pubkey alone: the item with no salt.
	default:
		return req, usagef("want TARGET or NAME")
	}
	if pubSet {
		var err error
		req.k, err = parsePubkey(pub)
		return req, err
	}
	path, err := keyPathOr(keyFile)
	if err != nil {
		return req, err
	}
	priv, err := openKey(path, false, nil)
	if err != nil {
		return req, err
	}
	req.k = [32]byte(priv.Public().(ed25519.PublicKey))
	return req, nil
}

func deleteCmd(c *cli) func(context.Context, []string) error {
	nf, timeout := c.iterFlags()
	keyFile := c.fs.String("key", "", "ed25519 key `file` of your names (default: "+defaultKeyPathHelp()+")")
	return func(ctx context.Context, args []string) error {
		if err := nargs(args, 1, 1, "NAME"); err != nil {
			return err
		}
		if err := checkName(args[0]); err != nil {
			return err
		}
		path, err := keyPathOr(*keyFile)
		if err != nil {
			return err
		}
		priv, err := openKey(path, false, nil)
		if err != nil {
			return err
		}
		return c.withTempNode(ctx, nf, *timeout, func(ctx context.Context, n *lightdht.Node) error {
			out, err := deleteName(ctx, n, priv, args[0])
			if err != nil {
				return err
			}
			return c.output(out, func(w io.Writer) { printDelete(w, out) })
		})
	}
}
