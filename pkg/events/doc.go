// Package events is the one vocabulary the services share: CloudEvent types,
// NATS subjects, the RM_EVENTS stream definition, the wire encoding (CloudEvents
// 1.0 binary mode over NATS JetStream), the publisher and the consumer loop.
//
// Subjects and stream names are declared only here. The package must not import
// any service package; services import it.
package events
