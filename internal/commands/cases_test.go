package commands

import (
	"fmt"
	"strings"
)

// Fixtures for the command table.
const (
	testID      = "0193f3c2-7d4e-7b6a-9c1d-2f3e4a5b6c7d"
	okClient    = `{"name":"James","phone":"+13155550175"}`
	fullClient  = `{"name":"James","phone":"+1 (315) 555-0175","surname":"Smith","middle_name":"A","email":"j.smith@example.com","gender_id":1,"importance_id":3,"discount":12.5,"card":"555888666","birth_date":"2000-02-29","comment":"regular","spent":71842,"balance":-200.5,"sms_check":1,"sms_not":0,"categories":[101,102],"custom_fields":{"vip_note":"prefers mornings","visits":3,"tags":["a"]}}`
	cleared     = `{"name":"James","phone":"13155550175","surname":"","email":"","birth_date":"","card":"","comment":"","categories":[],"custom_fields":{}}`
	commentOK   = `{"text":"Called, prefers mornings"}`
	commentID7  = `{"comment_id":7}`
	fileID9     = `{"file_id":9}`
	longRef     = "r234567890123456789012345678901234567890123456789012345678901234" // 64
	bulkPhoneFm = "+1315555%04d"
)

func create(payload string) string {
	return `{"type":"client.create","location_id":1,"payload":` + payload + `}`
}

func update(payload string) string {
	return `{"type":"client.update","location_id":1,"client_id":7,"payload":` + payload + `}`
}

// client returns okClient with extra members appended.
func client(extra string) string {
	return `{"name":"James","phone":"+13155550175",` + extra + `}`
}

// bulkOf returns a bulk create of n distinct valid clients.
func bulkOf(n int) string {
	items := make([]string, n)
	for i := range items {
		items[i] = fmt.Sprintf(`{"name":"C%d","phone":"`+bulkPhoneFm+`"}`, i, i)
	}
	return bulk(items...)
}

func bulk(items ...string) string {
	return `{"type":"client.bulk_create","location_id":1,"payload":{"clients":[` + strings.Join(items, ",") + `]}}`
}

func withClient(t, payload string) string {
	return `{"type":"` + t + `","location_id":1,"client_id":7,"payload":` + payload + `}`
}

func commentAdd(text string) string {
	return withClient("client.comment.add", `{"text":`+text+`}`)
}

// commandCase is one input for Decode and the JSON Schema. want lists the
// paths of every expected problem, in order; nil means valid. goStricter
// marks inputs the schema accepts but Decode rejects on purpose (see the
// package documentation).
type commandCase struct {
	name       string
	in         string
	want       []string
	goStricter bool
}

