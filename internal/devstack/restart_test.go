package devstack

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/altegio-integrator/integrator/internal/sandbox"
	"github.com/altegio-integrator/integrator/internal/testenv"
)

// clientByPhone returns the sandbox's client of the dev location with the
// phone (digits).
func clientByPhone(t *testing.T, sb *sandbox.Server, phone string) sandbox.ClientRecord {
	t.Helper()
	for _, c := range sb.Clients(DevLocationID) {
		if c.Phone == phone {
			return c
		}
	}
	t.Fatalf("no client with phone %s", phone)
	return sandbox.ClientRecord{}
}

// TestRestartKeepsRefsAndClientsTogether: after a restart on the same data,
// an update by client_ref changes the client it was created as, and a new
// client gets a new id. (Before the sandbox kept its state, ids started
// again at 1000001 and the update hit whichever client got that id next.)
func TestRestartKeepsRefsAndClientsTogether(t *testing.T) {
	dir := t.TempDir()
	st, stop := startDev(t, dir, io.Discard)
	waitStatus(t, st, post(t, st, `{"type":"client.create","location_id":1,"client_ref":"crm-42","payload":{"name":"James","phone":"+13155550175"}}`), "succeeded")
	james := clientByPhone(t, st.Sandbox, "13155550175")
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}

	st, _ = startDev(t, dir, io.Discard)
	ada := post(t, st, `{"type":"client.create","location_id":1,"client_ref":"crm-43","payload":{"name":"Ada","phone":"+13155550176"}}`)
	waitStatus(t, st, ada, "succeeded")
	if got := clientByPhone(t, st.Sandbox, "13155550176").ID; got <= james.ID {
		t.Errorf("a client created after the restart got id %d, not above %d", got, james.ID)
	}
	waitStatus(t, st, post(t, st, `{"type":"client.update","location_id":1,"client_ref":"crm-42","payload":{"email":"j@example.com"}}`), "succeeded")
	if got := clientByPhone(t, st.Sandbox, "13155550175"); got.ID != james.ID || got.Email != "j@example.com" || got.Name != "James" {
		t.Errorf("James after the update by ref: %+v, want id %d with the new email", got, james.ID)
	}
	if got := clientByPhone(t, st.Sandbox, "13155550176"); got.Email != "" {
		t.Errorf("the update by crm-42 changed Ada: %+v", got)
	}
}

// TestRestartWithoutSandboxStateNeverReusesMappedIDs: when the sandbox's
// state is gone but NATS still maps refs to ids, new clients get ids above
// them, and a command by such a ref dead-letters saying the ref points at a
// missing client instead of changing another client.
func TestRestartWithoutSandboxStateNeverReusesMappedIDs(t *testing.T) {
	dir := t.TempDir()
	st, stop := startDev(t, dir, io.Discard)
	waitStatus(t, st, post(t, st, `{"type":"client.create","location_id":1,"client_ref":"crm-42","payload":{"name":"James","phone":"+13155550175"}}`), "succeeded")
	james := clientByPhone(t, st.Sandbox, "13155550175")
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := os.Remove(filepath.Join(dir, SandboxStateFile)); err != nil {
		t.Fatalf("remove the sandbox state: %v", err)
	}

	out := &syncBuffer{}
	st, _ = startDev(t, dir, out)
	if !strings.Contains(out.String(), "the sandbox starts empty") {
		t.Errorf("no warning about the lost sandbox state in:\n%s", out)
	}
	waitStatus(t, st, post(t, st, `{"type":"client.create","location_id":1,"client_ref":"crm-43","payload":{"name":"Ada","phone":"+13155550176"}}`), "succeeded")
	if got := clientByPhone(t, st.Sandbox, "13155550176").ID; got <= james.ID {
		t.Errorf("a client created after the state was lost got id %d, not above %d", got, james.ID)
	}
	update := post(t, st, `{"type":"client.update","location_id":1,"client_ref":"crm-42","payload":{"email":"j@example.com"}}`)
	waitStatus(t, st, update, "dead_lettered")
	testenv.WaitFor(t, 10*time.Second, func() error {
		if !strings.Contains(out.String(), fmt.Sprintf("points at client %d", james.ID)) {
			return fmt.Errorf("no event line saying crm-42 points at a missing client")
		}
		return nil
	})
	if got := clientByPhone(t, st.Sandbox, "13155550176"); got.Email != "" {
		t.Errorf("the update by crm-42 changed Ada: %+v", got)
	}
}
