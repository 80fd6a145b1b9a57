package ferretembed

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// The conditional-write fast path.
//
// FerretDB's SQLite backend uses its _id index only for a filter that is
// exactly {_id: <string|ObjectId>}; the services' conditional writes
// ({_id: X, version: 7}, {_id: X, status: "pending"}, ...) scan and decode
// the whole collection. While the proxy holds the write lock, nothing else
// can modify the data, so for a single-statement update, a limit-1 delete or
// a findAndModify whose filter is _id plus simple top-level conditions it
// instead:
//
//  1. fetches the document with its own find {filter: {_id: X}, limit: 1}
//     (indexed) on a connection of its own;
//  2. evaluates the other conditions on it in Go;
//  3. if the document exists and the conditions hold, forwards the command
//     with the filter rewritten to {_id: X}; if the document does not exist,
//     it does the same (the rewritten command matches nothing, and FerretDB
//     gives its own reply, side effects such as creating the collection
//     included); if the conditions are false it answers the client itself
//     with the reply FerretDB gives when nothing matches;
//  4. except that, if the conditions hold on a row read in SQL and the command replaces
//     the document, it writes the replacement in SQL itself and replies as
//     FerretDB would (fastpath_direct.go).
//
// A replacement with upsert: true is taken too when its filter is the _id
// alone (the scheduler's start estimates, a big job's instance chunks): a
// document found is replaced as in 4, and for none an update's replacement
// is inserted in SQL as the new document (a findAndModify's goes to
// FerretDB, which inserts it). Through FerretDB the scheduler's estimates for
// some 800 jobs held the write lock up to 69 ms, and every write behind it
// waited (docs/benchmarks.md, "The 1,000-job load's hand-over tail").
//
// Conditions may name a path into embedded documents ({_id: X,
// "claim.owner": O}); one that meets an array on its way, where MongoDB
// looks into the elements, is evaluated by FerretDB. Whatever falls outside
// the supported subset (other operators, array or document values, unknown
// command fields, a failed lookup) is forwarded unchanged: correct, only
// slow.

// fastPathCommands are the commands the fast path may handle.
var fastPathCommands = map[string]bool{"update": true, "delete": true, "findAndModify": true, "insert": true}

// fastPathConn is the proxy's own upstream connection for the lookups. It is
// only used by the holder of the write lock; mu guards it anyway.
type fastPathConn struct {
	mu    sync.Mutex
	conn  net.Conn // nil until first use and after an error; also closed by proxy.close
	r     *bufio.Reader
	reqID int32

	// How often the fast path answered, rewrote, or left a write unchanged.
	replied, rewritten, unchanged atomic.Int64
}

// fastPathLookupTimeout bounds one lookup; past it the command is forwarded
// unchanged.
const fastPathLookupTimeout = 30 * time.Second

// fastReplyID numbers the messages the proxy makes itself.
var fastReplyID atomic.Int32

// fastWrite is a parsed command the fast path can handle.
type fastWrite struct {
	cmd      string // "update", "delete" or "findAndModify"
	db, coll string
	id       bsoncore.Value // the _id the filter requires
	conds    []fieldCond
	remove   bool // findAndModify with remove: true

	// inserted is the one document of an insert (fastpath_direct.go).
	inserted bsoncore.Document

	// replacement is the new document of an update that replaces one
	// (not of findAndModify, whose reply carries the document): the
	// direct path may write it (fastpath_direct.go).
	replacement bsoncore.Document

	// upsert: the replacement is inserted when no document has the _id.
	// Taken only for a replacement whose filter is the _id alone, so that
	// a document found always matches and one not found is FerretDB's to
	// insert from the unchanged command.
	upsert bool

	// The filter document occupies msg[filterStart:filterEnd]; lengths are
	// the offsets of the int32 length fields enclosing it (documents, arrays,
	// a document-sequence section), the message length excepted.
	filterStart, filterEnd int
	lengths                []int
}

// fieldCond is all conditions on one top-level field.
type fieldCond struct {
	field string
	ops   []condOp
}

type condOp struct {
	op     string // "$eq", "$ne", "$in", "$exists"
	vals   []bsoncore.Value
	exists bool
}

var errFastPathUnsupported = errors.New("outside the fast path's subset")

