package tracing

import (
	"context"
	"log/slog"
)

// LogKey is the attribute that carries a trace id in log lines.
const LogKey = "trace_id"

// LogHandler wraps h so that a record logged with a context holding a
// valid span (slog's …Context methods, Log, LogAttrs) carries its trace id
// as trace_id: the log lines of a request or an API call can be found from
// its trace, and the other way round.
func LogHandler(h slog.Handler) slog.Handler { return logHandler{h} }

type logHandler struct{ slog.Handler }

func (h logHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := TraceID(ctx); id != "" {
		r.AddAttrs(slog.String(LogKey, id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return logHandler{h.Handler.WithAttrs(attrs)}
}

func (h logHandler) WithGroup(name string) slog.Handler {
	return logHandler{h.Handler.WithGroup(name)}
}
