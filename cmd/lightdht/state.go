package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/krpc"
)

// The state file of lightdht node --state: a JSON object that names its
// format and version, so that a file of another program or of a later
// version is refused rather than misread or overwritten.
const (
	stateFormat  = "lightdht-state"
	stateVersion = 1
	// maxStateSize bounds what is read: two full k-bucket tables are
	// about 200 KiB of JSON.
	maxStateSize = 16 << 20
	// defaultStateEvery is how often a running node saves its state.
	defaultStateEvery = 5 * time.Minute
)

type stateFile struct {
	Format        string      `json:"format"`
	Version       int         `json:"version"`
	Saved         string      `json:"saved"` // RFC 3339, for people reading the file
	ID            string      `json:"id"`
	ExternalAddr4 string      `json:"external_addr4,omitempty"`
	Nodes         []stateNode `json:"nodes"`
	Nodes6        []stateNode `json:"nodes6,omitempty"`
}

type stateNode struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
}

// errForeignState is wrapped by the error readState returns for a file
// that is not a lightdht state file of this version: it is left alone.
var errForeignState = errors.New("not a state file this lightdht can read")

// corruptStateError is returned by readState for a file that claims to
// be, or may have been, a state file but cannot be read: truncated,
// garbage, a bad field. The caller sets it aside.
type corruptStateError struct {
	path string
	err  error
}

func (e *corruptStateError) Error() string {
	return fmt.Sprintf("state file %s is damaged: %v", e.path, e.err)
}

func (e *corruptStateError) Unwrap() error { return e.err }

// readState reads a state file. A missing file is a fresh start: nil and
// no error.
func readState(path string) (*lightdht.Snapshot, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxStateSize+1))
	if err != nil {
		return nil, fmt.Errorf("read state file %s: %w", path, err)
	}
	if len(b) > maxStateSize {
		return nil, &corruptStateError{path, fmt.Errorf("larger than %d bytes", maxStateSize)}
	}
	var sf stateFile
	if err := json.Unmarshal(b, &sf); err != nil {
		return nil, &corruptStateError{path, err}
	}
	switch {
	case sf.Format != stateFormat:
		return nil, fmt.Errorf("state file %s: format %q, want %q: %w", path, sf.Format, stateFormat, errForeignState)
	case sf.Version != stateVersion:
		return nil, fmt.Errorf("state file %s: version %d, this lightdht reads version %d: %w", path, sf.Version, stateVersion, errForeignState)
	}
	snap := &lightdht.Snapshot{}
	if snap.ID, err = krpc.ParseID(sf.ID); err != nil || snap.ID.IsZero() {
		return nil, &corruptStateError{path, fmt.Errorf("bad id %q", sf.ID)}
	}
	if sf.ExternalAddr4 != "" {
		if snap.ExternalAddr4, err = netip.ParseAddr(sf.ExternalAddr4); err != nil || !snap.ExternalAddr4.Is4() {
			return nil, &corruptStateError{path, fmt.Errorf("bad external_addr4 %q", sf.ExternalAddr4)}
		}
	}
	if snap.Nodes, err = parseStateNodes(sf.Nodes, false); err != nil {
		return nil, &corruptStateError{path, err}
	}
	if snap.Nodes6, err = parseStateNodes(sf.Nodes6, true); err != nil {
		return nil, &corruptStateError{path, err}
	}
	return snap, nil
}

func parseStateNodes(ns []stateNode, v6 bool) ([]krpc.NodeInfo, error) {
	out := make([]krpc.NodeInfo, 0, len(ns))
	for i, n := range ns {
		id, err := krpc.ParseID(n.ID)
		if err != nil {
			return nil, fmt.Errorf("node %d: bad id %q", i, n.ID)
		}
		a, err := netip.ParseAddrPort(n.Addr)
		if err != nil || a.Port() == 0 || a.Addr().Unmap().Is4() == v6 {
			return nil, fmt.Errorf("node %d: bad address %q", i, n.Addr)
		}
		out = append(out, krpc.NodeInfo{ID: id, Addr: netip.AddrPortFrom(a.Addr().Unmap(), a.Port())})
	}
	return out, nil
}

// setAside renames a damaged state file out of the way, so that the node
// can start afresh and the file is still there to look at. It returns the
// new name.
func setAside(path string, now time.Time) (string, error) {
	to := fmt.Sprintf("%s.damaged-%s", path, now.UTC().Format("20060102T150405.000000000"))
	if err := os.Rename(path, to); err != nil {
		return "", fmt.Errorf("set aside damaged state file: %w", err)
	}
	return to, nil
}

// writeState saves snap to path atomically: a temporary file in the same
// directory, synced, then renamed over path, so that a crash leaves the
// old file or the new one, never half of one.
func writeState(path string, snap lightdht.Snapshot, now time.Time) error {
	sf := stateFile{Format: stateFormat, Version: stateVersion, Saved: now.UTC().Format(time.RFC3339),
		ID: snap.ID.String(), Nodes: []stateNode{}}
	if snap.ExternalAddr4.IsValid() {
		sf.ExternalAddr4 = snap.ExternalAddr4.String()
	}
	for _, n := range snap.Nodes {
		sf.Nodes = append(sf.Nodes, stateNode{n.ID.String(), n.Addr.String()})
	}
	for _, n := range snap.Nodes6 {
		sf.Nodes6 = append(sf.Nodes6, stateNode{n.ID.String(), n.Addr.String()})
	}
	b, err := json.MarshalIndent(sf, "", "\t")
	if err != nil {
		return err
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, base+".tmp-*")
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("save state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	if d, err := os.Open(dir); err == nil { // make the rename durable; best effort
		d.Sync()
		d.Close()
	}
	return nil
}

// loadState reads the state file for a starting node: a damaged file is
// set aside with a warning and the node starts afresh; a foreign one is an
// error.
func (c *cli) loadState(path string) (*lightdht.Snapshot, error) {
	snap, err := readState(path)
	var ce *corruptStateError
	if errors.As(err, &ce) {
		to, aerr := setAside(path, time.Now())
		if aerr != nil {
			return nil, errors.Join(err, aerr)
		}
		c.log.Warn().Err(err).Str("moved_to", to).Msg("state file set aside; starting with a new identity and the bootstrap list")
		return nil, nil
	}
	return snap, err
}