// fastPath decides what to do with a write command. It returns the message
// to forward (msg itself or a rewritten copy) or, when the command cannot
// match, the reply to give the client instead (reply non-nil).
func (p *proxy) fastPath(msg []byte) (forward, reply []byte) {
	w, err := parseFastWrite(msg)
	if err != nil {
		p.fast.unchanged.Add(1)
		return msg, nil
	}
	srv := p.server.Load()
	if w.cmd == "insert" {
		if srv != nil {
			if r := srv.insertDirect(w); r != nil {
				p.fast.replied.Add(1)
				return nil, opMsgReply(requestID(msg), r)
			}
		}
		p.fast.unchanged.Add(1)
		return msg, nil
	}
	var doc bsoncore.Document
	var noRow bool
	if srv != nil { // fastpath_sql.go
		doc, noRow = srv.lookupFields(w)
	}
	if noRow && w.upsert {
		if r := srv.upsertDirect(w); r != nil { // fastpath_direct.go
			p.fast.replied.Add(1)
			return nil, opMsgReply(requestID(msg), r)
		}
	}
	inSQL := doc != nil
	if doc == nil {
		p.flushBeforeForward() // FerretDB's find sees committed rows only
		doc, err = p.lookupByID(w)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) { // else the store is closing
				p.log.Warn("proxy fast path lookup; forwarding unchanged", "error", err)
			}
			p.fast.unchanged.Add(1)
			return msg, nil
		}
	}
	if doc != nil {
		match, err := w.matches(doc)
		if err != nil {
			p.fast.unchanged.Add(1)
			return msg, nil
		}
		if !match {
			p.fast.replied.Add(1)
			return nil, opMsgReply(requestID(msg), w.noMatchReply())
		}
		if inSQL { // the row is there, and the conditions hold on it
			if r := srv.replaceDirect(w); r != nil {
				p.fast.replied.Add(1)
				return nil, opMsgReply(requestID(msg), r)
			}
		}
	}
	p.fast.rewritten.Add(1)
	return w.rewrite(msg), nil
}

// --- Parsing the client's command. ---

type element struct {
	key   string
	off   int // of the value, in the enclosing buffer
	value bsoncore.Value
}

// elements returns the elements of the document at b[off:], with value
// offsets relative to b, and the document's end. Duplicate keys are refused.
func elements(b []byte, off int) ([]element, int, error) {
	n, ok := int32At(b, off)
	if !ok || n < 5 || off+n > len(b) || b[off+n-1] != 0 {
		return nil, 0, errFastPathUnsupported
	}
	end := off + n - 1
	var out []element
	seen := make(map[string]bool)
	for i := off + 4; i < end; {
		t := bsoncore.Type(b[i])
		k := i + 1
		z := k
		for z < end && b[z] != 0 {
			z++
		}
		if z >= end {
			return nil, 0, errFastPathUnsupported
		}
		key := string(b[k:z])
		v, rem, ok := bsoncore.ReadValue(b[z+1:end], t)
		if !ok || seen[key] {
			return nil, 0, errFastPathUnsupported
		}
		seen[key] = true
		out = append(out, element{key: key, off: z + 1, value: v})
		i = end - len(rem)
	}
	return out, off + n, nil
}

