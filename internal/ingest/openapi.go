package ingest

import _ "embed"

// openAPIDocument is the OpenAPI 3.1 description of ingest's own API,
// served at /openapi.json. TestOpenAPIAgreesWithRouter keeps it in step
// with the routes table and the handlers' answers.
//
//go:embed openapi.json
var openAPIDocument []byte

// OpenAPI returns the OpenAPI 3.1 document of the ingest API (JSON). The
// caller must not modify the returned slice.
func OpenAPI() []byte { return openAPIDocument }
