// Package sdk is what a user imports to write a Millrace function in Go.
//
// A function is a Handler: Map, FlatMap, Filter and Stateful build one from a plain Go function.
// Main (or Serve) runs it as the gRPC server the Millrace I/O sidecar talks to over a Unix domain
// socket (the protocol in executor-runtime/proto/function/v1). Local runs the same code in
// process, without Kafka or sockets, for tests (see the sdktest package).
//
//	func main() {
//		sdk.Main(sdk.FlatMap(func(ctx context.Context, r sdk.Record, emit func(sdk.Output)) error {
//			for _, w := range strings.Fields(string(r.Value)) {
//				emit(sdk.Output{Key: []byte(w), Value: []byte("1")})
//			}
//			return nil
//		}))
//	}
package sdk

import (
	"context"
	"time"
)

// Header is a Kafka record header.
type Header struct {
	Key   string
	Value []byte
}

// Record is one input record.
type Record struct {
	// Stream is the Millrace stream the record was read from; Topic is its Kafka topic.
	Stream    string
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []Header
	Timestamp time.Time
}

// Output is one record a function emits.
type Output struct {
	// Stream names the output stream; empty means the entity's only output stream.
	Stream  string
	Key     []byte
	Value   []byte
	Headers []Header
	// Timestamp zero means the input record's timestamp.
	Timestamp time.Time
}

// State is the state of one record's key in the record's partition. Writes become visible to
// later records at once and become durable when the I/O sidecar commits; the writes of a record
// whose handler fails are discarded.
type State interface {
	// Get returns the value and whether the key has one.
	Get() ([]byte, bool, error)
	// Put sets the value.
	Put(value []byte) error
	// Delete removes the value.
	Delete() error
}

// Handler processes one record. Returning an error (or panicking) marks the record as poison: it
// goes to its stream's dead-letter topic, its outputs and state writes are dropped, and
// processing continues with the next record.
type Handler interface {
	Process(ctx context.Context, r Record, st State, emit func(Output)) error
}

// HandlerFunc adapts a function to a Handler.
type HandlerFunc func(ctx context.Context, r Record, st State, emit func(Output)) error

// Process calls f.
func (f HandlerFunc) Process(ctx context.Context, r Record, st State, emit func(Output)) error {
	return f(ctx, r, st, emit)
}

// Map emits exactly one output per input.
func Map(fn func(ctx context.Context, r Record) (Output, error)) Handler {
	return HandlerFunc(func(ctx context.Context, r Record, _ State, emit func(Output)) error {
		out, err := fn(ctx, r)
		if err != nil {
			return err
		}
		emit(out)
		return nil
	})
}

// FlatMap emits zero or more outputs per input.
func FlatMap(fn func(ctx context.Context, r Record, emit func(Output)) error) Handler {
	return HandlerFunc(func(ctx context.Context, r Record, _ State, emit func(Output)) error {
		return fn(ctx, r, emit)
	})
}

// Filter passes the input unchanged (key, value, headers, timestamp) to the only output stream
// when keep returns true.
func Filter(keep func(ctx context.Context, r Record) (bool, error)) Handler {
	return HandlerFunc(func(ctx context.Context, r Record, _ State, emit func(Output)) error {
		ok, err := keep(ctx, r)
		if err != nil || !ok {
			return err
		}
		emit(Output{Key: r.Key, Value: r.Value, Headers: r.Headers, Timestamp: r.Timestamp})
		return nil
	})
}

// Stateful hands the function the state of the record's key, scoped to the record's partition.
// The entity must have state configured.
func Stateful(fn func(ctx context.Context, r Record, st State, emit func(Output)) error) Handler {
	return HandlerFunc(fn)
}

type userConfigKey struct{}

// UserConfig returns the entity's user configuration of the current session. It changes (with a
// new session) when the operator updates the entity's configuration.
func UserConfig(ctx context.Context) map[string]string {
	m, _ := ctx.Value(userConfigKey{}).(map[string]string)
	return m
}

func withUserConfig(ctx context.Context, m map[string]string) context.Context {
	return context.WithValue(ctx, userConfigKey{}, m)
}
