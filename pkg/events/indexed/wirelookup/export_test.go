package wirelookup

import (
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/avxrm/rm/pkg/events/indexed"
)

// NewV1 is the Lookup of a store whose avxrmLookup answered version 1
// (before avxrmMatchingVersions).
func NewV1(db *mongo.Database) indexed.Lookup {
	return lookup{db: db, noVersions: true, noIDOrder: true, noIDsBefore: true, noMatchingAfter: true, noOnDemand: true}
}

// NewV2 is the Lookup of a store whose avxrmLookup answered version 2
// (before avxrmIDsAfter).
func NewV2(db *mongo.Database) indexed.Lookup {
	return lookup{db: db, noIDOrder: true, noIDsBefore: true, noMatchingAfter: true, noOnDemand: true}
}

// NewV3 is the Lookup of a store whose avxrmLookup answered version 3
// (before avxrmIDsBefore).
func NewV3(db *mongo.Database) indexed.Lookup {
	return lookup{db: db, noIDsBefore: true, noMatchingAfter: true, noOnDemand: true}
}

// NewV4 is the Lookup of a store whose avxrmLookup answered version 4
// (before avxrmMatchingIDsAfter).
func NewV4(db *mongo.Database) indexed.Lookup {
	return lookup{db: db, noMatchingAfter: true, noOnDemand: true}
}

// NewV5 is the Lookup of a store whose avxrmLookup answered version 5
// (before conditions OnDemand).
func NewV5(db *mongo.Database) indexed.Lookup { return lookup{db: db, noOnDemand: true} }
