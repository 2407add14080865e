package worker

import (
	"reflect"
	"testing"
	"time"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/sandbox"
)

// An update with mode replace is one PUT and no GET, and the card ends
// equal to the payload: the fields it leaves out are cleared. An update
// without a mode still reads, merges and PUTs, keeping what it leaves out.
func TestUpdateModes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.startWorker(workerOpts{})
	seed := func(phone string) sandbox.ClientRecord {
		rec := sandbox.ClientRecord{
			Name: "Ivy", Surname: "Old", Phone: phone, Email: "ivy@example.com", Card: "C-1",
			Comment: "old note", Discount: 5, Categories: []int64{7},
			CustomFields: map[string]string{"tier": "gold"}, Visits: 3, Paid: 40,
		}
		rec.ID = e.sb.SeedClient(testLoc, rec)
		return rec
	}
	// run publishes an update of client id and returns the sandbox's
	// request counts for it.
	run := func(t *testing.T, id int64, payload any) sandbox.Stats {
		t.Helper()
		c := commands.Command{ID: commands.NewID(), Type: commands.TypeClientUpdate, LocationID: testLoc, ClientID: id}
		must(c.SetPayload(payload))
		e.sb.ResetStats()
		e.publish(c)
		if got := e.waitTerminal(20*time.Second, c.ID)[c.ID]; got.Outcome != commands.OutcomeSucceeded || got.ClientID != id {
			t.Fatalf("result: %+v", got)
		}
		return e.sb.Stats()
	}
	card := func(t *testing.T, id int64) sandbox.ClientRecord {
		t.Helper()
		got, ok := e.sb.Client(testLoc, id)
		if !ok {
			t.Fatalf("client %d not found", id)
		}
		return got
	}

	t.Run("replace", func(t *testing.T) {
		old := seed("15550000800")
		st := run(t, old.ID, commands.UpdatePayload{
			Mode: commands.UpdateReplace,
			ClientFields: commands.ClientFields{
				Name: new("Ivy"), Surname: new("New"), Phone: new("+1 555 000 0801"),
				GenderID: new(2), Categories: []int64{9},
			},
		})
		if st.Requests != 1 || st.ByOp[sandbox.OpClientUpdate] != 1 || st.ByOp[sandbox.OpClientGet] != 0 {
			t.Errorf("requests %d by op %v, want exactly one %s", st.Requests, st.ByOp, sandbox.OpClientUpdate)
		}
		got := card(t, old.ID)
		want := sandbox.ClientRecord{
			ID: old.ID, Name: "Ivy", Surname: "New", Phone: "15550000801", GenderID: 2, Categories: []int64{9},
			Visits: old.Visits, Paid: old.Paid, // not writable through the API
			LastChangeDate: got.LastChangeDate,
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("card after replace:\n got %+v\nwant %+v", got, want)
		}
	})

	t.Run("merge by default", func(t *testing.T) {
		old := seed("15550000810")
		st := run(t, old.ID, commands.ClientFields{Name: new("Ivy"), Phone: new("+15550000810"), Surname: new("New")})
		if st.Requests != 2 || st.ByOp[sandbox.OpClientGet] != 1 || st.ByOp[sandbox.OpClientUpdate] != 1 {
			t.Errorf("requests %d by op %v, want one %s and one %s", st.Requests, st.ByOp, sandbox.OpClientGet, sandbox.OpClientUpdate)
		}
		got := card(t, old.ID)
		want := old
		want.Surname = "New"
		want.LastChangeDate = got.LastChangeDate
		if !reflect.DeepEqual(got, want) {
			t.Errorf("card after merge:\n got %+v\nwant %+v", got, want)
		}
	})

	t.Run("merge of one field keeps name and phone", func(t *testing.T) {
		old := seed("15550000820")
		run(t, old.ID, commands.ClientFields{Email: new("ivy.new@example.com")})
		got := card(t, old.ID)
		want := old
		want.Email = "ivy.new@example.com"
		want.LastChangeDate = got.LastChangeDate
		if !reflect.DeepEqual(got, want) {
			t.Errorf("card after merging one field:\n got %+v\nwant %+v", got, want)
		}
	})
}
