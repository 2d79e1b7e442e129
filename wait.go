package lightdht

// await is the blocking form of an asynchronous call: it starts the call
// with a callback that puts the outcome into a channel of capacity 1, and
// waits for it, the way net/rpc's Call wraps Go. The async calls it wraps
// always call back (on a reply, an error, the end of their context or the
// node's closing), so await returns; a callback that comes after nothing
// waits any more still has room in the channel and never blocks.
func await[T any](start func(done func(T, error))) (T, error) {
	type outcome struct {
		v   T
		err error
	}
	ch := make(chan outcome, 1)
	start(func(v T, err error) { ch <- outcome{v, err} })
	o := <-ch
	return o.v, o.err
}
