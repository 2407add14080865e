package altegio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
)

// hookSettingsJSON is the documented body (reference §7) with client and
// self_sending on, as the API answers it, plus the newer backend's
// url_settings naming a URL that "urls" lacks.
const hookSettingsJSON = `{"success": true,
 "data": {"urls": ["https://example.com/hook"], "active": 1, "client": 1, "record": 0, "salon": 0, "service": 0,
          "service_category": 0, "master": "1", "good": 0, "goods_operations_sale": 0, "goods_operations_receipt": 0,
          "goods_operations_consumable": 0, "goods_operations_stolen": 0, "goods_operations_move": 0,
          "finances_operation": true, "self_sending": 1,
          "url_settings": [{"url": "https://example.com/hook", "client": 1, "record": 0},
                           {"url": "https://other.example/in", "client": 0, "record": 1}]},
 "meta": []}`

// allFlagsOff is the documented POST body with every flag 0.
const allFlagsOff = `"record":0,"salon":0,"service":0,"service_category":0,"master":0,"good":0,` +
	`"goods_operations_sale":0,"goods_operations_receipt":0,"goods_operations_consumable":0,` +
	`"goods_operations_stolen":0,"goods_operations_move":0,"finances_operation":0`

func TestHookSettingsEndpoints(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		replies []reply
		call    func(ctx context.Context, c *Client) (HookSettings, error)
		method  string
		path    string
		body    string // "" = no body
		want    HookSettings
	}{
		{
			name:    "get tolerates url_settings and odd flags",
			replies: []reply{{status: 200, body: hookSettingsJSON}},
			call:    func(ctx context.Context, c *Client) (HookSettings, error) { return c.GetHookSettings(ctx, 7) },
			method:  "GET", path: "/api/v1/hooks_settings/7",
			want: HookSettings{URLs: []string{"https://example.com/hook", "https://other.example/in"},
				Active: true, Client: true, Master: true, FinancesOperation: true, SelfSending: true},
		},
		{
			name:    "get of a location without settings",
			replies: []reply{{status: 200, body: `{"success":true,"data":{"urls":[],"active":0},"meta":[]}`}},
			call:    func(ctx context.Context, c *Client) (HookSettings, error) { return c.GetHookSettings(ctx, 7) },
			method:  "GET", path: "/api/v1/hooks_settings/7",
		},
		{
			name:    "get answering data null",
			replies: []reply{{status: 200, body: `{"success":true,"data":null,"meta":[]}`}},
			call:    func(ctx context.Context, c *Client) (HookSettings, error) { return c.GetHookSettings(ctx, 7) },
			method:  "GET", path: "/api/v1/hooks_settings/7",
		},
		{
			name:    "get answering data []",
			replies: []reply{{status: 200, body: `{"success":true,"data":[],"meta":[]}`}},
			call:    func(ctx context.Context, c *Client) (HookSettings, error) { return c.GetHookSettings(ctx, 7) },
			method:  "GET", path: "/api/v1/hooks_settings/7",
		},
		{
			name: "set sends every key as 0 or 1 and reads the 201",
			replies: []reply{{status: 201, body: `{"success":true,"data":{"urls":["https://a.example/h"],"active":1,"client":1,` +
				allFlagsOff + `,"self_sending":0,"url_settings":{"https://a.example/h":{"client":1}}},"meta":[]}`}},
			call: func(ctx context.Context, c *Client) (HookSettings, error) {
				return c.SetHookSettings(ctx, 7, HookSettings{URLs: []string{"https://a.example/h"}, Active: true, Client: true})
			},
			method: "POST", path: "/api/v1/hooks_settings/7",
			body: `{"urls":["https://a.example/h"],"active":1,"client":1,` + allFlagsOff + `,"self_sending":0}`,
			want: HookSettings{URLs: []string{"https://a.example/h"}, Active: true, Client: true},
		},
		{
			name: "set without urls sends []",
			replies: []reply{{status: 201, body: `{"success":true,"data":{"urls":[],"active":0,"client":0,` +
				allFlagsOff + `,"self_sending":1},"meta":[]}`}},
			call: func(ctx context.Context, c *Client) (HookSettings, error) {
				return c.SetHookSettings(ctx, 7, HookSettings{SelfSending: true})
			},
			method: "POST", path: "/api/v1/hooks_settings/7",
			body: `{"urls":[],"active":0,"client":0,` + allFlagsOff + `,"self_sending":1}`,
			want: HookSettings{SelfSending: true},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newAPIServer(t, tc.replies...)
			got, err := tc.call(context.Background(), newTestClient(t, s, nil, nil))
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			reqs := s.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Method != tc.method || r.Path != tc.path {
				t.Errorf("request %s %s, want %s %s", r.Method, r.Path, tc.method, tc.path)
			}
			checkHeaders(t, r, wantAuth, tc.body != "")
			if tc.body != "" {
				jsonEqual(t, r.Body, tc.body)
			}
		})
	}
}

