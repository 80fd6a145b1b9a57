package ferretembed

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Finds by _id, answered from SQLite.
//
// The services read a job by its _id (find {filter: {_id: X}, limit: 1,
// singleBatch: true}, the driver's FindOne) several times per job. FerretDB
// v1.24 answers that by its _id index but then decodes the stored sjson into
// its own document type (a map of raw JSON per level, a leak-tracker entry
// per value) and encodes it again as BSON: about 0.6 ms of CPU for a job,
// the largest part of FerretDB's CPU once the writes are the proxy's
// (fastpath_direct.go). The proxy reads the row itself, by the same index
// and expression, and converts the sjson straight to the BSON FerretDB
// would send (the order of the schema's "$k", FerretDB's types), in the
// reply FerretDB gives. TestFindDirectMatchesFerretDB compares the replies
// byte for byte.
//
// Only that shape of find is answered; any other option (a projection, a
// sort, a batch size of 0, ...), a collection or database FerretDB does not
// have (it answers those itself), a stored type the conversion does not
// cover (binary, regex, timestamp) or any error goes to FerretDB as before.
// The reads have their own connections, never cancelled (fastpath_sql.go:
// a cancelled modernc query may leave its connection reading old data), and
// a read is answered here only when nothing else of its client connection
// is in flight, so replies keep their order.

// findDirectConns is how many connections per database the direct finds
// use at most.
const findDirectConns = 4

// findDirect answers msg, a find, from SQLite, or returns nil when it does
// not (the caller forwards it).
func (s *Server) findDirect(msg []byte) []byte {
	if s.sqlLookups.off || s.sqlLookups.directOff {
		return nil
	}
	doc := opMsgCommand(msg)
	if doc == nil {
		return nil
	}
	f, ok := parseFindByID(doc)
	if !ok {
		return nil
	}
	row, found, err := s.readRow(context.Background(), f) // never cancelled: see above
	if err != nil {
		s.sqlLookups.findFellBack.Add(1)
		return nil
	}
	var batch []byte
	if found {
		d, err := sjsonToBSON(row)
		if err != nil {
			s.sqlLookups.findFellBack.Add(1)
			return nil
		}
		batch = bsoncore.AppendDocumentElement(nil, "0", d)
	}
	s.sqlLookups.findDirect.Add(1)
	return opMsgReply(requestID(msg), bsoncore.BuildDocument(nil,
		bsoncore.BuildDocumentElement(nil, "cursor",
			bsoncore.AppendArrayElement(nil, "firstBatch", bsoncore.BuildDocumentFromElements(nil, batch)),
			bsoncore.AppendInt64Element(nil, "id", 0),
			bsoncore.AppendStringElement(nil, "ns", f.db+"."+f.coll)),
		bsoncore.AppendDoubleElement(nil, "ok", 1)))
}

type findByID struct {
	db, coll, id string
}

// findNeutral are the fields of a find that change nothing about the answer
// of a find by _id of at most one document.
var findNeutral = map[string]bool{
	"lsid": true, "$clusterTime": true, "$readPreference": true, "txnNumber": true,
	"comment": true, "apiVersion": true, "apiStrict": true, "apiDeprecationErrors": true,
}

// parseFindByID accepts {find: C, filter: {_id: <string>}, $db: D} with a
// limit of 1 or singleBatch true (so the cursor ends in the first batch),
// an optional batch size of at least 1, and neutral fields.
func parseFindByID(doc bsoncore.Document) (findByID, bool) {
	var f findByID
	els, err := doc.Elements()
	if err != nil || len(els) == 0 || els[0].Key() != "find" {
		return f, false
	}
	var ok, limited bool
	if f.coll, ok = els[0].Value().StringValueOK(); !ok || f.coll == "" {
		return f, false
	}
	seen := map[string]bool{}
	for _, e := range els[1:] {
		k, v := e.Key(), e.Value()
		if seen[k] {
			return f, false
		}
		seen[k] = true
		switch {
		case k == "$db":
			if f.db, ok = v.StringValueOK(); !ok || f.db == "" {
				return f, false
			}
		case k == "filter":
			fd, ok := v.DocumentOK()
			if !ok {
				return f, false
			}
			fels, err := fd.Elements()
			if err != nil || len(fels) != 1 || fels[0].Key() != "_id" {
				return f, false
			}
			if f.id, ok = fels[0].Value().StringValueOK(); !ok {
				return f, false
			}
		case k == "limit":
			n, ok := v.AsInt64OK()
			if !ok || n != 1 || (v.Type == bsoncore.TypeDouble && v.Double() != 1) {
				return f, false
			}
			limited = true
		case k == "singleBatch":
			b, ok := v.BooleanOK()
			if !ok {
				return f, false
			}
			limited = limited || b
		case k == "batchSize":
			n, ok := v.AsInt64OK()
			if !ok || n < 1 || (v.Type == bsoncore.TypeDouble && v.Double() != float64(n)) {
				return f, false
			}
		case findNeutral[k]:
		default: // projection, sort, skip, hint, collation, readConcern, ...
			return f, false
		}
	}
	return f, f.db != "" && seen["filter"] && limited
}