// neutralFields are, per command, the fields besides the statements that
// FerretDB v1.24 accepts and that change neither which document a write
// matches nor what it replies when nothing matches
// (internal/handler/common/update_params.go, delete_params.go,
// findandmodify.go), with the check FerretDB makes of the value: FerretDB
// rejects a field it does not list, and the fast path must not answer
// "nothing matched" where FerretDB replies with an error. Fields FerretDB
// lists as ignored are not checked at all. $db is parsed separately.
var neutralFields = map[string]map[string]func(bsoncore.Value) bool{
	"update": {
		"comment": isString, "maxTimeMS": anyValue, "ordered": anyValue,
		"bypassDocumentValidation": anyValue, "bypassEmptyTsReplacement": anyValue,
		"writeConcern": anyValue, "lsid": anyValue, "txnNumber": anyValue, "autocommit": anyValue,
		"$clusterTime": anyValue, "$readPreference": anyValue,
		"apiVersion": anyValue, "apiStrict": anyValue, "apiDeprecationErrors": anyValue,
	},
	"delete": {
		"comment": isString, "ordered": isBool, "maxTimeMS": anyValue,
		"writeConcern": anyValue, "lsid": anyValue, "txnNumber": anyValue,
		"$clusterTime": anyValue, "$readPreference": anyValue,
		"apiVersion": anyValue, "apiStrict": anyValue, "apiDeprecationErrors": anyValue,
	},
	// Only for the direct insert (fastpath_direct.go), which writes or
	// forwards, never answers "nothing matched"; FerretDB checks only
	// "ordered" of these (common.InsertParams).
	"insert": {
		"ordered": isBool, "comment": anyValue, "maxTimeMS": anyValue,
		"bypassDocumentValidation": anyValue, "bypassEmptyTsReplacement": anyValue,
		"writeConcern": anyValue, "lsid": anyValue, "txnNumber": anyValue,
		"$clusterTime": anyValue, "$readPreference": anyValue,
		"apiVersion": anyValue, "apiStrict": anyValue, "apiDeprecationErrors": anyValue,
	},
	"findAndModify": {
		"comment": isString, "maxTimeMS": isPositiveInteger,
		"bypassDocumentValidation": anyValue, "bypassEmptyTsReplacement": anyValue,
		"writeConcern": anyValue, "lsid": anyValue, "txnNumber": anyValue,
		"$clusterTime": anyValue, "$readPreference": anyValue,
		"apiVersion": anyValue, "apiStrict": anyValue, "apiDeprecationErrors": anyValue,
	},
}

func anyValue(bsoncore.Value) bool { return true }

func isString(v bsoncore.Value) bool { return v.Type == bsoncore.TypeString }

func isBool(v bsoncore.Value) bool { return v.Type == bsoncore.TypeBoolean }

func isPositiveInteger(v bsoncore.Value) bool {
	n, ok := v.AsInt64OK()
	return ok && v.Type != bsoncore.TypeDouble && n > 0
}

// updateOperators are the update operators whose use FerretDB v1 validates
// no further than the checks in supportedUpdate. Conditions that cannot
// match are answered without FerretDB seeing the update, so one it would
// reject ($currentDate and $rename have more rules; unknown operators; paths
// in conflict) must go to FerretDB, which then replies with its error.
var updateOperators = map[string]bool{
	"$set": true, "$unset": true, "$inc": true, "$mul": true, "$min": true, "$max": true,
	"$setOnInsert": true, "$push": true, "$pull": true, "$pullAll": true, "$addToSet": true, "$pop": true,
}

