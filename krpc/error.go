package krpc

import (
	"fmt"
	"strconv"
)

// KRPC error codes: 201 to 204 from BEP 5, the rest from BEP 44.
const (
	CodeGeneric       = 201 // generic error
	CodeServer        = 202 // server error
	CodeProtocol      = 203 // protocol error: malformed packet, bad arguments or bad token
	CodeMethodUnknown = 204 // method unknown
	CodeValueTooBig   = 205 // BEP 44: v is more than 1,000 bytes bencoded
	CodeBadSignature  = 206 // BEP 44: invalid signature
	CodeSaltTooBig    = 207 // BEP 44: salt is more than 64 bytes
	CodeCASMismatch   = 301 // BEP 44: the CAS value does not match the stored sequence number
	CodeSeqTooLow     = 302 // BEP 44: sequence number less than the stored one
)

// Error is a KRPC error: the [code, message] list of an error message. A
// remote error returned by a query can be matched with errors.As:
//
//	var kerr *krpc.Error
//	if errors.As(err, &kerr) && kerr.Code == krpc.CodeProtocol { … }
type Error struct {
	Code int
	Msg  string
}

// Error implements the error interface.
func (e *Error) Error() string {
	return "krpc error " + strconv.Itoa(e.Code) + " (" + codeName(e.Code) + "): " + e.Msg
}

// Error replies to bad queries, for handlers: shared values, which the
// transport only reads. Fail puts one in a reply.
var (
	ErrorMissingID       = &Error{Code: CodeProtocol, Msg: "missing id"}
	ErrorMissingTarget   = &Error{Code: CodeProtocol, Msg: "missing target"}
	ErrorMissingInfohash = &Error{Code: CodeProtocol, Msg: "missing info_hash"}
	ErrorBadToken        = &Error{Code: CodeProtocol, Msg: "bad token"}
	ErrorBadPort         = &Error{Code: CodeProtocol, Msg: "missing or invalid port"}
	ErrorMethodUnknown   = &Error{Code: CodeMethodUnknown, Msg: "method unknown"}
)

// Fail turns reply into the error message e and returns true, so that a
// Handler can answer a bad query with return reply.Fail(e).
func (m *Msg) Fail(e *Error) bool {
	m.Y, m.E = KindError, e
	return true
}

func codeName(code int) string {
	switch code {
	case CodeGeneric:
		return "generic"
	case CodeServer:
		return "server"
	case CodeProtocol:
		return "protocol"
	case CodeMethodUnknown:
		return "method unknown"
	case CodeValueTooBig:
		return "value too big"
	case CodeBadSignature:
		return "bad signature"
	case CodeSaltTooBig:
		return "salt too big"
	case CodeCASMismatch:
		return "CAS mismatch"
	case CodeSeqTooLow:
		return "sequence number too low"
	}
	return "unknown code"
}

// DecodeError describes a packet that could not be decoded.
//
// When Field is empty the packet is not a usable KRPC message (bad
// bencode, a limit exceeded, no transaction ID, …) and deserves no reply.
// When Field is set, the packet is well-formed bencode with a usable
// envelope (t, y and, for queries, q are set in the Msg) but the named
// field has the wrong type or length; a query in that state is answered
// with a protocol error (203).
type DecodeError struct {
	Offset int    // byte offset at which the problem was found
	Field  string // the offending field, such as "a.id" or "r.nodes"; empty for a structural fault
	Reason string // what is wrong

	more bool // another field was at fault too
}

// Error implements the error interface.
func (e *DecodeError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("krpc: decode: field %s: %s", e.Field, e.Reason)
	}
	return fmt.Sprintf("krpc: decode: at byte %d: %s", e.Offset, e.Reason)
}
