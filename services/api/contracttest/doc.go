// Package contracttest drives the API as third-party clients do, from the
// OpenAPI document it serves: the client oapi-codegen generates from it (the
// Go SDK's package sdk/go/avxrm/api, whose copy of the document
// TestGeneratedClientIsCurrent compares with the served one) and
// kin-openapi's request and response validator over a recorded session of
// every operation. It is a module of its own so that the generator and the
// validator stay out of the services' dependency graphs.
package contracttest