func parseFastWrite(msg []byte) (*fastWrite, error) {
	if len(msg) < headerLen+5 || binary.LittleEndian.Uint32(msg[12:16]) != opMsg {
		return nil, errFastPathUnsupported
	}
	flags := binary.LittleEndian.Uint32(msg[16:20])
	if flags&^uint32(flagChecksumPresent) != 0 {
		return nil, errFastPathUnsupported
	}
	end := len(msg)
	if flags&flagChecksumPresent != 0 {
		end -= 4
	}
	b := msg[:end]

	// Sections: exactly one body; document sequences are kept by offset.
	body := -1
	type sequence struct{ sizeOff, docsOff, end int }
	seqs := make(map[string]sequence)
	for i := headerLen + 4; i < end; {
		kind := b[i]
		n, ok := int32At(b, i+1)
		if !ok || n < 4 || i+1+n > end {
			return nil, errFastPathUnsupported
		}
		switch kind {
		case 0:
			if body >= 0 {
				return nil, errFastPathUnsupported
			}
			body = i + 1
		case 1:
			z := i + 5
			for z < i+1+n && b[z] != 0 {
				z++
			}
			if z >= i+1+n {
				return nil, errFastPathUnsupported
			}
			id := string(b[i+5 : z])
			if _, dup := seqs[id]; dup {
				return nil, errFastPathUnsupported
			}
			seqs[id] = sequence{sizeOff: i + 1, docsOff: z + 1, end: i + 1 + n}
		default:
			return nil, errFastPathUnsupported
		}
		i += 1 + n
	}
	if body < 0 {
		return nil, errFastPathUnsupported
	}
	els, _, err := elements(b, body)
	if err != nil || len(els) == 0 {
		return nil, errFastPathUnsupported
	}
	w := &fastWrite{cmd: els[0].key}
	coll, ok := els[0].value.StringValueOK()
	if !ok || coll == "" {
		return nil, errFastPathUnsupported
	}
	w.coll = coll

	var stmtField string // "updates", "deletes" or "documents"
	var filter *element
	var update bsoncore.Value
	hasUpdate, returnNew := false, false
	switch w.cmd {
	case "update":
		stmtField = "updates"
	case "delete":
		stmtField = "deletes"
	case "insert":
		stmtField = "documents"
	case "findAndModify":
	default:
		return nil, errFastPathUnsupported
	}
	stmtOff := -1
	for _, e := range els[1:] {
		switch {
		case e.key == "$db":
			if w.db, ok = e.value.StringValueOK(); !ok {
				return nil, errFastPathUnsupported
			}
		case neutralFields[w.cmd][e.key] != nil:
			if !neutralFields[w.cmd][e.key](e.value) {
				return nil, errFastPathUnsupported
			}
		case stmtField != "" && e.key == stmtField:
			arr, ok := e.value.ArrayOK()
			if !ok {
				return nil, errFastPathUnsupported
			}
			vals, err := arr.Values()
			if err != nil || len(vals) != 1 || vals[0].Type != bsoncore.TypeEmbeddedDocument ||
				string(b[e.off+4:e.off+7]) != "\x030\x00" {
				return nil, errFastPathUnsupported
			}
			w.lengths = append(w.lengths, body, e.off)
			stmtOff = e.off + 4 + 1 + 2 // array header, type byte, key "0\x00"
		case w.cmd == "findAndModify" && e.key == "query":
			if e.value.Type != bsoncore.TypeEmbeddedDocument {
				return nil, errFastPathUnsupported
			}
			filter = &e
			w.lengths = append(w.lengths, body)
		case w.cmd == "findAndModify" && e.key == "update":
			update, hasUpdate = e.value, true
		case w.cmd == "findAndModify" && e.key == "remove":
			if w.remove, ok = e.value.BooleanOK(); !ok {
				return nil, errFastPathUnsupported
			}
		case w.cmd == "findAndModify" && e.key == "new":
			// FerretDB refuses new: true with remove: true.
			if returnNew, ok = e.value.BooleanOK(); !ok {
				return nil, errFastPathUnsupported
			}
		case w.cmd == "findAndModify" && e.key == "upsert":
			if up, ok := e.value.BooleanOK(); !ok || up {
				return nil, errFastPathUnsupported
			}
		default: // let, sort, hint, collation, arrayFilters, transactions, unknown
			return nil, errFastPathUnsupported
		}
	}
	if w.db == "" || (w.remove && returnNew) {
		return nil, errFastPathUnsupported
	}

	if stmtField != "" {
		// The one statement is either in the body's array or in a
		// document sequence, never both; no other sequence is allowed.
		if seq, isSeq := seqs[stmtField]; isSeq {
			n, ok := int32At(b, seq.docsOff)
			if stmtOff >= 0 || len(seqs) != 1 || !ok || seq.docsOff+n != seq.end {
				return nil, errFastPathUnsupported // not exactly one statement
			}
			w.lengths = append(w.lengths, seq.sizeOff)
			stmtOff = seq.docsOff
		} else if stmtOff < 0 || len(seqs) != 0 {
			return nil, errFastPathUnsupported
		}
		if w.cmd == "insert" { // the statement is the document
			doc, _, ok := bsoncore.ReadDocument(b[stmtOff:])
			if !ok {
				return nil, errFastPathUnsupported
			}
			w.inserted = doc
			return w, nil
		}
		stmt, _, err := elements(b, stmtOff)
		if err != nil {
			return nil, errFastPathUnsupported
		}
		w.lengths = append(w.lengths, stmtOff)
		for _, e := range stmt {
			switch e.key {
			case "q":
				if e.value.Type != bsoncore.TypeEmbeddedDocument {
					return nil, errFastPathUnsupported
				}
				filter = &e
			case "u":
				if w.cmd != "update" {
					return nil, errFastPathUnsupported
				}
				update, hasUpdate = e.value, true
			case "upsert", "multi":
				if w.cmd != "update" {
					return nil, errFastPathUnsupported
				}
				v, ok := e.value.BooleanOK()
				if !ok || (v && e.key == "multi") {
					return nil, errFastPathUnsupported
				}
				w.upsert = w.upsert || v
			case "limit":
				if w.cmd != "delete" {
					return nil, errFastPathUnsupported
				}
				if n, ok := e.value.AsInt64OK(); !ok || n != 1 || (e.value.Type == bsoncore.TypeDouble && e.value.Double() != 1) {
					return nil, errFastPathUnsupported
				}
			default: // arrayFilters, collation, hint, c, unknown
				return nil, errFastPathUnsupported
			}
		}
		if w.cmd == "delete" {
			hasLimit := false
			for _, e := range stmt {
				hasLimit = hasLimit || e.key == "limit"
			}
			if !hasLimit {
				return nil, errFastPathUnsupported
			}
		}
	} else if len(seqs) != 0 {
		return nil, errFastPathUnsupported
	}

	switch w.cmd {
	case "update":
		if !hasUpdate || !supportedUpdate(update) {
			return nil, errFastPathUnsupported
		}
		if d := update.Document(); !strings.HasPrefix(d.Index(0).Key(), "$") {
			w.replacement = d
		}
	case "findAndModify":
		if hasUpdate == w.remove || (hasUpdate && !supportedUpdate(update)) {
			return nil, errFastPathUnsupported
		}
	}
	if filter == nil {
		return nil, errFastPathUnsupported
	}
	if err := w.parseFilter(b, filter.off); err != nil {
		return nil, err
	}
	if w.upsert && (w.replacement == nil || len(w.conds) > 0) {
		// Conditions that fail on a found document make an upsert
		// insert (a duplicate _id), not match nothing; an update
		// document's upsert builds the new one from the filter.
		return nil, errFastPathUnsupported
	}
	return w, nil
}

