package bep44

import (
	"crypto/ed25519"
	"crypto/sha1"
	"errors"
	"fmt"
	"strconv"

	"github.com/lightdht/lightdht/krpc"
)

// Limits of BEP 44.
const (
	MaxValueLen = 1000 // bytes of a bencoded value
	MaxSaltLen  = 64   // bytes of a salt
)

// ImmutableTarget returns the target of an immutable item: the SHA-1 of
// its bencoded value.
func ImmutableTarget(v []byte) krpc.ID { return sha1.Sum(v) }

// MutableTarget returns the target of a mutable item: the SHA-1 of the
// public key followed by the salt.
func MutableTarget(k [32]byte, salt []byte) krpc.ID {
	h := sha1.New()
	h.Write(k[:])
	h.Write(salt)
	return krpc.ID(h.Sum(nil))
}

// AppendSigningBuffer appends what the owner of a mutable item signs: the
// bencoded "salt" entry when there is a salt, then "seq" and "v", laid end
// to end as they appear in a bencoded dictionary (v is already bencoded).
func AppendSigningBuffer(dst, salt []byte, seq int64, v []byte) []byte {
	if len(salt) > 0 {
		dst = append(dst, "4:salt"...)
		dst = strconv.AppendInt(dst, int64(len(salt)), 10)
		dst = append(dst, ':')
		dst = append(dst, salt...)
	}
	dst = append(dst, "3:seqi"...)
	dst = strconv.AppendInt(dst, seq, 10)
	dst = append(dst, "e1:v"...)
	return append(dst, v...)
}

// Sign signs a mutable item with the owner's private key.
func Sign(priv ed25519.PrivateKey, salt []byte, seq int64, v []byte) [64]byte {
	return [64]byte(ed25519.Sign(priv, AppendSigningBuffer(nil, salt, seq, v)))
}

// Verify reports whether sig is k's signature of the mutable item.
func Verify(k [32]byte, salt []byte, seq int64, v []byte, sig [64]byte) bool {
	return ed25519.Verify(k[:], AppendSigningBuffer(nil, salt, seq, v), sig[:])
}

// Item is a stored BEP 44 item. For an immutable item only V is set.
type Item struct {
	V       []byte   // the bencoded value
	Mutable bool     // K, Salt, Seq and Sig are set
	K       [32]byte // the owner's ed25519 public key
	Salt    []byte
	Seq     int64
	Sig     [64]byte
}

// Target returns the item's target.
func (it *Item) Target() krpc.ID {
	if it.Mutable {
		return MutableTarget(it.K, it.Salt)
	}
	return ImmutableTarget(it.V)
}

// Check validates an item on its own, as a storing node must before
// storing it and a getting node before believing it: a well-formed value
// within the size limit (205), a salt within its limit (207) and, for a
// mutable item, a valid signature (206). Errors are *krpc.Error values
// with the BEP 44 codes.
func (it *Item) Check() error {
	switch {
	case len(it.V) == 0:
		return &krpc.Error{Code: krpc.CodeProtocol, Msg: "missing v"}
	case len(it.V) > MaxValueLen:
		return &krpc.Error{Code: krpc.CodeValueTooBig, Msg: fmt.Sprintf("v is %d bytes, more than %d", len(it.V), MaxValueLen)}
	}
	if err := krpc.ValidBencode(it.V); err != nil {
		return &krpc.Error{Code: krpc.CodeProtocol, Msg: "v is not bencoded: " + err.Error()}
	}
	if !it.Mutable {
		return nil
	}
	switch {
	case len(it.Salt) > MaxSaltLen:
		return &krpc.Error{Code: krpc.CodeSaltTooBig, Msg: fmt.Sprintf("salt is %d bytes, more than %d", len(it.Salt), MaxSaltLen)}
	case it.Seq < 0:
		return &krpc.Error{Code: krpc.CodeProtocol, Msg: "negative seq"}
	case !Verify(it.K, it.Salt, it.Seq, it.V, it.Sig):
		return &krpc.Error{Code: krpc.CodeBadSignature, Msg: "invalid signature"}
	}
	return nil
}

// ErrNotFound is returned by lookups that found no item.
var ErrNotFound = errors.New("bep44: item not found")
