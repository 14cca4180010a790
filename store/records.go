package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// RecordKind names a set of records that a package built on the store
// keeps in the repository's metadata, beside the store's own: the store
// keeps them and knows nothing of what they mean.
type RecordKind byte

// The record kinds. Each is a key prefix of the metadata (docs/format.md).
const (
	// PolicyRecords are the automatic-snapshot policies (store/policy).
	PolicyRecords RecordKind = prefixPolicy
	// MarketRecords are the subscriptions to vendors' image catalogs
	// (store/market).
	MarketRecords RecordKind = prefixMarket
)

// Records is one kind of named JSON record.
type Records struct {
	r    *Repo
	kind RecordKind
}

// Records returns the records of a kind.
func (r *Repo) Records(kind RecordKind) Records { return Records{r: r, kind: kind} }

func (s Records) key(name string) []byte { return append([]byte{byte(s.kind)}, name...) }

// known refuses a kind the store does not keep for others: any other
// prefix is the store's own records, which no one else may write.
func (s Records) known() error {
	if s.kind != PolicyRecords && s.kind != MarketRecords {
		return fmt.Errorf("record kind %q: %w", byte(s.kind), ErrInvalid)
	}
	return nil
}

// Get reads the record called name into v; a missing one is ErrNotFound.
func (s Records) Get(ctx context.Context, name string, v any) error {
	if err := s.known(); err != nil {
		return err
	}
	return s.r.view(func(txn *badger.Txn) error { return getJSON(txn, s.key(name), v) })
}

// Create writes a new record; a name taken is ErrExists.
func (s Records) Create(ctx context.Context, name string, v any) error {
	if err := s.known(); err != nil {
		return err
	}
	return s.r.commit(ctx, func(m metaTxn) error {
		if _, err := m.txn.Get(s.key(name)); err == nil {
			return ErrExists
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		return m.setJSON(s.key(name), v)
	})
}

// Replace writes a record over the one called name; a missing one is
// ErrNotFound.
func (s Records) Replace(ctx context.Context, name string, v any) error {
	if err := s.known(); err != nil {
		return err
	}
	return s.r.commit(ctx, func(m metaTxn) error {
		if _, err := m.txn.Get(s.key(name)); errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		return m.setJSON(s.key(name), v)
	})
}

// Delete removes a record; a missing one is not an error.
func (s Records) Delete(ctx context.Context, name string) error {
	if err := s.known(); err != nil {
		return err
	}
	return s.r.commit(ctx, func(m metaTxn) error { return m.deleteRecord(s.key(name)) })
}

// ListRecords reads every record of s, in name order.
func ListRecords[T any](ctx context.Context, s Records) ([]T, error) {
	if err := s.known(); err != nil {
		return nil, err
	}
	var out []T
	err := s.r.view(func(txn *badger.Txn) error {
		return scanJSON(txn, []byte{byte(s.kind)}, func(key []byte, v *T) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			out = append(out, *v)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("records %c: %w", s.kind, err)
	}
	return out, nil
}
