package httpapi

import "context"

// EndStreams ends the answers that last as long as their client: the
// event streams (GET /events, a job's live events) and followed logs. The
// server calls it when it begins to shut down (http.Server.RegisterOnShutdown),
// since a graceful shutdown waits for every answer to end and these end
// only when their client leaves: with one open, a stop took the whole
// shutdown timeout. Their clients reconnect (to another replica, or to this
// one once it is back) and resume where they were.
func (s *Server) EndStreams() { s.endStreams() }

// streamContext is ctx, ended too by EndStreams. stop releases it.
func (s *Server) streamContext(ctx context.Context) (_ context.Context, stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	unhook := context.AfterFunc(s.streams, cancel)
	return ctx, func() { unhook(); cancel() }
}
