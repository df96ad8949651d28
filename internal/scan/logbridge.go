package scan

import (
	"context"
	"log/slog"
	"sync"

	tlog "github.com/aquasecurity/trivy/pkg/log"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Trivy logs through the process-wide slog default logger. Its init()
// installs a buffering handler that grows without bound and is not safe for
// concurrent scans, so the first scanner replaces it (InitLogger flushes the
// buffer to io.Discard) and every scanner points slog at its zap logger while
// it is open. Trivy's Info is chatty per scan ("Detected OS", ...), so it is
// logged at debug; its warnings and errors keep their level.
var (
	trivyLogOnce sync.Once
	trivyLogMu   sync.Mutex
)

func routeTrivyLogs(log *zap.Logger) {
	trivyLogOnce.Do(func() { tlog.InitLogger(false, true) })
	trivyLogMu.Lock()
	defer trivyLogMu.Unlock()
	slog.SetDefault(slog.New(&zapHandler{log: log.Named("trivy").WithOptions(zap.AddCallerSkip(3))}))
}

// ensureTrivyLogs makes Trivy's logging safe for code that runs Trivy
// without a scanner (package listings, detection over stored packages):
// it replaces the buffering default handler and, unless a scanner already
// routes Trivy's logs, routes them to log.
func ensureTrivyLogs(log *zap.Logger) {
	if active.Load() {
		trivyLogOnce.Do(func() { tlog.InitLogger(false, true) })
		return
	}
	routeTrivyLogs(log)
}

func silenceTrivyLogs() {
	trivyLogMu.Lock()
	defer trivyLogMu.Unlock()
	slog.SetDefault(slog.New(slog.DiscardHandler))
}

// zapHandler is a slog.Handler writing to zap.
type zapHandler struct {
	log    *zap.Logger
	prefix string
	group  string
}

func zapLevel(l slog.Level) zapcore.Level {
	switch {
	case l >= slog.LevelError:
		return zapcore.ErrorLevel
	case l >= slog.LevelWarn:
		return zapcore.WarnLevel
	default:
		return zapcore.DebugLevel
	}
}

func (h *zapHandler) Enabled(_ context.Context, l slog.Level) bool {
	return h.log.Core().Enabled(zapLevel(l))
}

func (h *zapHandler) Handle(_ context.Context, r slog.Record) error {
	ce := h.log.Check(zapLevel(r.Level), r.Message)
	if ce == nil {
		return nil
	}
	fields := make([]zap.Field, 0, r.NumAttrs())
	prefix := h.prefix
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "prefix" {
			prefix = a.Value.String()
			return true
		}
		fields = append(fields, h.field(a))
		return true
	})
	if prefix != "" {
		fields = append(fields, zap.String("component", prefix))
	}
	ce.Write(fields...)
	return nil
}

func (h *zapHandler) field(a slog.Attr) zap.Field {
	key := a.Key
	if h.group != "" {
		key = h.group + "." + key
	}
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return zap.String(key, v.String())
	case slog.KindInt64:
		return zap.Int64(key, v.Int64())
	case slog.KindUint64:
		return zap.Uint64(key, v.Uint64())
	case slog.KindFloat64:
		return zap.Float64(key, v.Float64())
	case slog.KindBool:
		return zap.Bool(key, v.Bool())
	case slog.KindDuration:
		return zap.Duration(key, v.Duration())
	case slog.KindTime:
		return zap.Time(key, v.Time())
	default:
		if err, ok := v.Any().(error); ok {
			// The message only: Trivy's xerrors carry multi-line frames.
			return zap.String(key, err.Error())
		}
		return zap.Any(key, v.Any())
	}
}

func (h *zapHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := *h
	fields := make([]zap.Field, 0, len(attrs))
	for _, a := range attrs {
		if a.Key == "prefix" {
			n.prefix = a.Value.String()
			continue
		}
		fields = append(fields, h.field(a))
	}
	n.log = h.log.With(fields...)
	return &n
}

func (h *zapHandler) WithGroup(name string) slog.Handler {
	n := *h
	if n.group != "" {
		name = n.group + "." + name
	}
	n.group = name
	return &n
}