var commandCases = []commandCase{
	// Valid commands, one or more per type.
	{name: "create minimal", in: create(okClient)},
	{name: "create every field", in: create(fullClient)},
	{name: "create with ref and envelope extras", in: `{"schema_version":1,"id":"` + testID + `","type":"client.create","location_id":42,"client_ref":"crm-42","payload":` + okClient + `,"correlation_id":"req 1/a","occurred_at":"2026-11-30T10:00:00.123+01:00"}`},
	{name: "schema_version 0", in: `{"schema_version":0,"type":"client.create","location_id":1,"payload":` + okClient + `}`},
	{name: "empty id is assigned later", in: `{"id":"","type":"client.create","location_id":1,"payload":` + okClient + `}`},
	{name: "update by id", in: update(fullClient)},
	{name: "update clearing fields", in: update(cleared)},
	{name: "update by ref", in: `{"type":"client.update","location_id":1,"client_ref":"crm.42/ü","payload":` + okClient + `}`},
	{name: "update by id and ref", in: `{"type":"client.update","location_id":1,"client_id":7,"client_ref":"crm-42","payload":` + okClient + `}`},
	{name: "update mode merge", in: update(client(`"mode":"merge"`))},
	{name: "update one field", in: update(`{"email":"j@example.com"}`)},
	{name: "update one field, mode merge", in: update(`{"mode":"merge","surname":"Smith"}`)},
	{name: "update mode replace", in: update(client(`"mode":"replace"`))},
	{name: "update replace every field", in: update(`{"mode":"replace",` + fullClient[1:])},
	{name: "delete without payload", in: `{"type":"client.delete","location_id":1,"client_id":7}`},
	{name: "delete null payload", in: `{"type":"client.delete","location_id":1,"client_ref":"x","payload":null}`},
	{name: "delete empty payload", in: `{"type":"client.delete","location_id":1,"client_id":7,"payload":{}}`},
	{name: "bulk one", in: bulk(okClient)},
	{name: "bulk max", in: bulkOf(MaxBulkClients)},
	{name: "bulk full items", in: bulk(strings.Replace(fullClient, `,"custom_fields":{"vip_note":"prefers mornings","visits":3,"tags":["a"]}`, "", 1))},
	{name: "comment add", in: commentAdd(`"Called, prefers mornings"`)},
	{name: "comment add 255 runes", in: commentAdd(`"` + strings.Repeat("é", 255) + `"`)},
	{name: "comment delete", in: withClient("client.comment.delete", commentID7)},
	{name: "file delete", in: withClient("client.file.delete", fileID9)},
	{name: "phone with separators", in: create(`{"name":"J","phone":"+7 921 323-75-67"}`)},
	{name: "phone 9 digits", in: create(`{"name":"J","phone":"123456789"}`)},
	{name: "phone 15 digits", in: create(`{"name":"J","phone":"123456789012345"}`)},
	{name: "ref 64 chars", in: `{"type":"client.delete","location_id":1,"client_ref":"` + longRef + `"}`},
	{name: "correlation 128 chars", in: `{"type":"client.delete","location_id":1,"client_id":1,"correlation_id":"` + strings.Repeat("c", 128) + `"}`},
	{name: "occurred_at Z", in: `{"type":"client.delete","location_id":1,"client_id":1,"occurred_at":"2026-11-30T10:00:00Z"}`},
	{name: "custom field nested value", in: create(client(`"custom_fields":{"k":{"nested":[1,null]}}`))},

	// Document and envelope.
	{name: "not an object", in: `[1]`, want: []string{""}},
	{name: "string document", in: `"client.create"`, want: []string{""}},
	{name: "unknown field", in: `{"type":"client.delete","location_id":1,"client_id":7,"extra":1}`, want: []string{"extra"}},
	{name: "unknown odd field", in: `{"type":"client.delete","location_id":1,"client_id":7,"a.b":1}`, want: []string{`["a.b"]`}},
	{name: "legacy company_id", in: `{"type":"client.delete","company_id":1,"location_id":1,"client_id":7}`, want: []string{"company_id"}},
	{name: "duplicate field", in: `{"type":"client.delete","location_id":1,"location_id":2,"client_id":7}`, want: []string{"location_id"}, goStricter: true},
	{name: "schema_version 2", in: `{"schema_version":2,"type":"client.delete","location_id":1,"client_id":7}`, want: []string{"schema_version"}},
	{name: "schema_version string", in: `{"schema_version":"1","type":"client.delete","location_id":1,"client_id":7}`, want: []string{"schema_version"}},
	{name: "id not a uuid", in: `{"id":"abc","type":"client.delete","location_id":1,"client_id":7}`, want: []string{"id"}},
	{name: "id upper case", in: `{"id":"` + strings.ToUpper(testID) + `","type":"client.delete","location_id":1,"client_id":7}`, want: []string{"id"}},
	{name: "id braces", in: `{"id":"{` + testID + `}","type":"client.delete","location_id":1,"client_id":7}`, want: []string{"id"}},
	{name: "id nil uuid", in: `{"id":"00000000-0000-0000-0000-000000000000","type":"client.delete","location_id":1,"client_id":7}`, want: []string{"id"}},
	{name: "id number", in: `{"id":1,"type":"client.delete","location_id":1,"client_id":7}`, want: []string{"id"}},
	{name: "type missing", in: `{"location_id":1,"client_id":7}`, want: []string{"type"}},
	{name: "type unknown", in: `{"type":"client.merge","location_id":1,"client_id":7,"payload":{"x":1}}`, want: []string{"type"}},
	{name: "type empty", in: `{"type":"","location_id":1,"client_id":7}`, want: []string{"type"}},
	{name: "type null", in: `{"type":null,"location_id":1,"client_id":7}`, want: []string{"type"}},
	{name: "location missing", in: `{"type":"client.delete","client_id":7}`, want: []string{"location_id"}},
	{name: "location zero", in: `{"type":"client.delete","location_id":0,"client_id":7}`, want: []string{"location_id"}},
	{name: "location negative", in: `{"type":"client.delete","location_id":-5,"client_id":7}`, want: []string{"location_id"}},
	{name: "location string", in: `{"type":"client.delete","location_id":"1","client_id":7}`, want: []string{"location_id"}},
	{name: "location fraction", in: `{"type":"client.delete","location_id":1.5,"client_id":7}`, want: []string{"location_id"}},
	{name: "location 1.0", in: `{"type":"client.delete","location_id":1.0,"client_id":7}`, want: []string{"location_id"}, goStricter: true},
	{name: "location exponent", in: `{"type":"client.delete","location_id":1e2,"client_id":7}`, want: []string{"location_id"}, goStricter: true},
	{name: "location overflow", in: `{"type":"client.delete","location_id":9223372036854775808,"client_id":7}`, want: []string{"location_id"}},
	{name: "client_id zero", in: `{"type":"client.delete","location_id":1,"client_id":0}`, want: []string{"client_id"}},
	{name: "client_id negative", in: `{"type":"client.delete","location_id":1,"client_id":-1}`, want: []string{"client_id"}},
	{name: "client_id null", in: `{"type":"client.delete","location_id":1,"client_id":null,"client_ref":"x"}`, want: []string{"client_id"}},
	{name: "create with client_id", in: `{"type":"client.create","location_id":1,"client_id":7,"payload":` + okClient + `}`, want: []string{"client_id"}},
	{name: "update without client", in: `{"type":"client.update","location_id":1,"payload":` + okClient + `}`, want: []string{"client_id"}},
	{name: "delete without client", in: `{"type":"client.delete","location_id":1}`, want: []string{"client_id"}},
	{name: "comment add without client", in: `{"type":"client.comment.add","location_id":1,"payload":` + commentOK + `}`, want: []string{"client_id"}},
	{name: "comment delete without client", in: `{"type":"client.comment.delete","location_id":1,"payload":` + commentID7 + `}`, want: []string{"client_id"}},
	{name: "file delete without client", in: `{"type":"client.file.delete","location_id":1,"payload":` + fileID9 + `}`, want: []string{"client_id"}},
	{name: "bulk with client_id", in: `{"type":"client.bulk_create","location_id":1,"client_id":7,"payload":{"clients":[` + okClient + `]}}`, want: []string{"client_id"}},
	{name: "bulk with client_ref", in: `{"type":"client.bulk_create","location_id":1,"client_ref":"x","payload":{"clients":[` + okClient + `]}}`, want: []string{"client_ref"}},
	{name: "ref empty", in: `{"type":"client.delete","location_id":1,"client_id":7,"client_ref":""}`, want: []string{"client_ref"}},
	{name: "ref too long", in: `{"type":"client.delete","location_id":1,"client_ref":"` + longRef + `x"}`, want: []string{"client_ref"}},
	{name: "ref with space", in: `{"type":"client.delete","location_id":1,"client_ref":"crm 42"}`, want: []string{"client_ref"}},
	{name: "ref with tab", in: `{"type":"client.delete","location_id":1,"client_ref":"crm\t42"}`, want: []string{"client_ref"}},
	{name: "ref with control", in: `{"type":"client.delete","location_id":1,"client_ref":"crm\u000742"}`, want: []string{"client_ref"}},
	{name: "ref with nbsp", in: `{"type":"client.delete","location_id":1,"client_ref":"crm\u00a042"}`, want: []string{"client_ref"}},
	{name: "correlation empty", in: `{"type":"client.delete","location_id":1,"client_id":1,"correlation_id":""}`, want: []string{"correlation_id"}},
	{name: "correlation too long", in: `{"type":"client.delete","location_id":1,"client_id":1,"correlation_id":"` + strings.Repeat("c", 129) + `"}`, want: []string{"correlation_id"}},
	{name: "correlation newline", in: `{"type":"client.delete","location_id":1,"client_id":1,"correlation_id":"a\nb"}`, want: []string{"correlation_id"}},
	{name: "occurred_at space", in: `{"type":"client.delete","location_id":1,"client_id":1,"occurred_at":"2026-11-30 10:00:00Z"}`, want: []string{"occurred_at"}},
	{name: "occurred_at no zone", in: `{"type":"client.delete","location_id":1,"client_id":1,"occurred_at":"2026-11-30T10:00:00"}`, want: []string{"occurred_at"}},
	{name: "occurred_at impossible date", in: `{"type":"client.delete","location_id":1,"client_id":1,"occurred_at":"2026-02-30T10:00:00Z"}`, want: []string{"occurred_at"}},
	{name: "occurred_at one-digit hour", in: `{"type":"client.delete","location_id":1,"client_id":1,"occurred_at":"2026-11-30T1:00:00Z"}`, want: []string{"occurred_at"}},
	{name: "occurred_at zone out of range", in: `{"type":"client.delete","location_id":1,"client_id":1,"occurred_at":"2026-11-30T10:00:00+24:00"}`, want: []string{"occurred_at"}},
	{name: "occurred_at number", in: `{"type":"client.delete","location_id":1,"client_id":1,"occurred_at":1764496800}`, want: []string{"occurred_at"}},

	// Payload presence and shape.
	{name: "create without payload", in: `{"type":"client.create","location_id":1}`, want: []string{"payload"}},
	{name: "create null payload", in: `{"type":"client.create","location_id":1,"payload":null}`, want: []string{"payload"}},
	{name: "create array payload", in: `{"type":"client.create","location_id":1,"payload":[]}`, want: []string{"payload"}},
	{name: "delete with payload field", in: `{"type":"client.delete","location_id":1,"client_id":7,"payload":{"force":true}}`, want: []string{"payload.force"}},
	{name: "delete string payload", in: `{"type":"client.delete","location_id":1,"client_id":7,"payload":"x"}`, want: []string{"payload"}},

	// Client fields.
	{name: "name missing", in: create(`{"phone":"+13155550175"}`), want: []string{"payload.name"}},
	{name: "phone missing", in: create(`{"name":"James"}`), want: []string{"payload.phone"}},
	{name: "update changes nothing", in: update(`{}`), want: []string{"payload"}},
	{name: "update with mode only changes nothing", in: update(`{"mode":"merge"}`), want: []string{"payload"}, goStricter: true},
	{name: "update name empty", in: update(`{"name":""}`), want: []string{"payload.name"}},
	{name: "name empty", in: create(`{"name":"","phone":"+13155550175"}`), want: []string{"payload.name"}},
	{name: "name blank", in: create(`{"name":"  \t","phone":"+13155550175"}`), want: []string{"payload.name"}},
	{name: "name too long", in: create(`{"name":"` + strings.Repeat("n", 256) + `","phone":"+13155550175"}`), want: []string{"payload.name"}},
	{name: "name number", in: create(`{"name":5,"phone":"+13155550175"}`), want: []string{"payload.name"}},
	{name: "name null", in: create(`{"name":null,"phone":"+13155550175"}`), want: []string{"payload.name"}},
	{name: "phone 8 digits", in: create(`{"name":"J","phone":"12345678"}`), want: []string{"payload.phone"}},
	{name: "phone 16 digits", in: create(`{"name":"J","phone":"1234567890123456"}`), want: []string{"payload.phone"}},
	{name: "phone letters", in: create(`{"name":"J","phone":"+1 315 CALL NOW"}`), want: []string{"payload.phone"}},
	{name: "phone two pluses", in: create(`{"name":"J","phone":"++13155550175"}`), want: []string{"payload.phone"}},
	{name: "phone plus inside", in: create(`{"name":"J","phone":"1315+5550175"}`), want: []string{"payload.phone"}},
	{name: "phone too long", in: create(`{"name":"J","phone":"1-3-1-5-5-5-5-0-1-7-5-------------"}`), want: []string{"payload.phone"}},
	{name: "phone number", in: create(`{"name":"J","phone":13155550175}`), want: []string{"payload.phone"}},
	{name: "surname too long", in: create(client(`"surname":"` + strings.Repeat("s", 256) + `"`)), want: []string{"payload.surname"}},
	{name: "middle_name too long", in: create(client(`"middle_name":"` + strings.Repeat("m", 256) + `"`)), want: []string{"payload.middle_name"}},
	{name: "card too long", in: create(client(`"card":"` + strings.Repeat("1", 256) + `"`)), want: []string{"payload.card"}},
	{name: "comment too long", in: create(client(`"comment":"` + strings.Repeat("c", 1001) + `"`)), want: []string{"payload.comment"}},
	{name: "surname null", in: update(client(`"surname":null`)), want: []string{"payload.surname"}},
	{name: "email no at", in: create(client(`"email":"bad"`)), want: []string{"payload.email"}},
	{name: "email no dot", in: create(client(`"email":"a@b"`)), want: []string{"payload.email"}},
	{name: "email space", in: create(client(`"email":"a b@c.de"`)), want: []string{"payload.email"}},
	{name: "email two ats", in: create(client(`"email":"a@b@c.de"`)), want: []string{"payload.email"}},
	{name: "email too long", in: create(client(`"email":"` + strings.Repeat("a", 250) + `@b.cd"`)), want: []string{"payload.email"}},
	{name: "birth_date impossible", in: create(client(`"birth_date":"1990-02-30"`)), want: []string{"payload.birth_date"}},
	{name: "birth_date not leap", in: create(client(`"birth_date":"1900-02-29"`)), want: []string{"payload.birth_date"}},
	{name: "birth_date short", in: create(client(`"birth_date":"1990-4-3"`)), want: []string{"payload.birth_date"}},
	{name: "birth_date timestamp", in: create(client(`"birth_date":952041600`)), want: []string{"payload.birth_date"}},
	{name: "gender 3", in: create(client(`"gender_id":3`)), want: []string{"payload.gender_id"}},
	{name: "gender negative", in: create(client(`"gender_id":-1`)), want: []string{"payload.gender_id"}},
	{name: "gender string", in: create(client(`"gender_id":"1"`)), want: []string{"payload.gender_id"}},
	{name: "importance 4", in: create(client(`"importance_id":4`)), want: []string{"payload.importance_id"}},
	{name: "discount 101", in: create(client(`"discount":101`)), want: []string{"payload.discount"}},
	{name: "discount negative", in: create(client(`"discount":-0.5`)), want: []string{"payload.discount"}},
	{name: "sms_check 2", in: create(client(`"sms_check":2`)), want: []string{"payload.sms_check"}},
	{name: "sms_not -1", in: create(client(`"sms_not":-1`)), want: []string{"payload.sms_not"}},
	{name: "spent string", in: create(client(`"spent":"10"`)), want: []string{"payload.spent"}},
	{name: "balance bool", in: create(client(`"balance":true`)), want: []string{"payload.balance"}},
	{name: "categories zero", in: create(client(`"categories":[1,0]`)), want: []string{"payload.categories[1]"}},
	{name: "categories strings", in: create(client(`"categories":["vip"]`)), want: []string{"payload.categories[0]"}},
	{name: "categories object", in: create(client(`"categories":{"id":1}`)), want: []string{"payload.categories"}},
	{name: "labels", in: update(client(`"labels":[1]`)), want: []string{"payload.labels"}},
	{name: "patronymic", in: create(client(`"patronymic":"A"`)), want: []string{"payload.patronymic"}},
	{name: "custom_fields empty key", in: create(client(`"custom_fields":{"":1}`)), want: []string{`payload.custom_fields[""]`}},
	{name: "custom_fields long key", in: create(client(`"custom_fields":{"` + strings.Repeat("k", 65) + `":1}`)), want: []string{"payload.custom_fields." + strings.Repeat("k", 65)}},
	{name: "custom_fields array", in: create(client(`"custom_fields":[]`)), want: []string{"payload.custom_fields"}},
	{name: "update mode unknown", in: update(client(`"mode":"patch"`)), want: []string{"payload.mode"}},
	{name: "update mode empty", in: update(client(`"mode":""`)), want: []string{"payload.mode"}},
	{name: "update mode upper case", in: update(client(`"mode":"REPLACE"`)), want: []string{"payload.mode"}},
	{name: "update mode null", in: update(client(`"mode":null`)), want: []string{"payload.mode"}},
	{name: "update mode bool", in: update(client(`"mode":true`)), want: []string{"payload.mode"}},
	{name: "update replace needs name and phone", in: update(`{"mode":"replace","surname":"Smith"}`), want: []string{"payload.name", "payload.phone"}},
	{name: "update replace needs phone", in: update(`{"mode":"replace","name":"James"}`), want: []string{"payload.phone"}},
	{name: "update mode duplicate", in: update(client(`"mode":"merge","mode":"replace"`)), want: []string{"payload.mode"}, goStricter: true},
	{name: "create with mode", in: create(client(`"mode":"replace"`)), want: []string{"payload.mode"}},
	{name: "payload duplicate field", in: create(`{"name":"A","name":"B","phone":"+13155550175"}`), want: []string{"payload.name"}, goStricter: true},
	{name: "name unicode blank", in: create(`{"name":"\u00a0","phone":"+13155550175"}`), want: []string{"payload.name"}, goStricter: true},

	// Bulk.
	{name: "bulk empty", in: bulk(), want: []string{"payload.clients"}},
	{name: "bulk too many", in: bulkOf(MaxBulkClients + 1), want: []string{"payload.clients"}},
	{name: "bulk missing clients", in: `{"type":"client.bulk_create","location_id":1,"payload":{}}`, want: []string{"payload.clients"}},
	{name: "bulk clients object", in: `{"type":"client.bulk_create","location_id":1,"payload":{"clients":{}}}`, want: []string{"payload.clients"}},
	{name: "bulk payload array", in: `{"type":"client.bulk_create","location_id":1,"payload":[` + okClient + `]}`, want: []string{"payload"}},
	{name: "bulk unknown field", in: `{"type":"client.bulk_create","location_id":1,"payload":{"clients":[` + okClient + `],"dry_run":true}}`, want: []string{"payload.dry_run"}},
	{name: "bulk item problems", in: bulk(okClient, `{"phone":"+13155550176"}`, `{"name":"X","phone":"1"}`), want: []string{"payload.clients[1].name", "payload.clients[2].phone"}},
	{name: "bulk item mode", in: bulk(client(`"mode":"replace"`)), want: []string{"payload.clients[0].mode"}},
	{name: "bulk payload mode", in: `{"type":"client.bulk_create","location_id":1,"payload":{"mode":"replace","clients":[` + okClient + `]}}`, want: []string{"payload.mode"}},
	{name: "bulk item custom_fields", in: bulk(client(`"custom_fields":{"k":1}`)), want: []string{"payload.clients[0].custom_fields"}},
	{name: "bulk item null", in: bulk(okClient, `null`), want: []string{"payload.clients[1]"}},
	{name: "bulk duplicate phones", in: bulk(okClient, `{"name":"B","phone":"+1 315 555 0175"}`), want: []string{"payload.clients[1].phone"}, goStricter: true},

	// Comments and files.
	{name: "comment empty", in: commentAdd(`""`), want: []string{"payload.text"}},
	{name: "comment blank", in: commentAdd(`"  \n "`), want: []string{"payload.text"}},
	{name: "comment too long", in: commentAdd(`"` + strings.Repeat("é", 256) + `"`), want: []string{"payload.text"}},
	{name: "comment missing", in: withClient("client.comment.add", `{}`), want: []string{"payload.text"}},
	{name: "comment number", in: commentAdd(`5`), want: []string{"payload.text"}},
	{name: "comment unknown field", in: withClient("client.comment.add", `{"text":"a","pinned":true}`), want: []string{"payload.pinned"}},
	{name: "comment without payload", in: `{"type":"client.comment.add","location_id":1,"client_id":7}`, want: []string{"payload"}},
	{name: "comment_id zero", in: withClient("client.comment.delete", `{"comment_id":0}`), want: []string{"payload.comment_id"}},
	{name: "comment_id missing", in: withClient("client.comment.delete", `{}`), want: []string{"payload.comment_id"}},
	{name: "comment_id string", in: withClient("client.comment.delete", `{"comment_id":"7"}`), want: []string{"payload.comment_id"}},
	{name: "file_id negative", in: withClient("client.file.delete", `{"file_id":-9}`), want: []string{"payload.file_id"}},
	{name: "file_id missing", in: withClient("client.file.delete", `{"id":9}`), want: []string{"payload.id", "payload.file_id"}},

	// Every problem at once.
	{
		name: "many problems",
		in:   `{"id":"x","type":"client.create","location_id":0,"client_id":3,"extra":true,"payload":{"name":"","phone":"12","gender_id":9,"nickname":"J"}}`,
		want: []string{"extra", "id", "location_id", "client_id", "payload.name", "payload.gender_id", "payload.nickname", "payload.phone"},
	},
}
