package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/idem"
	"github.com/altegio-integrator/integrator/internal/topology"
)

// errConflict reports a lost compare-and-set on a record: another delivery
// of the same command wrote it in between.
var errConflict = errors.New("idempotency record changed concurrently")

// recordStore reads and writes Records with compare-and-set.
type recordStore struct {
	kv jetstream.KeyValue
}

// load returns the record and its revision; revision 0 and a zero Record
// when there is none.
func (s recordStore) load(ctx context.Context, id string) (idem.Record, uint64, error) {
	rec, rev, err := idem.Load(ctx, s.kv, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return idem.Record{}, 0, nil
	}
	return rec, rev, err
}

// save writes rec if the stored revision is still rev (0: the key must not
// exist) and returns the new revision. It returns errConflict when another
// writer got there first.
func (s recordStore) save(ctx context.Context, id string, rec idem.Record, rev uint64) (uint64, error) {
	b, err := commands.Marshal(rec)
	if err != nil {
		return 0, fmt.Errorf("encode record %s: %w", id, err)
	}
	var newRev uint64
	if rev == 0 {
		newRev, err = s.kv.Create(ctx, idem.Key(id), b)
	} else {
		newRev, err = s.kv.Update(ctx, idem.Key(id), b, rev)
	}
	if topology.IsKVConflict(err) {
		return 0, fmt.Errorf("save record %s at revision %d: %w", id, rev, errConflict)
	}
	if err != nil {
		return 0, fmt.Errorf("save record %s: %w", id, err)
	}
	return newRev, nil
}

// refStore maps client_ref to client id per location in the KV bucket
// altegio_client_refs, under "<location>.<client key>" (the client key is
// commands.Command.ClientKey: "ref_<ref>" or "refh_<hash>", both safe KV
// key tokens).
type refStore struct {
	kv jetstream.KeyValue
}

// refEntry is the stored value of a client_ref mapping.
type refEntry struct {
	ClientID  int64     `json:"client_id"`
	CommandID string    `json:"command_id"`
	At        time.Time `json:"at"`
}

// RefKey returns the KV key of a client_ref mapping in altegio_client_refs.
func RefKey(locationID int64, clientKey string) string {
	return strconv.FormatInt(locationID, 10) + "." + clientKey
}

// LookupClientRef returns the client id the client_ref ref of a location
// maps to in kv (the altegio_client_refs bucket), the same way commands
// resolve it; ok is false when it maps to none.
func LookupClientRef(ctx context.Context, kv jetstream.KeyValue, locationID int64, ref string) (clientID int64, ok bool, err error) {
	return refStore{kv: kv}.get(ctx, locationID, commands.Command{LocationID: locationID, ClientRef: ref}.ClientKey())
}

// get returns the client id a ref maps to; ok is false when it maps to none.
func (s refStore) get(ctx context.Context, loc int64, key string) (id int64, ok bool, err error) {
	e, err := s.kv.Get(ctx, RefKey(loc, key))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return 0, false, nil
	case err != nil:
		return 0, false, fmt.Errorf("load client ref %s: %w", RefKey(loc, key), err)
	}
	var v refEntry
	if err := json.Unmarshal(e.Value(), &v); err != nil || v.ClientID <= 0 {
		return 0, false, fmt.Errorf("decode client ref %s: invalid value", RefKey(loc, key))
	}
	return v.ClientID, true, nil
}

// put stores the mapping; later writes win (a ref re-created after a
// delete maps to the new client).
func (s refStore) put(ctx context.Context, loc int64, key string, v refEntry) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode client ref: %w", err)
	}
	if _, err := s.kv.Put(ctx, RefKey(loc, key), b); err != nil {
		return fmt.Errorf("store client ref %s: %w", RefKey(loc, key), err)
	}
	return nil
}

// remove forgets a mapping; a missing key is not an error.
func (s refStore) remove(ctx context.Context, loc int64, key string) error {
	err := s.kv.Delete(ctx, RefKey(loc, key))
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete client ref %s: %w", RefKey(loc, key), err)
	}
	return nil
}
