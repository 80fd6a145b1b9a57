package ferretembed

import (
	"context"
	"encoding/binary"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Reads by index over the wire.
//
// MatchingIDs, LatestIDs (fieldindex.go), IDsAfter, IDsBefore and
// MatchingIDsAfter (idorder.go) are methods of the Server, so only a
// process that runs the store has them. The services of the compose stack
// reach the store over the wire; for them the proxy answers seven commands
// of its own, never forwarded to FerretDB:
//
//	{avxrmLookup: 1}                                  → {ok: 1, version: 6}
//	{avxrmMatchingIDs: coll, $db, where: [c...], residual: [c...]} → {ok: 1, ids: [...]}
//	{avxrmMatchingVersions: coll, $db, where, residual, versionPath: path} → {ok: 1, ids: [...], versions: [...]}
//	{avxrmLatestIDs: coll, $db, where: [c...], orderBy: path, limit: n} → {ok: 1, ids: [...]}
//	{avxrmIDsAfter: coll, $db, after: id, limit: n}    → {ok: 1, ids: [...]}
//	{avxrmIDsBefore: coll, $db, before: id, limit: n}  → {ok: 1, ids: [...]}
//	{avxrmMatchingIDsAfter: coll, $db, where: [c...], after: id, limit: n} → {ok: 1, ids: [...]}
//
// where c is {path: "status", in: ["pending", ...]} or {path, missing: true},
// with partial: [values] or sparse: true for a partial index, and onDemand:
// true for an index a user's query chose (FieldCond).
// A real MongoDB (and FerretDB itself) answers each with CommandNotFound
// (59): a client probes with avxrmLookup once and, without it, sends its
// filters to the store as they are (pkg/events/indexed/wirelookup).
// avxrmMatchingVersions came with version 2; a client that meets version 1
// reads every match instead. avxrmIDsAfter came with version 3; a client
// that meets an older one sends its lists to the store as they are;
// avxrmIDsBefore with version 4, likewise; avxrmMatchingIDsAfter with
// version 5: a client that meets an older store reads its list by
// avxrmIDsAfter (or, older still, sends it to the store as it is).
// Conditions onDemand, whose paths may hold a label's key, came with
// version 6, and so did NoValue in avxrmMatchingVersions' versions for a
// match without one (-1 before); a client does not send such conditions to
// an older store, and reads its -1 as none. A read the store does not serve
// that way (ErrIndexLimit) fails with NotImplemented (238), which a client
// takes as errors.ErrUnsupported.
//
// They take neither the write lock (they only read SQLite beside FerretDB,
// as the all-in-one's Lookup does) nor a read slot (they read index entries,
// never a collection).
var wireLookupCommands = map[string]bool{
	"avxrmLookup": true, "avxrmMatchingIDs": true, "avxrmMatchingVersions": true, "avxrmLatestIDs": true, "avxrmIDsAfter": true,
	"avxrmIDsBefore": true, "avxrmMatchingIDsAfter": true,
}

// wireLookupVersion is what avxrmLookup answers: the commands it serves.
const wireLookupVersion = 6

// wireLookupMaxTime bounds a command without maxTimeMS.
const wireLookupMaxTime = time.Minute

// wireCond is a FieldCond as the commands carry it.
type wireCond struct {
	Path    string `bson:"path"`
	In      []any  `bson:"in,omitempty"`
	Missing bool   `bson:"missing,omitempty"`
	Partial []any  `bson:"partial,omitempty"`
	Sparse  bool   `bson:"sparse,omitempty"`
	// OnDemand came with version 6.
	OnDemand bool `bson:"onDemand,omitempty"`
}

// wireLookupCmd is one of the commands, decoded.
type wireLookupCmd struct {
	DB       string     `bson:"$db"`
	Where    []wireCond `bson:"where"`
	Residual []wireCond `bson:"residual"`
	OrderBy  string     `bson:"orderBy"`
	Version  string     `bson:"versionPath"`
	Limit    int        `bson:"limit"`
	After    string     `bson:"after"`
	Before   string     `bson:"before"`
}

// answerWireLookup runs command cmd of request msg and returns the reply.
func (c *proxyConn) answerWireLookup(cmd string, msg []byte) []byte {
	id := requestID(msg)
	doc := opMsgCommand(msg)
	if doc == nil {
		return wireLookupError(id, cmd+": not an OP_MSG command")
	}
	if cmd == "avxrmLookup" {
		return opMsgReply(id, bsoncore.BuildDocument(nil,
			bsoncore.AppendInt32Element(nil, "version", wireLookupVersion),
			bsoncore.AppendDoubleElement(nil, "ok", 1)))
	}
	var req wireLookupCmd
	if err := bson.Unmarshal(doc, &req); err != nil {
		return wireLookupError(id, cmd+": "+err.Error())
	}
	coll, ok := bsoncore.Document(doc).Lookup(cmd).StringValueOK()
	if !ok || req.DB == "" {
		return wireLookupError(id, cmd+": the collection and $db must be strings")
	}
	wait := wireLookupMaxTime
	if d, ok := commandMaxTime(msg); ok {
		wait = d
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	go func() { // ends with the client too
		select {
		case <-c.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	srv := c.p.server.Load()
	if srv == nil {
		return wireLookupError(id, cmd+": no store behind this proxy")
	}
	var ids []string
	var versions []int64
	var err error
	switch cmd {
	case "avxrmLatestIDs":
		ids, err = srv.LatestIDs(ctx, req.DB, coll, fieldConds(req.Where), req.OrderBy, req.Limit)
	case "avxrmIDsAfter":
		ids, err = srv.IDsAfter(ctx, req.DB, coll, req.After, req.Limit)
	case "avxrmIDsBefore":
		ids, err = srv.IDsBefore(ctx, req.DB, coll, req.Before, req.Limit)
	case "avxrmMatchingIDsAfter":
		ids, err = srv.MatchingIDsAfter(ctx, req.DB, coll, fieldConds(req.Where), req.After, req.Limit)
	case "avxrmMatchingVersions":
		ids, versions, err = srv.MatchingVersions(ctx, req.DB, coll, fieldConds(req.Where), fieldConds(req.Residual), req.Version)
	default:
		ids, err = srv.MatchingIDs(ctx, req.DB, coll, fieldConds(req.Where), fieldConds(req.Residual))
	}
	if err != nil {
		if errors.Is(err, errors.ErrUnsupported) {
			return wireLookupErrorCode(id, err.Error(), codeNotImplemented, "NotImplemented")
		}
		return wireLookupError(id, err.Error())
	}
	arr := bsoncore.NewArrayBuilder()
	for _, s := range ids {
		arr.AppendString(s)
	}
	reply := bsoncore.AppendArrayElement(nil, "ids", arr.Build())
	if versions != nil {
		vs := bsoncore.NewArrayBuilder()
		for _, v := range versions {
			vs.AppendInt64(v)
		}
		reply = bsoncore.AppendArrayElement(reply, "versions", vs.Build())
	}
	return opMsgReply(id, bsoncore.BuildDocument(nil, reply,
		bsoncore.AppendDoubleElement(nil, "ok", 1)))
}

func fieldConds(ws []wireCond) []FieldCond {
	out := make([]FieldCond, len(ws))
	for i, w := range ws {
		out[i] = FieldCond{Path: w.Path, In: w.In, Missing: w.Missing || len(w.In) == 0, Partial: w.Partial, Sparse: w.Sparse, OnDemand: w.OnDemand}
	}
	return out
}

// wireLookupError is a failed command's reply (BadValue, 2).
func wireLookupError(id int32, msg string) []byte {
	return wireLookupErrorCode(id, msg, 2, "BadValue")
}

// codeNotImplemented answers a read the store does not serve by index
// (ErrIndexLimit): the client reads another way.
const codeNotImplemented = 238

// wireLookupErrorCode is a failed command's reply with code.
func wireLookupErrorCode(id int32, msg string, code int32, name string) []byte {
	return opMsgReply(id, bsoncore.BuildDocument(nil,
		bsoncore.AppendDoubleElement(nil, "ok", 0),
		bsoncore.AppendStringElement(nil, "errmsg", msg),
		bsoncore.AppendInt32Element(nil, "code", code),
		bsoncore.AppendStringElement(nil, "codeName", name)))
}

// opMsgCommand returns the command document (the kind-0 section) of an
// OP_MSG message, or nil.
func opMsgCommand(msg []byte) []byte {
	body, _ := opMsgBody(msg)
	if body < 0 {
		return nil
	}
	n, _ := int32At(msg, body)
	return msg[body : body+n]
}

// opMsgBody returns the offset of the command document of an OP_MSG
// message and where its sections end (before a checksum); body is -1 when
// msg is no OP_MSG or its sections cannot be parsed.
func opMsgBody(msg []byte) (body, end int) {
	le := binary.LittleEndian
	if len(msg) < headerLen+5 || le.Uint32(msg[12:16]) != opMsg {
		return -1, 0
	}
	end = len(msg)
	if le.Uint32(msg[16:20])&flagChecksumPresent != 0 {
		end -= 4
	}
	for i := headerLen + 4; i < end; {
		n, ok := int32At(msg[:end], i+1)
		if !ok || n < 5 || i+1+n > end {
			return -1, 0
		}
		if msg[i] == 0 {
			return i + 1, end
		}
		i += 1 + n
	}
	return -1, 0
}

// InternalURI returns FerretDB's own address, which bypasses the proxy
// (and so its commands above): for tests that need a store without them.
func (s *Server) InternalURI() string { return s.internalURI }