func TestHookSettingsErrors(t *testing.T) {
	t.Parallel()
	eleven := make([]string, 11)
	for i := range eleven {
		eleven[i] = fmt.Sprintf("https://h%d.example/", i)
	}
	tenWithDuplicate := append(append([]string(nil), eleven[:10]...), eleven[0])

	t.Run("refused before sending", func(t *testing.T) {
		t.Parallel()
		s := newAPIServer(t)
		c := newTestClient(t, s, nil, nil)
		ctx := context.Background()
		for name, call := range map[string]func() error{
			"eleven urls": func() error { _, err := c.SetHookSettings(ctx, 7, HookSettings{URLs: eleven}); return err },
			"relative url": func() error {
				_, err := c.SetHookSettings(ctx, 7, HookSettings{URLs: []string{"/hook"}})
				return err
			},
			"get location 0": func() error { _, err := c.GetHookSettings(ctx, 0); return err },
			"set location -1": func() error {
				_, err := c.SetHookSettings(ctx, -1, HookSettings{})
				return err
			},
		} {
			if err := call(); !errors.Is(err, ErrInvalidRequest) || ClassOf(err) != ClassPermanent {
				t.Errorf("%s: err = %v, want ErrInvalidRequest", name, err)
			}
		}
		if n := len(s.requests()); n != 0 {
			t.Errorf("%d requests sent, want none", n)
		}
	})
	t.Run("ten unique urls and a duplicate are sent", func(t *testing.T) {
		t.Parallel()
		s := newAPIServer(t, reply{status: 201, body: `{"success":true,"data":{"urls":[],"active":0},"meta":[]}`})
		if _, err := newTestClient(t, s, nil, nil).SetHookSettings(context.Background(), 7, HookSettings{URLs: tenWithDuplicate}); err != nil {
			t.Fatalf("SetHookSettings: %v", err)
		}
	})
	t.Run("422", func(t *testing.T) {
		t.Parallel()
		s := newAPIServer(t, reply{status: 422, body: `{"success":false,"data":null,"meta":{"message":"An error has occurred.","errors":["The urls field is required."]}}`})
		_, err := newTestClient(t, s, nil, nil).SetHookSettings(context.Background(), 7, HookSettings{})
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != 422 || ClassOf(err) != ClassPermanent || len(ae.FieldErrors) != 1 {
			t.Fatalf("err = %#v, want a permanent 422 APIError with the field error", err)
		}
	})
	t.Run("201 without settings is an unknown outcome", func(t *testing.T) {
		t.Parallel()
		for _, body := range []string{`{"success":true,"data":null,"meta":[]}`, `{"success":true,"data":[1],"meta":[]}`, ``} {
			s := newAPIServer(t, reply{status: 201, body: body})
			_, err := newTestClient(t, s, nil, nil).SetHookSettings(context.Background(), 7, HookSettings{})
			if !OutcomeUnknown(err) || ClassOf(err) != ClassTransient {
				t.Errorf("body %q: err = %v, want a transient *TransportError", body, err)
			}
		}
	})
	t.Run("get answering a list of items", func(t *testing.T) {
		t.Parallel()
		s := newAPIServer(t, reply{status: 200, body: `{"success":true,"data":[{"urls":[]}],"meta":[]}`})
		if _, err := newTestClient(t, s, nil, nil).GetHookSettings(context.Background(), 7); !OutcomeUnknown(err) {
			t.Errorf("err = %v, want a decode error", err)
		}
	})
}

// FuzzDecodeHookSettings feeds arbitrary bytes to the settings decoder: it
// must never panic, and decoded settings must survive a JSON round trip.
func FuzzDecodeHookSettings(f *testing.F) {
	for _, seed := range []string{
		`{"urls":["https://example.com/hook"],"active":1,"client":1,"self_sending":0}`,
		`{"urls":null,"active":"1","client":true,"url_settings":[{"url":"https://a.example/"},{"url":5},null,"x"]}`,
		`{"urls":[1,"",null],"url_settings":{"https://b.example/":{"client":1},"k":{"url":"https://c.example/"},"z":[]}}`,
		`null`, `[]`, `{`, ``, `{"urls":{}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var h HookSettings
		if err := json.Unmarshal(data, &h); err != nil {
			return
		}
		b, err := json.Marshal(h)
		if err != nil {
			t.Fatalf("Marshal of decoded settings: %v", err)
		}
		var again HookSettings
		if err := json.Unmarshal(b, &again); err != nil {
			t.Fatalf("decode of re-encoded settings %s: %v", b, err)
		}
		if !reflect.DeepEqual(again, h) {
			t.Fatalf("round trip changed the settings:\n%+v\n%+v", h, again)
		}
		_ = h.Validate()
	})
}
