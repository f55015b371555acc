package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/cockroachdb/pebble"
)

// Store holds the committed state of the partitions a pod owns. Its content is always a copy
// of the changelog topic: the state sidecar rebuilds it from the changelog and never trusts what
// a previous process left on disk.
type Store interface {
	Get(partition int32, key []byte) ([]byte, bool, error)
	// Apply writes mutations atomically.
	Apply(muts []Mutation) error
	// DropPartition removes every key of partition.
	DropPartition(partition int32) error
	Close() error
}

// Mutation is one change of a key in a partition.
type Mutation struct {
	Partition int32
	Key       []byte
	Value     []byte
	Delete    bool
}

// Backends of the state sidecar, as in config.State.Backend.
const (
	BackendMemory = "memory"
	BackendPebble = "pebble"
)

// OpenStore opens the store of a backend. dir is only used by pebble.
func OpenStore(backend, dir string) (Store, error) {
	switch backend {
	case "", BackendMemory:
		return NewMemoryStore(), nil
	case BackendPebble:
		return OpenPebbleStore(dir)
	default:
		return nil, fmt.Errorf("state backend %q is not memory or pebble", backend)
	}
}

type memoryStore struct {
	mu   sync.RWMutex
	data map[int32]map[string][]byte
}

// NewMemoryStore returns a store that keeps everything in memory.
func NewMemoryStore() Store { return &memoryStore{data: map[int32]map[string][]byte{}} }

func (m *memoryStore) Get(partition int32, key []byte) ([]byte, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	v, ok := m.data[partition][string(key)]
	return v, ok, nil
}

func (m *memoryStore) Apply(muts []Mutation) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, mu := range muts {
		p := m.data[mu.Partition]
		if p == nil {
			p = map[string][]byte{}
			m.data[mu.Partition] = p
		}
		if mu.Delete {
			delete(p, string(mu.Key))
		} else {
			p[string(mu.Key)] = mu.Value
		}
	}
	return nil
}

func (m *memoryStore) DropPartition(partition int32) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.data, partition)
	return nil
}

func (m *memoryStore) Close() error { return nil }

type pebbleStore struct{ db *pebble.DB }

// OpenPebbleStore opens a Pebble store in dir, removing what an earlier process left there: the
// changelog is the source of truth and is replayed on start.
func OpenPebbleStore(dir string) (Store, error) {
	if dir == "" {
		return nil, errors.New("the pebble state backend needs state.dir")
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("clear pebble dir %s: %w", dir, err)
	}
	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		return nil, fmt.Errorf("open pebble at %s: %w", dir, err)
	}
	return &pebbleStore{db: db}, nil
}

func pebbleKey(partition int32, key []byte) []byte {
	b := make([]byte, 4+len(key))
	binary.BigEndian.PutUint32(b, uint32(partition))
	copy(b[4:], key)
	return b
}

func (p *pebbleStore) Get(partition int32, key []byte) ([]byte, bool, error) {
	v, closer, err := p.db.Get(pebbleKey(partition, key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("pebble get: %w", err)
	}
	defer closer.Close()
	return append([]byte(nil), v...), true, nil
}

func (p *pebbleStore) Apply(muts []Mutation) error {
	b := p.db.NewBatch()
	defer b.Close()
	for _, mu := range muts {
		var err error
		if mu.Delete {
			err = b.Delete(pebbleKey(mu.Partition, mu.Key), nil)
		} else {
			err = b.Set(pebbleKey(mu.Partition, mu.Key), mu.Value, nil)
		}
		if err != nil {
			return fmt.Errorf("pebble batch: %w", err)
		}
	}
	// No fsync: a crash loses the directory's meaning anyway, since start replays the changelog.
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("pebble commit: %w", err)
	}
	return nil
}

func (p *pebbleStore) DropPartition(partition int32) error {
	start := pebbleKey(partition, nil)
	end := pebbleKey(partition+1, nil)
	if err := p.db.DeleteRange(start, end, pebble.NoSync); err != nil {
		return fmt.Errorf("pebble drop partition %d: %w", partition, err)
	}
	return nil
}

func (p *pebbleStore) Close() error { return p.db.Close() }
