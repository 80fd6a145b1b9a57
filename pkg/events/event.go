package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
)

// ErrMalformed marks a message that is not a valid event of this contract.
// Consumers terminate such messages instead of redelivering them.
var ErrMalformed = errors.New("events: malformed event")

// Event is one CloudEvent about one resource. Data is the resource as the API
// returns it, as JSON.
type Event struct {
	ID         string          // CloudEvents id; also the JetStream Nats-Msg-Id
	Type       string          // one of the Type* constants
	Source     string          // the producing service, e.g. "/rm/api"
	ResourceID string          // CloudEvents subject: the id of the resource
	QueueID    string          // the queue the resource belongs to, "" for none
	Time       time.Time       // when the change was committed
	Data       json.RawMessage // the resource, JSON
}

// New returns an event with a fresh id and the current time, data marshalled to JSON.
func New(typ, source, queueID, resourceID string, data any) (Event, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return Event{}, fmt.Errorf("new %s event: %w", typ, err)
	}
	e := Event{
		ID:         NewID("ev"),
		Type:       typ,
		Source:     source,
		ResourceID: resourceID,
		QueueID:    queueID,
		Time:       time.Now().UTC().Truncate(time.Millisecond), // what BSON keeps, so a stored entry equals its event
		Data:       raw,
	}
	return e, e.Validate()
}

// Kind is the resource kind the event is about.
func (e Event) Kind() string { return KindOf(e.Type) }

// NATSSubject is the subject the event is published on.
func (e Event) NATSSubject() string { return Subject(e.Kind(), e.QueueID, e.ResourceID) }

// Validate reports whether e can be published: every attribute set, a known
// subject shape, and JSON data.
func (e Event) Validate() error {
	var problems []string
	if e.ID == "" {
		problems = append(problems, "id is empty")
	}
	if e.Kind() == "" {
		problems = append(problems, fmt.Sprintf("type %q is not rm.<kind>.<action>", e.Type))
	}
	if e.Source == "" {
		problems = append(problems, "source is empty")
	}
	for name, tok := range map[string]string{"resource id": e.ResourceID, "queue id": e.QueueID} {
		if strings.ContainsAny(tok, ".*> \t\r\n") {
			problems = append(problems, fmt.Sprintf("%s %q is not a subject token", name, tok))
		}
	}
	if e.ResourceID == "" {
		problems = append(problems, "resource id is empty")
	}
	if e.Time.IsZero() {
		problems = append(problems, "time is zero")
	}
	if !json.Valid(e.Data) {
		problems = append(problems, "data is not JSON")
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrMalformed, strings.Join(problems, "; "))
	}
	return nil
}

// Header names of CloudEvents binary mode over NATS: each attribute in a ce- header.
const (
	hdrSpecVersion = "ce-specversion"
	hdrID          = "ce-id"
	hdrType        = "ce-type"
	hdrSource      = "ce-source"
	hdrSubject     = "ce-subject"
	hdrTime        = "ce-time"
	hdrQueueID     = "ce-queueid" // extension attribute
	hdrContentType = "content-type"
	// MsgIDHeader is JetStream's de-duplication header; we set it to the event id.
	MsgIDHeader = "Nats-Msg-Id"
)

// Encode returns the NATS message of e in CloudEvents binary mode, with
// Nats-Msg-Id set to the event id so JetStream drops re-publications.
func Encode(e Event) (*nats.Msg, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	m := nats.NewMsg(e.NATSSubject())
	h := m.Header
	h[hdrSpecVersion] = []string{cloudevents.CloudEventsVersionV1}
	h[hdrID] = []string{e.ID}
	h[hdrType] = []string{e.Type}
	h[hdrSource] = []string{e.Source}
	h[hdrSubject] = []string{e.ResourceID}
	h[hdrTime] = []string{e.Time.UTC().Format(time.RFC3339Nano)}
	if e.QueueID != "" {
		h[hdrQueueID] = []string{e.QueueID}
	}
	h[hdrContentType] = []string{"application/json"}
	h[MsgIDHeader] = []string{e.ID}
	m.Data = e.Data
	return m, nil
}

// Decode reads an event from a NATS message in binary mode. Any problem wraps ErrMalformed.
func Decode(h nats.Header, data []byte) (Event, error) {
	get := func(k string) string {
		if v := h[k]; len(v) > 0 {
			return v[0]
		}
		return h.Get(k)
	}
	if v := get(hdrSpecVersion); v != cloudevents.CloudEventsVersionV1 {
		return Event{}, fmt.Errorf("%w: specversion %q", ErrMalformed, v)
	}
	if ct := get(hdrContentType); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return Event{}, fmt.Errorf("%w: content-type %q", ErrMalformed, ct)
	}
	t, err := time.Parse(time.RFC3339Nano, get(hdrTime))
	if err != nil {
		return Event{}, fmt.Errorf("%w: time: %v", ErrMalformed, err)
	}
	e := Event{
		ID:         get(hdrID),
		Type:       get(hdrType),
		Source:     get(hdrSource),
		ResourceID: get(hdrSubject),
		QueueID:    get(hdrQueueID),
		Time:       t,
		Data:       json.RawMessage(data),
	}
	if err := e.Validate(); err != nil {
		return Event{}, err
	}
	return e, nil
}

// CloudEvent converts e to the SDK's event, which validates it against the
// CloudEvents 1.0 specification.
func (e Event) CloudEvent() (cloudevents.Event, error) {
	ce := cloudevents.New(cloudevents.CloudEventsVersionV1)
	ce.SetID(e.ID)
	ce.SetType(e.Type)
	ce.SetSource(e.Source)
	ce.SetSubject(e.ResourceID)
	ce.SetTime(e.Time)
	if e.QueueID != "" {
		ce.SetExtension("queueid", e.QueueID)
	}
	// json.RawMessage goes through the JSON codec as itself; a []byte would be base64.
	if err := ce.SetData("application/json", e.Data); err != nil {
		return ce, fmt.Errorf("cloudevent data: %w", err)
	}
	if err := ce.Validate(); err != nil {
		return ce, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return ce, nil
}

// StructuredJSON is e in CloudEvents structured mode (one JSON object with the
// attributes and data), as the HTTP event stream sends it.
func (e Event) StructuredJSON() ([]byte, error) {
	ce, err := e.CloudEvent()
	if err != nil {
		return nil, err
	}
	return json.Marshal(ce)
}

// DecodeData unmarshals the event's data into v; a failure wraps ErrMalformed.
func (e Event) DecodeData(v any) error {
	if err := json.Unmarshal(e.Data, v); err != nil {
		return fmt.Errorf("%w: data of %s: %v", ErrMalformed, e.Type, err)
	}
	return nil
}
