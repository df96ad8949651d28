// Package logging builds the zap logger every fleetscan binary uses: JSON in
// clusters (stderr not a terminal), human-readable console output on a TTY.
// Loggers are passed down explicitly; there is no global logger. Log keys
// are snake_case, and the keys the components share (run_id, digest,
// platform, cluster, db_updated_at, ...) are written through the typed field
// constructors of this package.
package logging

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Config selects the log format and level.
type Config struct {
	// Format is auto, json or console. auto picks console on a terminal.
	Format string
	// Level is debug, info, warn or error.
	Level string
}

// Defaults returns auto format at info level.
func Defaults() Config { return Config{Format: "auto", Level: "info"} }

// RegisterFlags binds --log-format and --log-level.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Format, "log-format", c.Format, "log format: auto (console on a terminal, JSON otherwise), json or console")
	fs.StringVar(&c.Level, "log-level", c.Level, "log level: debug, info, warn or error")
}

// Validate checks the values.
func (c Config) Validate() error {
	switch c.Format {
	case "auto", "json", "console":
	default:
		return fmt.Errorf("--log-format %q: want auto, json or console", c.Format)
	}
	if _, err := zapcore.ParseLevel(c.Level); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", c.Level)
	}
	return nil
}

// IsTerminal reports whether f is a character device (a TTY).
func IsTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// New builds a logger writing to stderr.
func New(c Config) (*zap.Logger, error) { return NewWriter(c, os.Stderr) }

// NewWriter builds a logger writing to w (a command's redacted stderr).
// The auto format is console when the process's stderr is a terminal.
func NewWriter(c Config, w io.Writer) (*zap.Logger, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	level, _ := zapcore.ParseLevel(c.Level)
	format := c.Format
	if format == "auto" {
		format = "json"
		if IsTerminal(os.Stderr) {
			format = "console"
		}
	}
	var enc zapcore.Encoder
	if strings.EqualFold(format, "console") {
		ec := zap.NewDevelopmentEncoderConfig()
		ec.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
		ec.EncodeLevel = zapcore.CapitalColorLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	} else {
		ec := zap.NewProductionEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		ec.TimeKey = "time"
		enc = zapcore.NewJSONEncoder(ec)
	}
	ws := zapcore.Lock(zapcore.AddSync(w))
	core := zapcore.NewCore(enc, ws, level)
	return zap.New(core, zap.AddCaller(), zap.ErrorOutput(ws)), nil
}
