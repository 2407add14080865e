package producer_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/producer"
)

func ExampleNewHTTP() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := producer.NewHTTP("http://127.0.0.1:8080", "dev-producer-key")
	if err != nil {
		log.Fatal(err)
	}
	create := producer.CreateClient(1, "crm-42", producer.Client{Name: "James", Phone: "+13155550175", Email: new("j@example.com")})
	note := producer.AddComment(1, producer.ByRef("crm-42"), "Prefers morning visits")
	receipts, err := p.Send(ctx, create, note) // retried on 429/5xx; resending is safe
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range receipts {
		fmt.Println(r.ID, r.Status, r.StreamSeq)
	}
	st, err := p.Wait(ctx, create.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(st.State, st.Result.ClientID)
}

func ExampleNewNATS() {
	nc, err := nats.Connect("nats://127.0.0.1:4222")
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Drain()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	p, err := producer.NewNATS(js)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	receipts, err := p.Send(ctx,
		producer.CreateClient(1, "crm-43", producer.Client{Name: "Ada", Phone: "+13155550176"}),
		producer.AddComment(1, producer.ByRef("crm-43"), "Imported from the CRM"),
	)
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range receipts {
		fmt.Println(r.ID, r.StreamSeq, r.Duplicate())
	}
}

func ExampleCreateClient() {
	c := producer.CreateClient(1, "crm-42", producer.Client{Name: "James", Phone: "+13155550175", GenderID: new(1)})
	// The constructors set a fresh id (a UUIDv7) and the time; fixed here
	// for the output.
	c.ID, c.OccurredAt = "0193f3c2-7d4e-7b6a-9c1d-2f3e4a5b6c7d", time.Time{}
	c.CorrelationID = "order-77"
	data, err := json.Marshal(c)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(data))
	// Output:
	// {"schema_version":1,"id":"0193f3c2-7d4e-7b6a-9c1d-2f3e4a5b6c7d","type":"client.create","location_id":1,"client_ref":"crm-42","payload":{"name":"James","phone":"+13155550175","gender_id":1},"correlation_id":"order-77"}
}

func ExampleUpdateClient() {
	// Only the fields present change: the email is set, the surname
	// cleared, everything else kept. Name and phone are always required.
	c := producer.UpdateClient(1, producer.ByRef("crm-42"), producer.Client{
		Name: "James", Phone: "+13155550175", Email: new("james@example.com"), Surname: new(""),
	})
	fmt.Println(c.Type, c.ClientRef, string(c.Payload))
	// Output:
	// client.update crm-42 {"name":"James","phone":"+13155550175","surname":"","email":"james@example.com"}
}

func ExampleCommand_Validate() {
	c := producer.CreateClient(0, "crm 42", producer.Client{Name: "James", Phone: "12"})
	err := c.Validate()
	var ve *producer.ValidationError
	if errors.As(err, &ve) {
		for _, p := range ve.Problems {
			fmt.Printf("%s: %s\n", p.Path, p.Reason)
		}
	}
	fmt.Println(errors.Is(err, producer.ErrInvalidCommand))
	// Output:
	// location_id: must be greater than 0
	// client_ref: must be printable characters without whitespace
	// payload.phone: must have 9 to 15 digits, with an optional leading + and the separators space, -, ( and )
	// true
}
