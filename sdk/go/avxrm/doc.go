// Package avxrm is the Go SDK of the Resource Manager: a thin, hand-written
// layer over the client generated from the API's OpenAPI document (package
// api). It adds what every caller would otherwise write again: iterators over
// paged lists, waiting for a job, a job array or a scenario export through
// the event stream, watching events with resume and reconnect, an
// Idempotency-Key on every create with retries on connection errors and
// 503s, errors that carry the RFC 9457 problem, downloads that resume a lost
// connection and check what they wrote, and bearer tokens from a
// TokenSource. The package imports no part of the server; the REST contract
// it follows is docs/API.md.
//
// # Install
//
// The SDK is a module of its own:
//
//	go get github.com/avxrm/rm/sdk/go/avxrm
//
// It imports github.com/avxrm/rm/sdk/go/avxrm/api (the generated client and
// the API's types) and github.com/oapi-codegen/nullable (the type of the
// API's nullable fields).
//
// # A client
//
// New takes the server's root URL (what `avxrm up` prints, or RM_SERVER);
// the API's base path /api/resources/v1 is appended, and a URL of the web
// view or of the API itself is refused, naming the root:
//
//	c, err := avxrm.New("http://127.0.0.1:8080",
//		avxrm.WithTokenSource(avxrm.StaticToken(token))) // none while auth is off
//	if err != nil {
//		log.Fatal(err)
//	}
//	v, err := c.ServerVersion(ctx) // the server's build: v.Version, v.GoVersion, v.Platform
//	me, err := c.Whoami(ctx, "")   // the token's user, access, expiry and per-queue read/submit
//
// Options: WithTokenSource (StaticToken, or OIDC's Password, Device and
// Refresh, which renew the token; ServerIssuer reads the issuer a server
// trusts), WithRetries (4 by default) and WithOnRetry, WithBackoff,
// WithPageSize (200), WithHTTPClient (DefaultHTTPClient: connect within
// DialTimeout, an answer begun within ResponseHeaderTimeout and never silent
// longer; no overall timeout, so give contexts deadlines) and
// WithOnDisconnect. A Client is safe for concurrent use.
//
// Every POST carries an Idempotency-Key, so that a create sent again after
// a lost answer creates nothing twice; GET, HEAD, PUT and POST are tried
// again on connection errors and on 503 (the API cannot reach its store for
// the moment), waiting at least the answer's Retry-After up to the
// backoff's Max.
//
// # Errors
//
// An answer of 400 or above is an *Error: its StatusCode, the RFC 9457
// Problem the server sent (Problem.Detail; FieldErrors names the refused
// fields of a 400 or 422), and the Server it came from. errors.Is matches a
// sentinel by status: ErrBadRequest (400, 422), ErrUnauthorized,
// ErrForbidden, ErrNotFound, ErrConflict, ErrPrecondition (412),
// ErrUnavailable (503). An answer that cannot be the API's (another web
// server's page: the URL names the wrong server) is an *Error whose NotAPI
// is true, and matches no sentinel. A server that cannot be reached is no
// *Error but the connection's error (Unreachable tells it, and a 502, 503
// or 504, apart), and a context that ends gives its error. So check err
// against nil first, then look at what it is:
//
//	q, err := c.GetQueue(ctx, "sim")
//	switch {
//	case errors.Is(err, avxrm.ErrNotFound):
//		q, err = c.CreateQueue(ctx, api.QueueBody{Name: "sim"})
//	case err != nil:
//		log.Fatal(err) // one line: the status and the problem's detail, or the connection's error
//	}
//
// # Lists
//
// Jobs, Queues, Artifacts and Exports iterate over a list page by page (List over
// any list path, as raw JSON; ListPages yields its pages themselves, for a
// caller that shows each as it comes), following next_cursor; breaking out
// of the loop stops fetching. An error ends the iteration: it is yielded once,
// with the zero value (a Job whose Id is nil), so check it before the item:
//
//	for j, err := range c.Jobs(ctx, avxrm.JobFilter{QueueID: "Default", Status: "failed"}) {
//		if err != nil {
//			log.Fatal(err) // the server down, a bad filter (ErrBadRequest), …
//		}
//		fmt.Println(*j.Id, *j.Status)
//	}
//
// JobFilter selects by queue, status, labels, owner and job array
// (ArrayID). The API's nullable fields are nullable.Nullable (a merge patch
// can send null); Values reads a nullable list, nil when it is absent or
// null: avxrm.Values(j.Conditions), avxrm.Values(a.FailedIndexes).
//
// # Waiting
//
// WaitJob returns a job once its status is final (JobFinal: succeeded,
// failed or cancelled); FollowJob yields each of its states until then;
// WaitJobArray returns a job array once no job of it is in a status that is
// not final (JobArrayFinal; a deleted job is in none of its counts, so do
// not compare the jobs ended with its Count); WaitExport returns a scenario
// export once it is ready or failed. All are driven by the event stream,
// never by polling, and resume after a lost connection; they end with
// their context, whose error errors.Is finds in theirs:
//
//	ctx, cancel := context.WithTimeout(ctx, time.Hour)
//	defer cancel()
//	a, err := c.CreateJobArray(ctx, api.JobArrayBody{Count: 100, Job: body})
//	if err != nil {
//		log.Fatal(err)
//	}
//	if a, err = c.WaitJobArray(ctx, *a.Id); err != nil {
//		log.Fatal(err)
//	}
//	fmt.Println(*a.Counts, avxrm.Values(a.FailedIndexes))
//
// # Events
//
// Watch yields the events WatchOptions selects (a job's, a queue's, by
// CloudEvent type), in stream order; a lost connection is opened again with
// Last-Event-ID, so no event is lost or repeated, and After resumes after an
// event seen before. Event.Job decodes a job event's data. An event that
// cannot be read ends the iteration with ErrMalformedEvent.
//
//	for e, err := range c.Watch(ctx, avxrm.WatchOptions{QueueID: "Default", Types: []string{"rm.job.failed"}}) {
//		if err != nil {
//			log.Fatal(err)
//		}
//		j, err := e.Job()
//		…
//	}
//
// # Logs
//
// InstanceLog reads what an instance of a job (its role and index) has
// written so far, from an offset or its last lines; Log.End is where to
// read on from.
//
// # Scenario exports and artifacts
//
// CreateExport asks for a zip of a job's scenario files: the concrete
// scenario files of the samples its request names in Samples (none when it
// names none) and the job's asset data. DownloadExport and
// DownloadExportFile write the zip once it is ready (ErrExportNotReady
// before), DownloadArtifact and DownloadArtifactFile a job's artifact: a lost
// connection is resumed with Range, and the size and sha256 (and an
// export's manifest.json: VerifyExportZip) are checked before a file is
// renamed into place. Exports lists a job's exports, DeleteExport removes
// one before it expires.
//
//	x, err := c.CreateExport(ctx, *job.Id, api.ExportRequest{
//		Samples: nullable.NewNullableWithValue([]string{"s-001", "s-007"})})
//	if err != nil {
//		log.Fatal(err)
//	}
//	if x, err = c.WaitExport(ctx, *x.Id); err != nil {
//		log.Fatal(err)
//	}
//	d, err := c.DownloadExportFile(ctx, *x.Id, "sweep.zip", avxrm.DownloadOptions{})
//
// # The generated client, for the rest
//
// The operations this package does not wrap (plugins, applications
// beyond creating one, app-runtime-configs, deployments, a job's
// instances, events and exports, updates and deletes) are Client.API's,
// the generated client, which shares the client's token, retries and
// idempotency keys. Its …WithResponse methods return err == nil for any
// answer the server gave, a 4xx or 5xx too: CheckResponse turns the answer
// and its body, which the method has read already, into the same *Error
// the package's own calls give (ResponseError, into an *Error, for an
// answer known to have failed).
//
//	r, err := c.API.CreatePluginWithResponse(ctx, &api.CreatePluginParams{},
//		api.PluginBody{Name: "local", Type: "local", Config: &map[string]any{"work_dir": "/var/lib/rm"}})
//	if err == nil {
//		err = avxrm.CheckResponse(r.HTTPResponse, r.Body)
//	}
//	if err != nil {
//		log.Fatal(err) // "422 validation failed: config.work_dir: …"; errors.Is(err, avxrm.ErrBadRequest)
//	}
//	fmt.Println(*r.JSON201.Id)
//
// The generated list types hold their items as the OpenAPI document says:
// the Items of api.JobList, api.PendingList, api.InstanceList,
// api.JobEventList and api.ScenarioExportList are nullable (a
// nullable.Nullable is a map: ranging over it ranges over the map, not
// the items), so range over avxrm.Values(l.Items); those of the other
// lists (api.QueueList, api.PluginList, api.ApplicationList,
// api.AppRuntimeConfigList, api.DeploymentList, api.JobArrayList,
// api.ArtifactList) are plain slices:
//
//	r, err := c.API.ListQueuePendingWithResponse(ctx, "Default", &api.ListQueuePendingParams{})
//	if err == nil {
//		err = avxrm.CheckResponse(r.HTTPResponse, r.Body)
//	}
//	if err != nil {
//		log.Fatal(err)
//	}
//	for _, p := range avxrm.Values(r.JSON200.Items) { // one page: next_cursor says if there are more
//		fmt.Println(p.QueuePosition, p.Id)
//	}
//
// Do sends a request to any API
// path and decodes its answer (an *Error at 400 or above); the generated
// client resolves an id of "." or ".." away, so give such ids to Do, each
// as PathSegment(id).
package avxrm
