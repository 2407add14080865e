package reads

import (
	"testing"
	"time"

	"github.com/altegio-integrator/integrator/internal/altegio"
)

// A filter is taken as dropped only when no row matches it: rows some of
// which match are the API's reading, not the trap.
func TestDroppedFilter(t *testing.T) {
	at := func(s string) time.Time { v, _ := time.Parse(time.RFC3339, s); return v }
	rows := []altegio.ClientRecord{
		{ID: 1, Name: "Ann", Phone: "+1 315 555 0175", Paid: 10, LastChangeDate: "2026-12-07T23:30:00+0000"},
		{ID: 2, Name: "Bo", Phone: "13155550176", Paid: 0, LastChangeDate: "2026-12-08T01:00:00+0000"},
	}
	for _, tc := range []struct {
		name string
		p    altegio.ListClientsParams
		want bool
	}{
		{"no filter", altegio.ListClientsParams{}, false},
		{"a name that matches nobody: dropped", altegio.ListClientsParams{Fullname: "zed"}, true},
		{"a name one row matches: our reading differs, the API's stands", altegio.ListClientsParams{Fullname: "ann"}, false},
		{"phone digits every row has", altegio.ListClientsParams{Phone: "315-555"}, false},
		{"ids none of which came back: dropped", altegio.ListClientsParams{IDs: []int64{9}}, true},
		{"paid above what anyone paid: dropped", altegio.ListClientsParams{PaidMin: new(100.0)}, true},
		// Changed after 2026-12-08T00:00 read in a zone three hours east
		// of UTC is 21:00Z: both rows, though one is before midnight UTC.
		{"a window read in the location's zone", altegio.ListClientsParams{ChangedAfter: at("2026-12-08T00:00:00Z")}, false},
		{"a window a week away: dropped", altegio.ListClientsParams{ChangedAfter: at("2026-12-15T00:00:00Z")}, true},
	} {
		if got := droppedFilter(tc.p, rows); got != tc.want {
			t.Errorf("%s: dropped = %v, want %v", tc.name, got, tc.want)
		}
	}
	if droppedFilter(altegio.ListClientsParams{Fullname: "zed"}, nil) {
		t.Error("an empty page is taken as a dropped filter")
	}
}
