package events

import (
	"fmt"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Labels are a map with Kubernetes-style keys: a job's labels, a queue's
// node selector, labels and annotations. In JSON they are an object of key → value;
// in MongoDB their keys are stored escaped, because Kubernetes-style keys
// hold dots (example.com/team) and FerretDB refuses dots in field names
// (MongoDB reads them as paths): "%" is stored as "%25", "." as "%2E" and
// a leading "$" as "%24". Filter on a label with LabelField.
type Labels map[string]string

// LabelField is the stored path of label key, for filters:
// {LabelField("example.com/team"): "adas"}.
func LabelField(key string) string { return "labels." + escapeLabelKey(key) }

var (
	labelEscaper   = strings.NewReplacer("%", "%25", ".", "%2E")
	labelUnescaper = strings.NewReplacer("%25", "%", "%2E", ".", "%24", "$")
)

func escapeLabelKey(k string) string {
	k = labelEscaper.Replace(k)
	if strings.HasPrefix(k, "$") {
		k = "%24" + k[1:]
	}
	return k
}

// MarshalBSONValue stores l as a document with escaped keys.
func (l Labels) MarshalBSONValue() (byte, []byte, error) {
	if l == nil {
		return byte(bson.TypeNull), nil, nil
	}
	d := make(bson.D, 0, len(l))
	for k, v := range l {
		d = append(d, bson.E{Key: escapeLabelKey(k), Value: v})
	}
	raw, err := bson.Marshal(d)
	return byte(bson.TypeEmbeddedDocument), raw, err
}

// UnmarshalBSONValue reads a document with escaped keys (or null).
func (l *Labels) UnmarshalBSONValue(t byte, data []byte) error {
	switch bson.Type(t) {
	case bson.TypeNull, bson.TypeUndefined:
		*l = nil
		return nil
	case bson.TypeEmbeddedDocument:
	default:
		return fmt.Errorf("labels: stored as BSON type %s, want a document", bson.Type(t))
	}
	elems, err := bson.Raw(data).Elements()
	if err != nil {
		return fmt.Errorf("labels: %w", err)
	}
	out := make(Labels, len(elems))
	for _, e := range elems {
		v, ok := e.Value().StringValueOK()
		if !ok {
			return fmt.Errorf("labels: %s is not a string", e.Key())
		}
		out[labelUnescaper.Replace(e.Key())] = v
	}
	*l = out
	return nil
}
