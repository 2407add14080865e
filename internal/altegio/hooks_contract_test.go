package altegio_test

// Contract tests of the webhook settings calls and of the client event
// payload (ref §7): the client against the sandbox.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/sandbox"
	"github.com/altegio-integrator/integrator/internal/testenv"
)

// newHookEnv is newEnv with webhooks sent at once; the sandbox's
// deliveries are stopped and waited for at the end of the test.
func newHookEnv(t *testing.T) *contractEnv {
	t.Helper()
	e := newEnv(t, func(c *sandbox.Config) {
		c.WebhookDelay = -1
		c.WebhookRetryDelay = -1
	})
	t.Cleanup(func() { _ = e.sb.Close() })
	return e
}

func TestContractHookSettings(t *testing.T) {
	t.Parallel()
	e := newHookEnv(t)
	ctx := context.Background()

	got, err := e.client.GetHookSettings(ctx, ctLoc)
	if err != nil {
		t.Fatalf("GetHookSettings of a fresh location: %v", err)
	}
	if !reflect.DeepEqual(got, altegio.HookSettings{}) {
		t.Errorf("fresh location = %+v, want the zero settings", got)
	}

	// Every flag survives the round trip (the sandbox answers 201 with
	// url_settings besides the documented keys).
	all := altegio.HookSettings{
		URLs:   []string{"https://crm.example/altegio", "https://integrator.example/hooks/7"},
		Active: true, Client: true, Record: true, Salon: true, Service: true, ServiceCategory: true, Master: true,
		Good: true, GoodsOperationsSale: true, GoodsOperationsReceipt: true, GoodsOperationsConsumable: true,
		GoodsOperationsStolen: true, GoodsOperationsMove: true, FinancesOperation: true, SelfSending: true,
	}
	set, err := e.client.SetHookSettings(ctx, ctLoc, all)
	if err != nil {
		t.Fatalf("SetHookSettings: %v", err)
	}
	if !reflect.DeepEqual(set, all) {
		t.Errorf("SetHookSettings returned\n%+v\nwant\n%+v", set, all)
	}
	if got, err = e.client.GetHookSettings(ctx, ctLoc); err != nil || !reflect.DeepEqual(got, all) {
		t.Errorf("GetHookSettings = %+v, %v; want %+v", got, err, all)
	}
	stored, _ := e.sb.HookSettingsOf(ctLoc)
	if stored.WrittenBy != ctLogin || stored.Flags["goods_operations_move"] != 1 || len(stored.URLs) != 2 {
		t.Errorf("sandbox stored %+v", stored)
	}

	// A write replaces everything: what is left out is gone.
	one := altegio.HookSettings{URLs: []string{"https://integrator.example/hooks/7"}, Active: true, Client: true}
	if _, err := e.client.SetHookSettings(ctx, ctLoc, one); err != nil {
		t.Fatalf("SetHookSettings: %v", err)
	}
	if got, _ := e.client.GetHookSettings(ctx, ctLoc); !reflect.DeepEqual(got, one) {
		t.Errorf("after replacing: %+v, want %+v", got, one)
	}

	// The user limited to ctLoc gets 403 elsewhere, like on every call.
	limited := e.newClient(t, altegio.StaticAuthorizer{PartnerToken: ctPartner, UserToken: ctLimitedToken})
	if _, err := limited.GetHookSettings(ctx, ctOtherLoc); !errors.Is(err, altegio.ErrForbidden) {
		t.Errorf("limited user on another location: %v, want ErrForbidden", err)
	}
	if st := e.sb.Stats(); st.ByOp[sandbox.OpHooksSet] != 2 || st.ByOp[sandbox.OpHooksGet] != 4 {
		t.Errorf("sandbox saw %v", st.ByOp)
	}
}

// A write whose answer is lost is an unknown outcome that the same write
// settles: the POST replaces the whole settings, so it is idempotent.
func TestContractHookSettingsTransportRetry(t *testing.T) {
	t.Parallel()
	e := newHookEnv(t)
	ctx := context.Background()
	// The answer to the first write is lost after the sandbox applied it:
	// the outcome is unknown, and repeating the same write is harmless.
	e.sb.Inject(sandbox.Rule{Op: sandbox.OpHooksSet, Reset: true, AfterApply: true, Times: 1})
	s := altegio.HookSettings{URLs: []string{"https://integrator.example/h"}, Active: true, Client: true}
	_, err := e.client.SetHookSettings(ctx, ctLoc, s)
	if !altegio.OutcomeUnknown(err) {
		t.Fatalf("first write: %v, want an unknown outcome", err)
	}
	got, err := e.client.SetHookSettings(ctx, ctLoc, s)
	if err != nil || !reflect.DeepEqual(got, s) {
		t.Fatalf("repeated write = %+v, %v", got, err)
	}
}

// A client created through the client reaches a receiver as the
// documented event, whose data decodes as the card GetClient returns.
func TestContractClientWebhook(t *testing.T) {
	t.Parallel()
	e := newHookEnv(t)
	ctx := context.Background()
	var (
		mu     sync.Mutex
		events []json.RawMessage
	)
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		events = append(events, b)
		mu.Unlock()
	}))
	t.Cleanup(rc.Close)
	if _, err := e.client.SetHookSettings(ctx, ctLoc, altegio.HookSettings{
		URLs: []string{rc.URL}, Active: true, Client: true, SelfSending: true}); err != nil {
		t.Fatalf("SetHookSettings: %v", err)
	}
	created, err := e.client.CreateClient(ctx, ctLoc, altegio.ClientInput{Name: "Ann", Phone: "+13155550142", Categories: []int64{4}})
	if err != nil {
		t.Fatalf("CreateClient: %v", err)
	}
	card, err := e.client.GetClient(ctx, ctLoc, created.ID)
	if err != nil {
		t.Fatalf("GetClient: %v", err)
	}
	testenv.WaitFor(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(events) != 1 {
			return fmt.Errorf("%d events, want 1", len(events))
		}
		return nil
	})
	var ev struct {
		CompanyID  int64                `json:"company_id"`
		Resource   string               `json:"resource"`
		ResourceID int64                `json:"resource_id"`
		Status     string               `json:"status"`
		Data       altegio.ClientRecord `json:"data"`
	}
	mu.Lock()
	err = json.Unmarshal(events[0], &ev)
	mu.Unlock()
	if err != nil {
		t.Fatalf("decode event: %v", err)
	}
	if ev.CompanyID != ctLoc || ev.Resource != "client" || ev.ResourceID != created.ID || ev.Status != "create" {
		t.Errorf("event = %+v", ev)
	}
	if !reflect.DeepEqual(ev.Data, card) {
		t.Errorf("event data\n%+v\nwant the card\n%+v", ev.Data, card)
	}
}