// supportedUpdate reports whether u is a replacement document, or an update
// document with known operators, each on a non-empty document, and no path
// updated twice or inside another updated path.
func supportedUpdate(u bsoncore.Value) bool {
	d, ok := u.DocumentOK()
	if !ok {
		return false // pipelines and the like
	}
	els, err := d.Elements()
	if err != nil || len(els) == 0 {
		return false
	}
	ops := strings.HasPrefix(els[0].Key(), "$")
	var paths []string
	for _, e := range els {
		k := e.Key()
		if strings.HasPrefix(k, "$") != ops || (ops && !updateOperators[k]) {
			return false
		}
		if !ops {
			continue
		}
		fields, ok := e.Value().DocumentOK()
		if !ok {
			return false
		}
		fels, err := fields.Elements()
		if err != nil || len(fels) == 0 {
			return false
		}
		for _, f := range fels {
			paths = append(paths, f.Key())
		}
	}
	for i, a := range paths {
		for _, b := range paths[i+1:] {
			if a == b || strings.HasPrefix(a, b+".") || strings.HasPrefix(b, a+".") {
				return false
			}
		}
	}
	return true
}

// parseFilter parses the filter document at b[off:].
func (w *fastWrite) parseFilter(b []byte, off int) error {
	els, end, err := elements(b, off)
	if err != nil {
		return err
	}
	w.filterStart, w.filterEnd = off, end
	for _, e := range els {
		if e.key == "_id" {
			if e.value.Type != bsoncore.TypeString && e.value.Type != bsoncore.TypeObjectID {
				return errFastPathUnsupported
			}
			w.id = e.value
			continue
		}
		c, err := parseCond(e.key, e.value)
		if err != nil {
			return err
		}
		w.conds = append(w.conds, c)
	}
	if w.id.Type == 0 || (len(w.conds) == 0 && w.replacement == nil) {
		// No _id, or {_id: X} alone, which FerretDB already finds by its
		// index; a replacement the direct path may still write.
		return errFastPathUnsupported
	}
	return nil
}

