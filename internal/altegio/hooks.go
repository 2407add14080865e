package altegio

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"slices"
)

// Operation names of the webhook settings calls.
const (
	OpGetHookSettings = "hooks.get"
	OpSetHookSettings = "hooks.set"
)

// MaxHookURLs is the most unique URLs a location's webhook settings may
// hold (reference §7).
const MaxHookURLs = 10

// HookSettings are a location's webhook settings, the body of POST
// /hooks_settings/{location_id} (reference §7). They are location-wide:
// the event flags apply to every URL, including URLs other systems
// installed, and a write replaces them all, so change them by reading,
// merging and writing back.
//
// On the wire every flag is the integer 0 or 1; MarshalJSON writes every
// key. UnmarshalJSON reads 0/1, booleans and numeric strings, and takes the
// URLs from "urls" and from the newer backend's per-URL "url_settings"
// (entries with a "url"), whose per-URL flags are otherwise ignored: the
// body has no place for them.
type HookSettings struct {
	// URLs receive the events; at most MaxHookURLs unique absolute http(s)
	// URLs. Nil is sent as [].
	URLs []string
	// Active turns every delivery on or off.
	Active bool
	// Client sends client create, update and delete events.
	Client bool
	// The other event kinds (appointments, the location, services, service
	// categories, team members, goods, goods operations and finances).
	Record                    bool
	Salon                     bool
	Service                   bool
	ServiceCategory           bool
	Master                    bool
	Good                      bool
	GoodsOperationsSale       bool
	GoodsOperationsReceipt    bool
	GoodsOperationsConsumable bool
	GoodsOperationsStolen     bool
	GoodsOperationsMove       bool
	FinancesOperation         bool
	// SelfSending sends the user who wrote the settings the events of their
	// own changes too; when false, changes made with that user's token are
	// not sent.
	SelfSending bool
}

// HookResources are the resources Altegio sends webhooks about, named as
// their flags in POST /hooks_settings, in the reference's order.
var HookResources = []string{
	"client", "record", "salon", "service", "service_category", "master", "good",
	"goods_operations_sale", "goods_operations_receipt", "goods_operations_consumable",
	"goods_operations_stolen", "goods_operations_move", "finances_operation",
}

// Events returns the resources (HookResources) whose events s turns on.
func (s HookSettings) Events() []string {
	on := []bool{s.Client, s.Record, s.Salon, s.Service, s.ServiceCategory, s.Master, s.Good,
		s.GoodsOperationsSale, s.GoodsOperationsReceipt, s.GoodsOperationsConsumable,
		s.GoodsOperationsStolen, s.GoodsOperationsMove, s.FinancesOperation}
	var out []string
	for i, r := range HookResources {
		if on[i] {
			out = append(out, r)
		}
	}
	return out
}

// hookWire is HookSettings as the API spells it.
type hookWire struct {
	URLs                      []string `json:"urls"`
	Active                    wireFlag `json:"active"`
	Client                    wireFlag `json:"client"`
	Record                    wireFlag `json:"record"`
	Salon                     wireFlag `json:"salon"`
	Service                   wireFlag `json:"service"`
	ServiceCategory           wireFlag `json:"service_category"`
	Master                    wireFlag `json:"master"`
	Good                      wireFlag `json:"good"`
	GoodsOperationsSale       wireFlag `json:"goods_operations_sale"`
	GoodsOperationsReceipt    wireFlag `json:"goods_operations_receipt"`
	GoodsOperationsConsumable wireFlag `json:"goods_operations_consumable"`
	GoodsOperationsStolen     wireFlag `json:"goods_operations_stolen"`
	GoodsOperationsMove       wireFlag `json:"goods_operations_move"`
	FinancesOperation         wireFlag `json:"finances_operation"`
	SelfSending               wireFlag `json:"self_sending"`
}

// wireFlag is a flag written as 0 or 1 and read tolerantly.
type wireFlag bool

func (f wireFlag) MarshalJSON() ([]byte, error) {
	if f {
		return []byte("1"), nil
	}
	return []byte("0"), nil
}

func (f *wireFlag) UnmarshalJSON(raw []byte) error {
	var b flexBool
	_ = b.UnmarshalJSON(raw)
	*f = wireFlag(b)
	return nil
}

