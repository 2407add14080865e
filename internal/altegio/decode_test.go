package altegio

import (
	"encoding/json"
	"net/http"
	"reflect"
	"testing"
	"time"
)

func TestDecodeClientQuirks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		json string
		want ClientRecord
	}{
		{"phone as number", `{"id":1,"phone":13155550178}`, ClientRecord{ID: 1, Phone: "13155550178"}},
		{"phone as string", `{"id":"1","phone":"+1 315 555"}`, ClientRecord{ID: 1, Phone: "+1 315 555"}},
		{"phone as float", `{"phone":1.3155550178e10}`, ClientRecord{Phone: "13155550178"}},
		{"birth date string", `{"birth_date":"1990-04-03"}`, ClientRecord{BirthDate: "1990-04-03"}},
		{"birth date null", `{"birth_date":null}`, ClientRecord{}},
		{"birth date 0", `{"birth_date":0}`, ClientRecord{}},
		{"birth date \"0\"", `{"birth_date":"0"}`, ClientRecord{}},
		{"birth date timestamp string", `{"birth_date":"952041600"}`, ClientRecord{BirthDate: "2000-03-03"}},
		{"birth date timestamp number", `{"birth_date":952041600}`, ClientRecord{BirthDate: "2000-03-03"}},
		{"birth date before 1970", `{"birth_date":-315619200}`, ClientRecord{BirthDate: "1960-01-01"}},
		{"birth date datetime", `{"birth_date":"1990-04-03 00:00:00"}`, ClientRecord{BirthDate: "1990-04-03"}},
		{"birth date unknown kept", `{"birth_date":"03.04.1990"}`, ClientRecord{BirthDate: "03.04.1990"}},
		{"custom fields {}", `{"custom_fields":{}}`, ClientRecord{}},
		{"custom fields []", `{"custom_fields":[]}`, ClientRecord{}},
		{"custom fields object", `{"custom_fields":{"a":"b","n":5}}`, ClientRecord{CustomFields: map[string]any{"a": "b", "n": json.Number("5")}}},
		{"middle_name wins", `{"middle_name":"M","patronymic":"P"}`, ClientRecord{MiddleName: "M"}},
		{"patronymic fallback", `{"middle_name":null,"patronymic":"P"}`, ClientRecord{MiddleName: "P"}},
		{"gender current", `{"gender_id":2,"gender":"Female","sex_id":1,"sex":"Male"}`, ClientRecord{GenderID: 2, Gender: "Female"}},
		{"gender legacy", `{"sex_id":"1","sex":"Male"}`, ClientRecord{GenderID: 1, Gender: "Male"}},
		{"importance", `{"importance_id":3,"importance":"Gold"}`, ClientRecord{ImportanceID: 3, Importance: "Gold"}},
		{"categories", `{"categories":[{"id":3,"title":"VIP","color":"#e8d313"},7]}`,
			ClientRecord{Categories: []Category{{ID: 3, Title: "VIP", Color: "#e8d313"}, {ID: 7}}}},
		{"categories empty object", `{"categories":{}}`, ClientRecord{}},
		{"card as number", `{"card":555888666}`, ClientRecord{Card: "555888666"}},
		{"money as numbers", `{"spent":1000.5,"paid":0,"balance":-1200,"discount":15,"visits":3}`,
			ClientRecord{Spent: 1000.5, Balance: -1200, Discount: 15, Visits: 3}},
		{"money as strings", `{"spent":"1000.50","balance":"-1200","discount":"15","visits":"3"}`,
			ClientRecord{Spent: 1000.5, Balance: -1200, Discount: 15, Visits: 3}},
		{"sms flags as bools", `{"sms_check":true,"sms_not":false,"sms_bot":"1"}`, ClientRecord{SMSCheck: 1, SMSBot: 1}},
		{"odd shapes ignored", `{"name":{"x":1},"email":[1],"spent":"abc"}`, ClientRecord{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got ClientRecord
			if err := json.Unmarshal([]byte(tt.json), &got); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
	for _, bad := range []string{`[]`, `"x"`, `5`, `{`} {
		var c ClientRecord
		if err := json.Unmarshal([]byte(bad), &c); err == nil {
			t.Errorf("Unmarshal(%s) succeeded", bad)
		}
	}
}

func TestClientRecordRoundTripAndInput(t *testing.T) {
	t.Parallel()
	env, err := decodeEnvelope([]byte(clientCardJSON))
	if err != nil {
		t.Fatal(err)
	}
	var c ClientRecord
	if err := json.Unmarshal(env.Data, &c); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var again ClientRecord
	if err := json.Unmarshal(b, &again); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, again) {
		t.Errorf("round trip changed the record:\n%+v\n%+v", c, again)
	}
	in := c.Input()
	if in.Name != "James" || *in.MiddleName != "A" || *in.BirthDate != "1990-04-03" || *in.GenderID != 1 ||
		!reflect.DeepEqual(in.Categories, []int64{3}) || in.CustomFields["vip_note"] != "prefers mornings" {
		t.Errorf("Input = %+v", in)
	}
	body, _ := json.Marshal(in.body(tagsAsLabels, true))
	var m map[string]any
	_ = json.Unmarshal(body, &m)
	if _, ok := m["categories"]; ok || m["labels"] == nil || m["email"] != "" {
		t.Errorf("update body = %s", body)
	}
}

func TestEnvelopeMeta(t *testing.T) {
	t.Parallel()
	for _, meta := range []string{`[]`, `{}`, `null`, `{"total_count":"12"}`} {
		env, err := decodeEnvelope([]byte(`{"success":true,"data":[],"meta":` + meta + `}`))
		if err != nil || env.failed() {
			t.Errorf("meta %s: err %v failed %v", meta, err, env.failed())
		}
		var m struct {
			TotalCount flexInt `json:"total_count"`
		}
		if err := decodeObject(env.Meta, &m); err != nil {
			t.Errorf("meta %s: %v", meta, err)
		}
	}
	if _, err := decodeEnvelope(nil); err == nil {
		t.Error("empty body decoded")
	}
	env, err := decodeEnvelope([]byte(`[{"id":1}]`))
	if err != nil || !env.bare || jsonKind(env.Data) != '[' {
		t.Errorf("raw array: %+v %v", env, err)
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	tests := map[string]time.Duration{
		"":            0,
		"5":           5 * time.Second,
		"0":           0,
		"-3":          0,
		"soon":        0,
		"99999999999": maxRetryAfter,
		now.Add(30 * time.Second).Format(http.TimeFormat): 30 * time.Second,
		now.Add(-time.Hour).Format(http.TimeFormat):       0,
	}
	for in, want := range tests {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestMatchBulk(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		inputs      []ClientInput
		created     []ClientRecord
		errs        []BulkItemError
		want        []BulkOutcome
		unCreated   int
		unErrors    int
		createdFrom map[int]int64 // input index -> created ID
	}{
		{
			name:        "same phone twice: first created, second failed",
			inputs:      []ClientInput{{Name: "A", Phone: "79000000001"}, {Name: "A", Phone: "+7 900 000-00-01"}},
			created:     []ClientRecord{{ID: 10, Name: "A", Phone: "79000000001"}},
			errs:        []BulkItemError{{Phone: "79000000001", Name: "A", Message: "exists"}},
			want:        []BulkOutcome{BulkCreated, BulkFailed},
			createdFrom: map[int]int64{0: 10},
		},
		{
			name:        "phone match despite name normalization by the server",
			inputs:      []ClientInput{{Name: "  ann   lee ", Phone: "079000000002"}},
			created:     []ClientRecord{{ID: 11, Name: "Ann Lee", Phone: "79000000002"}},
			want:        []BulkOutcome{BulkCreated},
			createdFrom: map[int]int64{0: 11},
		},
		{
			name:   "name only prefers the input without phone",
			inputs: []ClientInput{{Name: "Bo", Phone: "79000000003"}, {Name: "Bo"}},
			errs:   []BulkItemError{{Name: "bo", Message: "phone empty"}},
			want:   []BulkOutcome{BulkUnknown, BulkFailed},
		},
		{
			name:      "unattributable API items are reported",
			inputs:    []ClientInput{{Name: "C", Phone: "79000000004"}},
			created:   []ClientRecord{{ID: 12, Name: "Z", Phone: "71111111111"}},
			errs:      []BulkItemError{{Message: "no phone, no name"}},
			want:      []BulkOutcome{BulkUnknown},
			unCreated: 1,
			unErrors:  1,
		},
		{
			name:   "full name with surname and middle name",
			inputs: []ClientInput{{Name: "Ivan", Surname: new("Petrov"), MiddleName: new("Ivanovich"), Phone: "1"}},
			errs:   []BulkItemError{{Name: "Petrov Ivan Ivanovich", Message: "bad"}},
			want:   []BulkOutcome{BulkFailed},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := matchBulk(tt.inputs, tt.created, tt.errs)
			for i, it := range r.Items {
				if it.Outcome != tt.want[i] {
					t.Errorf("input %d: %v, want %v", i, it.Outcome, tt.want[i])
				}
				if id, ok := tt.createdFrom[i]; ok && (it.Client == nil || it.Client.ID != id) {
					t.Errorf("input %d: client %+v, want ID %d", i, it.Client, id)
				}
			}
			if len(r.UnmatchedCreated) != tt.unCreated || len(r.UnmatchedErrors) != tt.unErrors {
				t.Errorf("unmatched created %d errors %d", len(r.UnmatchedCreated), len(r.UnmatchedErrors))
			}
		})
	}
}

func TestNormalizePhoneAndParseTime(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"+7 (921) 323-75-67": "79213237567", "0044 20": "4420", "": "", "abc": ""} {
		if got := NormalizePhone(in); got != want {
			t.Errorf("NormalizePhone(%q) = %q, want %q", in, got, want)
		}
	}
	for _, s := range []string{"2026-05-01T12:00:00-0500", "2026-01-01T12:12:12-05:00", "2023-01-01 12:12:12", "2022-01-31"} {
		if _, err := ParseTime(s); err != nil {
			t.Errorf("ParseTime(%q): %v", s, err)
		}
	}
	if got, _ := ParseTime("2026-05-01T12:00:00-0500"); !got.Equal(time.Date(2026, 5, 1, 17, 0, 0, 0, time.UTC)) {
		t.Errorf("ParseTime offset: %v", got)
	}
	if _, err := ParseTime("yesterday"); err == nil {
		t.Error("ParseTime accepted garbage")
	}
}
