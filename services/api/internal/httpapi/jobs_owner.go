package httpapi

import "go.mongodb.org/mongo-driver/v2/bson"

// ownerCondition selects the jobs of owner, given as the token subject or
// the username (preferred_username) that the job records: usernames are
// what people type, subjects what is unique. Jobs submitted while auth was
// off have no owner and never match.
func ownerCondition(owner string) bson.D {
	return bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: "owner.subject", Value: owner}},
		bson.D{{Key: "owner.username", Value: owner}},
	}}}
}
