package up

import (
	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/pkg/events/indexed/ferretlookup"
)

// Lookup is what the services read active jobs of database db through: on
// the embedded store its MatchingIDs (ferretlookup), for the services' hot
// reads of active jobs, since FerretDB itself would decode every job ever
// stored; nil on an external MongoDB, whose own indexes serve the filters
// (and for benchmarks that compare the reads).
func (s *System) Lookup(db string) indexed.Lookup {
	if s.store == nil {
		return nil
	}
	return ferretlookup.New(s.store, db)
}