// parseCond parses a filter's conditions on one field (filterPath): a
// scalar it equals, or a document of the operators $eq, $ne and $in of
// scalars and $exists. The fast path's writes and the proxy's finds by _id
// (finddirect.go) evaluate them on the document read (matchConds).
func parseCond(key string, v bsoncore.Value) (fieldCond, error) {
	c := fieldCond{field: key}
	if !filterPath(key) {
		return c, errFastPathUnsupported
	}
	d, ok := v.DocumentOK()
	if !ok {
		if !scalar(v) {
			return c, errFastPathUnsupported
		}
		c.ops = []condOp{{op: "$eq", vals: []bsoncore.Value{v}}}
		return c, nil
	}
	ops, err := d.Elements()
	if err != nil || len(ops) == 0 {
		return c, errFastPathUnsupported
	}
	for _, o := range ops {
		op := condOp{op: o.Key()}
		v := o.Value()
		switch op.op {
		case "$eq", "$ne":
			if !scalar(v) {
				return c, errFastPathUnsupported
			}
			op.vals = []bsoncore.Value{v}
		case "$in":
			arr, ok := v.ArrayOK()
			if !ok {
				return c, errFastPathUnsupported
			}
			vals, err := arr.Values()
			if err != nil {
				return c, errFastPathUnsupported
			}
			for _, v := range vals {
				if !scalar(v) {
					return c, errFastPathUnsupported
				}
			}
			op.vals = vals
		case "$exists":
			if op.exists, ok = v.BooleanOK(); !ok {
				return c, errFastPathUnsupported
			}
		default: // other operators, or an embedded document to compare
			return c, errFastPathUnsupported
		}
		c.ops = append(c.ops, op)
	}
	return c, nil
}

// filterPath reports whether a filter's key is a field the conditions are
// evaluated on: a top-level field other than _id, or a path of fields into
// embedded documents ("claim.owner", the export service's renewals). No
// operator, no empty part, and no part of digits alone (which indexes an
// array); a path that meets an array or a scalar on its way is refused
// when evaluated (lookupPath).
func filterPath(k string) bool {
	if k == "" || strings.Contains(k, "$") {
		return false
	}
	for i, p := range strings.Split(k, ".") {
		if p == "" || strings.Trim(p, "0123456789") == "" || i == 0 && p == "_id" {
			return false
		}
	}
	return true
}

// scalar reports whether v is of a type the fast path compares.
func scalar(v bsoncore.Value) bool {
	switch v.Type {
	case bsoncore.TypeString, bsoncore.TypeBoolean, bsoncore.TypeInt32, bsoncore.TypeInt64,
		bsoncore.TypeNull, bsoncore.TypeObjectID, bsoncore.TypeDateTime:
		return true
	case bsoncore.TypeDouble:
		return !math.IsNaN(v.Double())
	}
	return false
}

// --- Evaluating the conditions. ---

// matches evaluates the conditions on doc; errFastPathUnsupported if a value
// is outside the subset (an array, say).
func (w *fastWrite) matches(doc bsoncore.Document) (bool, error) {
	return matchConds(w.conds, doc)
}

// matchConds evaluates conds on doc; errFastPathUnsupported if a value is
// outside the subset (an array, say).
func matchConds(conds []fieldCond, doc bsoncore.Document) (bool, error) {
	for _, c := range conds {
		v, present, err := lookupPath(doc, c.field)
		if err != nil {
			return false, err
		}
		if present && !scalar(v) {
			return false, errFastPathUnsupported
		}
		for _, op := range c.ops {
			var ok bool
			switch op.op {
			case "$exists":
				ok = present == op.exists
			case "$eq", "$in":
				for _, want := range op.vals {
					eq, err := equal(v, present, want)
					if err != nil {
						return false, err
					}
					if eq {
						ok = true
						break
					}
				}
			case "$ne":
				eq, err := equal(v, present, op.vals[0])
				if err != nil {
					return false, err
				}
				ok = !eq
			}
			if !ok {
				return false, nil
			}
		}
	}
	return true, nil
}

// lookupPath returns the value at path (filterPath) in doc and whether it is
// there. Each field on the way must be an embedded document or missing (the
// value is then missing too); an array, where MongoDB would look into its
// elements, or a scalar on the way is errFastPathUnsupported.
func lookupPath(doc bsoncore.Document, path string) (bsoncore.Value, bool, error) {
	for {
		key, rest, nested := strings.Cut(path, ".")
		v, err := doc.LookupErr(key)
		if errors.Is(err, bsoncore.ErrElementNotFound) {
			return bsoncore.Value{}, false, nil
		}
		if err != nil {
			return bsoncore.Value{}, false, errFastPathUnsupported
		}
		if !nested {
			return v, true, nil
		}
		if doc, nested = v.DocumentOK(); !nested {
			return bsoncore.Value{}, false, errFastPathUnsupported
		}
		path = rest
	}
}