// readRow reads the stored sjson of f's document; found is false when there
// is none. A database or collection FerretDB does not have is an error (the
// caller lets FerretDB answer).
func (s *Server) readRow(ctx context.Context, f findByID) (row string, found bool, err error) {
	sdb, err := s.conns(&s.sqlLookups.reads, f.db, func(sdb *sql.DB) error {
		sdb.SetMaxOpenConns(findDirectConns)
		sdb.SetMaxIdleConns(findDirectConns)
		return nil
	})
	if err != nil {
		return "", false, err
	}
	table, err := s.table(ctx, sdb, f.db, f.coll)
	if err != nil {
		return "", false, err
	}
	id, err := json.Marshal(f.id)
	if err != nil {
		return "", false, err
	}
	q, err := s.stmt(ctx, "reads\x00"+f.db, sdb, fmt.Sprintf("SELECT _ferretdb_sjson FROM %s INDEXED BY %s WHERE %s = ?",
		quoteIdent(table), quoteIdent(idIndexName(table)), idExpr))
	if err != nil {
		return "", false, err
	}
	if err := q.QueryRowContext(ctx, string(id)).Scan(&row); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return "", false, nil
		}
		s.forgetTable(f.db, f.coll)
		return "", false, err
	}
	return row, true, nil
}

// sjsonSchema is a document's schema in FerretDB v1.24's sjson
// (internal/handler/sjson/schema.go).
type sjsonSchema struct {
	Properties map[string]*sjsonElem `json:"p"`
	Keys       []string              `json:"$k"`
}

type sjsonElem struct {
	Type    string       `json:"t"`
	Schema  *sjsonSchema `json:"$s,omitempty"`
	Options *string      `json:"o,omitempty"`
	Items   []*sjsonElem `json:"i,omitempty"`
	Subtype *int         `json:"s,omitempty"`
}

var errSJSON = errors.New("stored document outside the direct find's conversion")

// sjsonToBSON converts a stored document to the BSON FerretDB sends for it.
func sjsonToBSON(row string) (bsoncore.Document, error) {
	var top struct {
		Schema *sjsonSchema `json:"$s"`
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(row), &fields); err != nil {
		return nil, err
	}
	raw, ok := fields["$s"]
	if !ok {
		return nil, errSJSON
	}
	if err := json.Unmarshal([]byte(`{"$s":`+string(raw)+`}`), &top); err != nil || top.Schema == nil {
		return nil, errSJSON
	}
	delete(fields, "$s")
	return appendSJSONDocument(nil, top.Schema, fields)
}

// appendSJSONDocument appends the document of fields (raw JSON by key) in
// the order of sch's keys, as FerretDB's sjson.Unmarshal builds it.
func appendSJSONDocument(b []byte, sch *sjsonSchema, fields map[string]json.RawMessage) ([]byte, error) {
	if len(fields) == 0 {
		return bsoncore.BuildDocument(b, nil), nil
	}
	if sch == nil || len(sch.Keys) != len(fields) {
		return nil, errSJSON
	}
	idx, b := bsoncore.ReserveLength(b)
	for _, k := range sch.Keys {
		v, ok := fields[k]
		if !ok {
			return nil, errSJSON
		}
		var err error
		if b, err = appendSJSONValue(b, k, sch.Properties[k], v); err != nil {
			return nil, err
		}
	}
	b = append(b, 0)
	return bsoncore.UpdateLength(b, idx, int32(len(b)-int(idx))), nil
}

// appendSJSONValue appends the element key: v, of schema elem.
func appendSJSONValue(b []byte, key string, elem *sjsonElem, v json.RawMessage) ([]byte, error) {
	if string(v) == "null" { // whatever the schema says, as FerretDB reads it
		return bsoncore.AppendNullElement(b, key), nil
	}
	if elem == nil {
		return nil, errSJSON
	}
	switch elem.Type {
	case "object":
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(v, &fields); err != nil {
			return nil, errSJSON
		}
		d, err := appendSJSONDocument(nil, elem.Schema, fields)
		if err != nil {
			return nil, err
		}
		return bsoncore.AppendDocumentElement(b, key, d), nil
	case "array":
		var items []json.RawMessage
		if err := json.Unmarshal(v, &items); err != nil || len(items) != len(elem.Items) {
			return nil, errSJSON
		}
		idx, b := bsoncore.AppendArrayElementStart(b, key)
		for i, it := range items {
			var err error
			if b, err = appendSJSONValue(b, strconv.Itoa(i), elem.Items[i], it); err != nil {
				return nil, err
			}
		}
		return bsoncore.AppendArrayEnd(b, idx)
	case "string":
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, errSJSON
		}
		return bsoncore.AppendStringElement(b, key, s), nil
	case "double":
		var f float64
		if err := json.Unmarshal(v, &f); err != nil {
			return nil, errSJSON
		}
		return bsoncore.AppendDoubleElement(b, key, f), nil
	case "int":
		var i int32
		if err := json.Unmarshal(v, &i); err != nil {
			return nil, errSJSON
		}
		return bsoncore.AppendInt32Element(b, key, i), nil
	case "long":
		var i int64
		if err := json.Unmarshal(v, &i); err != nil {
			return nil, errSJSON
		}
		return bsoncore.AppendInt64Element(b, key, i), nil
	case "bool":
		var t bool
		if err := json.Unmarshal(v, &t); err != nil {
			return nil, errSJSON
		}
		return bsoncore.AppendBooleanElement(b, key, t), nil
	case "date":
		var ms int64
		if err := json.Unmarshal(v, &ms); err != nil {
			return nil, errSJSON
		}
		return bsoncore.AppendDateTimeElement(b, key, ms), nil
	case "objectId":
		var h string
		if err := json.Unmarshal(v, &h); err != nil {
			return nil, errSJSON
		}
		raw, err := hex.DecodeString(h)
		if err != nil || len(raw) != 12 {
			return nil, errSJSON
		}
		var oid [12]byte
		copy(oid[:], raw)
		return bsoncore.AppendObjectIDElement(b, key, oid), nil
	}
	return nil, errSJSON // binData, regex, timestamp, null with a value: FerretDB's
}
