package ingest

import (
	"bytes"
	"encoding/json"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/altegio-integrator/integrator/internal/commands"
)

// TestOpenAPIAgreesWithRouter walks the router's table and the document:
// the same paths, methods and status codes both ways. The answers of every
// other test are validated against the document by ingest.do.
func TestOpenAPIAgreesWithRouter(t *testing.T) {
	doc, err := loadOpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	if v := doc["openapi"]; v != "3.1.0" {
		t.Errorf("openapi %v, want 3.1.0", v)
	}
	docOps := map[string][]int{}
	for path, item := range doc["paths"].(map[string]any) {
		for method, op := range item.(map[string]any) {
			var codes []int
			for code := range op.(map[string]any)["responses"].(map[string]any) {
				c, err := strconv.Atoi(code)
				if err != nil {
					t.Errorf("%s %s: response %q is not a status code", method, path, code)
				}
				codes = append(codes, c)
			}
			sort.Ints(codes)
			docOps[strings.ToUpper(method)+" "+path] = codes
		}
	}
	routerOps := map[string][]int{}
	for _, rt := range routes {
		codes := slices.Clone(rt.statuses)
		sort.Ints(codes)
		routerOps[rt.method+" "+rt.path] = codes
	}
	for op, codes := range routerOps {
		got, ok := docOps[op]
		switch {
		case !ok:
			t.Errorf("route %s is not in openapi.json", op)
		case !slices.Equal(got, codes):
			t.Errorf("%s: document has statuses %v, router %v", op, got, codes)
		}
	}
	for op := range docOps {
		if _, ok := routerOps[op]; !ok {
			t.Errorf("openapi.json has %s, the router does not", op)
		}
	}
}

// TestOpenAPIExamplesValidate validates the document's examples, and a
// sample of each answer shape, against its schemas, and checks that a
// wrong body is caught (so the validation in ingest.do can fail).
func TestOpenAPIExamplesValidate(t *testing.T) {
	if _, err := loadOpenAPI(); err != nil {
		t.Fatal(err)
	}
	id := commands.NewID()
	valid := map[string]any{
		"/components/schemas/Accepted": Accepted{Commands: []CommandStatus{
			{ID: id, Status: StatusAccepted, StreamSeq: 4}, {ID: id, Status: StatusDuplicate, StreamSeq: 4},
			{ID: id, Status: StatusAccepted, Spooled: true}}},
		"/components/schemas/CommandState": CommandState{ID: id, Status: StateQueued, StreamSeq: 3},
		"/components/schemas/Problem": func() *Problem {
			p := probInvalid.problem("2 problems")
			p.Instance = "urn:uuid:" + id
			p.Errors = []commands.Problem{{Path: "[0].payload.phone", Reason: "required"}}
			return p
		}(),
		"/components/schemas/Readiness":                                                   Readiness{Status: "ready", Checks: map[string]string{"nats": "ok", "streams": "ok", "outbox": "ok"}},
		"/paths/~1v1~1commands/post/responses/202/content/application~1json/example":      nil,
		"/paths/~1v1~1commands~1{id}/get/responses/200/content/application~1json/example": nil,
		"/paths/~1v1~1commands/post/requestBody/content/application~1json/example":        nil,
	}
	for ptr, v := range valid {
		if v == nil {
			continue
		}
		b, _ := json.Marshal(v)
		if err := validateAt(ptr, b); err != nil {
			t.Errorf("%s: %v", ptr, err)
		}
	}
	// The document's own examples.
	doc := openAPIDoc
	examples := map[string]string{
		"/paths/~1v1~1commands/post/responses/202/content/application~1json":      "/components/schemas/Accepted",
		"/paths/~1v1~1commands~1{id}/get/responses/200/content/application~1json": "/components/schemas/CommandState",
		"/paths/~1v1~1commands/post/requestBody/content/application~1json":        "/paths/~1v1~1commands/post/requestBody/content/application~1json/schema",
	}
	for media, schema := range examples {
		cur := any(doc)
		for _, tok := range strings.Split(strings.TrimPrefix(media, "/"), "/") {
			tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
			cur = cur.(map[string]any)[tok]
		}
		ex, _ := json.Marshal(cur.(map[string]any)["example"])
		if err := validateAt(schema, ex); err != nil {
			t.Errorf("example of %s: %v", media, err)
		}
		if strings.Contains(media, "requestBody") {
			if _, _, err := decodeRequest(ex, DefaultMaxBatch); err != nil {
				t.Errorf("request example refused by decodeRequest: %v", err)
			}
		}
	}
	// Wrong bodies are caught.
	for ptr, bad := range map[string]string{
		"/components/schemas/Accepted":     `{"commands":[{"id":"` + id + `","status":"accepted"}]}`,
		"/components/schemas/Problem":      `{"type":"about:blank","title":"x","status":200}`,
		"/components/schemas/CommandState": `{"id":"x"}`,
	} {
		if err := validateAt(ptr, []byte(bad)); err == nil {
			t.Errorf("%s accepted %s", ptr, bad)
		}
	}
	if !bytes.Contains(openAPIDocument, []byte(`"maxItems": 100`)) || DefaultMaxBatch != 100 {
		t.Errorf("the document's batch limit disagrees with DefaultMaxBatch %d", DefaultMaxBatch)
	}
}