// equal is the filter equality of a document's field (present or not) and a
// scalar: null matches null or missing; numbers compare by value.
func equal(v bsoncore.Value, present bool, want bsoncore.Value) (bool, error) {
	if want.Type == bsoncore.TypeNull {
		return !present || v.Type == bsoncore.TypeNull, nil
	}
	if !present {
		return false, nil
	}
	if numeric(v) && numeric(want) {
		return numEqual(v, want)
	}
	if v.Type != want.Type {
		return false, nil
	}
	switch v.Type {
	case bsoncore.TypeString:
		return v.StringValue() == want.StringValue(), nil
	case bsoncore.TypeBoolean:
		return v.Boolean() == want.Boolean(), nil
	case bsoncore.TypeObjectID:
		return v.ObjectID() == want.ObjectID(), nil
	case bsoncore.TypeDateTime: // milliseconds; never equal to a number
		return v.DateTime() == want.DateTime(), nil
	}
	return false, errFastPathUnsupported
}

func numeric(v bsoncore.Value) bool {
	return v.Type == bsoncore.TypeInt32 || v.Type == bsoncore.TypeInt64 || v.Type == bsoncore.TypeDouble
}

const maxExactFloatInt = 1 << 53

func numEqual(a, b bsoncore.Value) (bool, error) {
	if a.Type != bsoncore.TypeDouble && b.Type != bsoncore.TypeDouble {
		return a.AsInt64() == b.AsInt64(), nil
	}
	af, err := asFloat(a)
	if err != nil {
		return false, err
	}
	bf, err := asFloat(b)
	if err != nil {
		return false, err
	}
	return af == bf, nil
}

func asFloat(v bsoncore.Value) (float64, error) {
	if v.Type == bsoncore.TypeDouble {
		f := v.Double()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, errFastPathUnsupported
		}
		return f, nil
	}
	i := v.AsInt64()
	if i > maxExactFloatInt || i < -maxExactFloatInt {
		return 0, errFastPathUnsupported
	}
	return float64(i), nil
}

// --- Replies and rewriting. ---

// noMatchReply is FerretDB's reply to the command when no document matches.
func (w *fastWrite) noMatchReply() []byte {
	switch w.cmd {
	case "update":
		return bsoncore.BuildDocument(nil,
			bsoncore.AppendInt32Element(nil, "n", 0),
			bsoncore.AppendInt32Element(nil, "nModified", 0),
			bsoncore.AppendDoubleElement(nil, "ok", 1))
	case "delete":
		return bsoncore.BuildDocument(nil,
			bsoncore.AppendInt32Element(nil, "n", 0),
			bsoncore.AppendDoubleElement(nil, "ok", 1))
	default: // findAndModify
		lastError := [][]byte{bsoncore.AppendInt32Element(nil, "n", 0)}
		if !w.remove {
			lastError = append(lastError, bsoncore.AppendBooleanElement(nil, "updatedExisting", false))
		}
		return bsoncore.BuildDocument(nil,
			bsoncore.BuildDocumentElement(nil, "lastErrorObject", lastError...),
			bsoncore.AppendNullElement(nil, "value"),
			bsoncore.AppendDoubleElement(nil, "ok", 1))
	}
}

// opMsgReply wraps doc in an OP_MSG replying to request responseTo.
func opMsgReply(responseTo int32, doc []byte) []byte {
	le := binary.LittleEndian
	out := make([]byte, headerLen+4+1, headerLen+4+1+len(doc))
	le.PutUint32(out[0:], uint32(len(out)+len(doc)))
	le.PutUint32(out[4:], uint32(fastReplyID.Add(1)))
	le.PutUint32(out[8:], uint32(responseTo))
	le.PutUint32(out[12:], opMsg)
	// flags 0, section kind 0
	return append(out, doc...)
}

