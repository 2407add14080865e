package commands_test

import (
	"errors"
	"fmt"

	"github.com/altegio-integrator/integrator/internal/commands"
)

func ExampleDecode() {
	c, err := commands.Decode([]byte(`{
		"id": "0193f3c2-7d4e-7b6a-9c1d-2f3e4a5b6c7d",
		"type": "client.update",
		"location_id": 123,
		"client_ref": "crm-42",
		"payload": {"name": "James", "phone": "+1 315 555-0175", "categories": [3]}
	}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	fields, err := c.ClientFields()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(commands.CommandSubject(c))
	fmt.Println(commands.NormalizePhone(*fields.Phone), fields.Categories, fields.Surname == nil)
	// Output:
	// altegio.cmd.123.ref_crm-42.update
	// 13155550175 [3] true
}

func ExampleValidationError() {
	_, err := commands.Decode([]byte(`{"type":"client.create","location_id":0,"payload":{"name":"J","phone":"12","nick":"x"}}`))
	var ve *commands.ValidationError
	if errors.As(err, &ve) {
		for _, p := range ve.Problems {
			fmt.Printf("%s: %s\n", p.Path, p.Reason)
		}
	}
	// Output:
	// location_id: must be greater than 0
	// payload.nick: unknown field
	// payload.phone: must have 9 to 15 digits, with an optional leading + and the separators space, -, ( and )
}