func (h HookSettings) wire() hookWire {
	urls := h.URLs
	if urls == nil {
		urls = []string{}
	}
	return hookWire{
		URLs: urls, Active: wireFlag(h.Active), Client: wireFlag(h.Client), Record: wireFlag(h.Record),
		Salon: wireFlag(h.Salon), Service: wireFlag(h.Service), ServiceCategory: wireFlag(h.ServiceCategory),
		Master: wireFlag(h.Master), Good: wireFlag(h.Good), GoodsOperationsSale: wireFlag(h.GoodsOperationsSale),
		GoodsOperationsReceipt:    wireFlag(h.GoodsOperationsReceipt),
		GoodsOperationsConsumable: wireFlag(h.GoodsOperationsConsumable),
		GoodsOperationsStolen:     wireFlag(h.GoodsOperationsStolen),
		GoodsOperationsMove:       wireFlag(h.GoodsOperationsMove),
		FinancesOperation:         wireFlag(h.FinancesOperation), SelfSending: wireFlag(h.SelfSending),
	}
}

// MarshalJSON writes the documented body: "urls" ([] when empty) and every
// flag as 0 or 1.
func (h HookSettings) MarshalJSON() ([]byte, error) {
	return json.Marshal(h.wire())
}

// UnmarshalJSON reads settings tolerantly (see HookSettings). null leaves
// the zero value; a value that is not an object is an error.
func (h *HookSettings) UnmarshalJSON(raw []byte) error {
	var w struct {
		hookWire
		URLs        json.RawMessage `json:"urls"`
		URLSettings json.RawMessage `json:"url_settings"`
	}
	if ok, err := unmarshalObject(raw, &w); !ok {
		return err
	}
	*h = HookSettings{
		Active: bool(w.Active), Client: bool(w.Client), Record: bool(w.Record), Salon: bool(w.Salon),
		Service: bool(w.Service), ServiceCategory: bool(w.ServiceCategory), Master: bool(w.Master),
		Good: bool(w.Good), GoodsOperationsSale: bool(w.GoodsOperationsSale),
		GoodsOperationsReceipt:    bool(w.GoodsOperationsReceipt),
		GoodsOperationsConsumable: bool(w.GoodsOperationsConsumable),
		GoodsOperationsStolen:     bool(w.GoodsOperationsStolen),
		GoodsOperationsMove:       bool(w.GoodsOperationsMove),
		FinancesOperation:         bool(w.FinancesOperation), SelfSending: bool(w.SelfSending),
	}
	add := func(u string) {
		if u != "" && !slices.Contains(h.URLs, u) {
			h.URLs = append(h.URLs, u)
		}
	}
	urls, _ := decodeList[flexString](w.URLs)
	for _, u := range urls {
		add(string(u))
	}
	for _, u := range urlSettingsURLs(w.URLSettings) {
		add(u)
	}
	return nil
}

// urlSettingsURLs reads the URLs of the newer backend's url_settings, whose
// shape the reference does not give: a list of objects with "url", or an
// object of such objects (the key is the URL when the entry has none).
// Anything else yields nothing.
func urlSettingsURLs(raw json.RawMessage) []string {
	type entry struct {
		URL flexString `json:"url"`
	}
	var out []string
	switch jsonKind(raw) {
	case '[':
		var list []json.RawMessage
		if json.Unmarshal(raw, &list) != nil {
			return nil
		}
		for _, item := range list {
			var e entry
			if ok, _ := unmarshalObject(item, &e); ok {
				out = append(out, string(e.URL))
			}
		}
	case '{':
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) != nil {
			return nil
		}
		for _, k := range sortedKeys(m) {
			var e entry
			if ok, _ := unmarshalObject(m[k], &e); !ok {
				continue
			}
			if e.URL != "" {
				out = append(out, string(e.URL))
			} else if validHookURL(k) {
				out = append(out, k)
			}
		}
	}
	return out
}

// Validate reports settings the API would refuse: more than MaxHookURLs
// unique URLs, or a URL that is not an absolute http or https URL.
func (h HookSettings) Validate() error {
	var unique []string
	for _, u := range h.URLs {
		if !validHookURL(u) {
			return fmt.Errorf("webhook url %q is not an absolute http or https URL", u)
		}
		if !slices.Contains(unique, u) {
			unique = append(unique, u)
		}
	}
	if len(unique) > MaxHookURLs {
		return fmt.Errorf("%d webhook urls, at most %d are allowed", len(unique), MaxHookURLs)
	}
	return nil
}

func validHookURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// GetHookSettings reads a location's webhook settings: GET
// /hooks_settings/{location_id}. A location without settings reads as the
// zero HookSettings (no URLs, inactive); so does an answer whose data is
// null or [].
func (c *Client) GetHookSettings(ctx context.Context, locationID int64) (HookSettings, error) {
	if err := checkID(OpGetHookSettings, "location id", locationID); err != nil {
		return HookSettings{}, err
	}
	r := request{op: OpGetHookSettings, method: http.MethodGet, location: locationID,
		path: fmt.Sprintf("/hooks_settings/%d", locationID)}
	return c.hookCall(ctx, r)
}

// SetHookSettings replaces a location's webhook settings: POST
// /hooks_settings/{location_id} with every key of s, answered 201 with the
// settings as stored, which it returns. URLs and flags left out are
// deleted for every app of the location, so read, merge and write (see
// HookSettings). Settings that break the documented limits are refused
// before sending (ErrInvalidRequest). The write is idempotent: repeating
// it with the same s gives the same state, so it may be retried after a
// *TransportError.
func (c *Client) SetHookSettings(ctx context.Context, locationID int64, s HookSettings) (HookSettings, error) {
	const op = OpSetHookSettings
	if err := checkID(op, "location id", locationID); err != nil {
		return HookSettings{}, err
	}
	if err := s.Validate(); err != nil {
		return HookSettings{}, invalidRequest(op, "%v", err)
	}
	r := request{op: op, method: http.MethodPost, location: locationID,
		path: fmt.Sprintf("/hooks_settings/%d", locationID), body: s}
	return c.hookCall(ctx, r)
}

// WithURL returns s with url added (when absent) and client events on
// (active and client); every other URL and flag is kept. selfSending sets
// self_sending; nil keeps it, except that a location without any URL gets
// it on, so that an integrator also receives (and can recognise) its own
// changes. It fails when url would be more than MaxHookURLs.
func (s HookSettings) WithURL(hookURL string, selfSending *bool) (HookSettings, error) {
	fresh := len(s.URLs) == 0
	s.URLs = slices.Clone(s.URLs)
	if !slices.Contains(s.URLs, hookURL) {
		if len(s.URLs) >= MaxHookURLs {
			return s, fmt.Errorf("%d webhook URLs are registered, the most Altegio allows: unregister one before adding %s", len(s.URLs), hookURL)
		}
		s.URLs = append(s.URLs, hookURL)
	}
	s.Active, s.Client = true, true
	switch {
	case selfSending != nil:
		s.SelfSending = *selfSending
	case fresh:
		s.SelfSending = true
	}
	return s, nil
}

// WithoutURL returns s without url; every other URL and flag is kept,
// except that no URL left means inactive.
func (s HookSettings) WithoutURL(hookURL string) HookSettings {
	if !slices.Contains(s.URLs, hookURL) {
		return s
	}
	s.URLs = slices.DeleteFunc(slices.Clone(s.URLs), func(u string) bool { return u == hookURL })
	if len(s.URLs) == 0 {
		s.URLs, s.Active = nil, false
	}
	return s
}

// ChangeHookSettings reads the settings of a location, applies change and
// writes the result back unless it equals what was read: the
// read-merge-write that POST /hooks_settings needs, since it replaces the
// whole settings of the location (another system's URL must survive). It
// returns the settings before and after. Not atomic: a system writing
// between the read and the write loses its change or ours.
func (c *Client) ChangeHookSettings(ctx context.Context, locationID int64, change func(HookSettings) (HookSettings, error)) (before, after HookSettings, err error) {
	if before, err = c.GetHookSettings(ctx, locationID); err != nil {
		return before, before, err
	}
	if after, err = change(before); err != nil {
		return before, before, err
	}
	if reflect.DeepEqual(before, after) {
		return before, before, nil
	}
	after, err = c.SetHookSettings(ctx, locationID, after)
	return before, after, err
}

func (c *Client) hookCall(ctx context.Context, r request) (HookSettings, error) {
	env, status, err := c.call(ctx, r)
	if err != nil {
		return HookSettings{}, err
	}
	// A GET of a location without settings may answer null or PHP's empty
	// object []; a POST must answer the settings it stored.
	if r.method == http.MethodGet && (jsonKind(env.Data) == 'n' || emptyJSONArray(env.Data)) {
		return HookSettings{}, nil
	}
	var out HookSettings
	if err := c.decodeData(r, status, env, &out); err != nil {
		return HookSettings{}, err
	}
	return out, nil
}

// emptyJSONArray reports whether raw is [] (with any spacing).
func emptyJSONArray(raw json.RawMessage) bool {
	var list []json.RawMessage
	return jsonKind(raw) == '[' && json.Unmarshal(raw, &list) == nil && len(list) == 0
}