// rewrite returns msg with the filter replaced by {_id: X}, its lengths
// adjusted and any checksum dropped.
func (w *fastWrite) rewrite(msg []byte) []byte {
	filter := bsoncore.BuildDocument(nil, bsoncore.AppendValueElement(nil, "_id", w.id))
	end := len(msg)
	flags := binary.LittleEndian.Uint32(msg[16:20])
	if flags&flagChecksumPresent != 0 {
		end -= 4
	}
	out := make([]byte, 0, end-(w.filterEnd-w.filterStart)+len(filter))
	out = append(out, msg[:w.filterStart]...)
	out = append(out, filter...)
	out = append(out, msg[w.filterEnd:end]...)
	delta := len(filter) - (w.filterEnd - w.filterStart)
	le := binary.LittleEndian
	for _, off := range w.lengths {
		le.PutUint32(out[off:], uint32(int32(le.Uint32(out[off:]))+int32(delta)))
	}
	le.PutUint32(out[0:], uint32(len(out)))
	le.PutUint32(out[16:], flags&^uint32(flagChecksumPresent))
	return out
}

// --- The lookup. ---

// lookupByID fetches the document with w's _id through the proxy's own
// connection: nil if there is none.
func (p *proxy) lookupByID(w *fastWrite) (bsoncore.Document, error) {
	cmd := bsoncore.BuildDocument(nil,
		bsoncore.AppendStringElement(nil, "find", w.coll),
		bsoncore.BuildDocumentElement(nil, "filter", bsoncore.AppendValueElement(nil, "_id", w.id)),
		bsoncore.AppendInt32Element(nil, "limit", 1),
		bsoncore.AppendBooleanElement(nil, "singleBatch", true),
		bsoncore.AppendStringElement(nil, "$db", w.db),
	)
	f := &p.fast
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conn == nil {
		conn, err := net.Dial("tcp", p.upstream)
		if err != nil {
			return nil, err
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = conn.Close()
			return nil, net.ErrClosed
		}
		f.conn, f.r = conn, bufio.NewReader(conn)
		p.mu.Unlock()
	}
	reply, err := f.roundTrip(cmd, min(p.lockTimeout, fastPathLookupTimeout))
	if err != nil {
		p.mu.Lock()
		_ = f.conn.Close()
		f.conn, f.r = nil, nil
		p.mu.Unlock()
		return nil, err
	}
	return parseFindReply(reply)
}

func (f *fastPathConn) roundTrip(cmd []byte, timeout time.Duration) ([]byte, error) {
	if err := f.conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	f.reqID++
	msg := opMsgReply(0, cmd)
	binary.LittleEndian.PutUint32(msg[4:], uint32(f.reqID))
	if _, err := f.conn.Write(msg); err != nil {
		return nil, err
	}
	reply, err := readMessage(f.r)
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	if responseTo(reply) != f.reqID || le.Uint32(reply[12:16]) != opMsg || len(reply) < headerLen+5 ||
		le.Uint32(reply[16:20])&^uint32(flagChecksumPresent) != 0 || reply[headerLen+4] != 0 {
		return nil, fmt.Errorf("unexpected reply to the fast path's find")
	}
	return reply[headerLen+5:], nil
}

// parseFindReply returns the single document of a find reply, or nil.
func parseFindReply(b []byte) (bsoncore.Document, error) {
	doc, _, ok := bsoncore.ReadDocument(b)
	if !ok {
		return nil, errors.New("malformed find reply")
	}
	if okv, err := doc.LookupErr("ok"); err != nil || !numeric(okv) || okv.AsFloat64() != 1 {
		return nil, fmt.Errorf("find failed: %s", doc)
	}
	id, err := doc.LookupErr("cursor", "id")
	if err != nil || !numeric(id) || id.AsInt64() != 0 {
		return nil, fmt.Errorf("unexpected find reply: %s", doc)
	}
	batch, err := doc.LookupErr("cursor", "firstBatch")
	if err != nil {
		return nil, fmt.Errorf("unexpected find reply: %s", doc)
	}
	arr, ok := batch.ArrayOK()
	if !ok {
		return nil, fmt.Errorf("unexpected find reply: %s", doc)
	}
	vals, err := arr.Values()
	if err != nil || len(vals) > 1 {
		return nil, fmt.Errorf("unexpected find reply: %s", doc)
	}
	if len(vals) == 0 {
		return nil, nil
	}
	d, ok := vals[0].DocumentOK()
	if !ok {
		return nil, fmt.Errorf("unexpected find reply: %s", doc)
	}
	return d, nil
}
