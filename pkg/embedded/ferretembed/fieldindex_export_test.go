package ferretembed

// MatchSQL is the query MatchingIDs runs, for the plan test.
var MatchSQL = matchSQL
var FieldExpr = fieldExpr
var PartialSQL = partialSQL

// IDsInOrderSQL is idsInOrderSQL.
var IDsInOrderSQL = idsInOrderSQL

// MatchAfterSQL is matchAfterSQL.
var MatchAfterSQL = matchAfterSQL
