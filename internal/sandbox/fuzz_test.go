package sandbox

import (
	"encoding/json"
	"testing"
)

func FuzzParseAuthorization(f *testing.F) {
	for _, s := range []string{"Bearer p, User u", "Bearer p,User u", "Bearer p", "bearer  p ,  user  u", "User u", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		partner, user, ok := parseAuthorization(h)
		if ok && partner == "" {
			t.Errorf("parseAuthorization(%q) ok with an empty partner", h)
		}
		if !ok && (partner != "" || user != "") {
			t.Errorf("parseAuthorization(%q) returned tokens with ok=false", h)
		}
	})
}

func FuzzClientForm(f *testing.F) {
	for _, s := range []string{
		`{"name":"A","phone":"79990001122","labels":[1],"custom_fields":{"a":1}}`,
		`{"phone":79990001122,"gender_id":"1","birth_date":"x","custom_fields":[]}`,
		`{"name":null,"card":123,"custom_fields":{"a":{"b":1}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fields, err := decodeObject(body)
		if err != nil {
			return
		}
		form := readClientForm(fields, "labels", true)
		if len(form.errs) == 0 && (form.rec.Name == "" || len(form.rec.Phone) < 9) {
			t.Errorf("accepted %s without a name or a valid phone", body)
		}
		// Rendering any accepted or seeded record must not fail.
		rec := form.rec
		for _, st := range []clientStyle{styleCard, styleCreated, styleLegacy} {
			if _, err := json.Marshal(renderClient(&rec, st, false)); err != nil {
				t.Errorf("render: %v", err)
			}
		}
	})
}

func FuzzSearchFilter(f *testing.F) {
	for _, s := range []string{
		`{"type":"id","state":{"value":[1]}}`,
		`{"type":"quick_search","state":{"value":"+7 999"}}`,
		`{"type":"sold_amount","state":{"from":1,"invert":true}}`,
		`{"type":"record","state":{}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var sf searchFilter
		if json.Unmarshal(body, &sf) != nil {
			return
		}
		p, msg := compileFilter(sf)
		if (p == nil) == (msg == "") {
			t.Fatalf("compileFilter(%s): predicate %v, message %q", body, p != nil, msg)
		}
		if p != nil {
			p(&ClientRecord{Name: "A", Phone: "79990001122", Categories: []int64{1}})
		}
	})
}
