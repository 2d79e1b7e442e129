package lightdht

import "github.com/lightdht/lightdht/observe"

// The observation types live in package observe, so that the store and
// the crawler can use them without depending on the node; these aliases
// keep them in reach of a program that embeds the node.
type (
	// Source says how a node came to be seen; see observe.Source.
	Source = observe.Source
	// Sighting is one observation of a node; see observe.Sighting.
	Sighting = observe.Sighting
	// Observer receives every sighting; see observe.Observer.
	Observer = observe.Observer
	// ObserverFunc adapts a function to Observer; see observe.ObserverFunc.
	ObserverFunc = observe.ObserverFunc
)

// Sources of a sighting; see observe.SourceReply and the others.
const (
	SourceReply    = observe.SourceReply
	SourceQuery    = observe.SourceQuery
	SourceReported = observe.SourceReported
	SourceTimeout  = observe.SourceTimeout
)
