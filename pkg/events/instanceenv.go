package events

// Environment variables the launcher gives the instances it starts, over
// any value of the same name in the environment the API resolved for them.
// The API refuses a value for those the launcher always sets (EnvAlways),
// since it would never be seen.
const (
	EnvJobID           = "RM_JOB_ID"           // a job's instances
	EnvRole            = "RM_ROLE"             // every instance: controller, worker, post-controller, replica
	EnvInstanceIndex   = "RM_INSTANCE_INDEX"   // every instance
	EnvWorkerInstances = "RM_WORKER_INSTANCES" // a job's instances
	EnvDeploymentID    = "RM_DEPLOYMENT_ID"    // a deployment's replicas
	EnvAPIURL          = "RM_API_URL"          // when the launcher is told the API's URL
	EnvJobToken        = "RM_JOB_TOKEN"        // a job's instances, while auth is on
)

// EnvAlways are the variables the launcher sets in every instance they
// apply to, whatever the instance's environment says.
var EnvAlways = []string{EnvJobID, EnvRole, EnvInstanceIndex, EnvWorkerInstances, EnvDeploymentID}
