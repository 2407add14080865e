package altegio

import (
	"encoding/json"
	"testing"
)

// A card's fingerprint names the edit, not the form: the legacy field
// names of the webhook's data and the current ones of a PUT's answer give
// one fingerprint, statistics do not count, an edited field does.
func TestCardFingerprint(t *testing.T) {
	current := `{"id":7,"name":"Ann","surname":"Lee","middle_name":"M","phone":"+1 315 555 0175","email":"Ann@Example.com","gender_id":2,"categories":[{"id":3},{"id":1}],"custom_fields":{"tier":"gold"},"visits":1,"paid":10,"last_change_date":"2026-12-07T10:00:00+0000"}`
	legacy := `{"id":7,"name":"Ann","surname":"Lee","patronymic":"M","phone":"13155550175","email":"ann@example.com","sex_id":2,"categories":[1,3],"custom_fields":{"tier":"gold"},"visits":9,"paid":99,"last_change_date":"2026-12-07T10:00:05+0000"}`
	edited := `{"id":7,"name":"Ann","surname":"Lee","middle_name":"M","phone":"+1 315 555 0175","email":"ann@example.com","gender_id":2,"categories":[{"id":3},{"id":1}],"custom_fields":{"tier":"silver"}}`
	fp := func(s string) string {
		t.Helper()
		f, ok := CardFingerprint(json.RawMessage(s))
		if !ok {
			t.Fatalf("not a card: %s", s)
		}
		return f
	}
	if fp(current) != fp(legacy) {
		t.Error("the same card in legacy and current names has two fingerprints")
	}
	if fp(current) == fp(edited) {
		t.Error("an edited custom field leaves the fingerprint as it was")
	}
	for _, bad := range []string{`{}`, `[]`, `null`, `{"name":"Ann"}`, `nonsense`} {
		if _, ok := CardFingerprint(json.RawMessage(bad)); ok {
			t.Errorf("CardFingerprint(%s) is ok", bad)
		}
	}
}
