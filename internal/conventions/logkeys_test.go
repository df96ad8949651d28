package conventions

import (
	"fmt"
	"go/ast"
	"go/token"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// keyedZapFuncs are the zap field constructors whose first argument is the
// key.
var keyedZapFuncs = map[string]bool{}

func init() {
	for _, f := range []string{
		"Any", "Array", "Binary", "Bool", "Boolp", "Bools", "ByteString", "ByteStrings",
		"Complex128", "Complex128p", "Complex128s", "Complex64", "Complex64p", "Complex64s", "Dict",
		"Duration", "Durationp", "Durations", "Errors", "Float32", "Float32p", "Float32s",
		"Float64", "Float64p", "Float64s", "Int", "Int16", "Int16p", "Int16s", "Int32", "Int32p",
		"Int32s", "Int64", "Int64p", "Int64s", "Int8", "Int8p", "Int8s", "Intp", "Ints",
		"NamedError", "Namespace", "Object", "ObjectValues", "Objects", "Reflect", "Stack",
		"StackSkip", "String", "Stringer", "Stringers", "Stringp", "Strings", "Time", "Timep",
		"Times", "Uint", "Uint16", "Uint16p", "Uint16s", "Uint32", "Uint32p", "Uint32s", "Uint64",
		"Uint64p", "Uint64s", "Uint8", "Uint8p", "Uint8s", "Uintp", "Uintptr", "Uintptrp",
		"Uintptrs", "Uints",
	} {
		keyedZapFuncs[f] = true
	}
}

var snakeCase = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// dynamicKeyFiles may pass keys that are not literals: the bridge that
// forwards Trivy's own log attributes (their keys are Trivy's).
var dynamicKeyFiles = []string{"internal/scan/logbridge.go"}

// loggingPackage holds the typed field constructors.
const loggingPackage = "internal/logging/"

// logKey is one key passed to a zap field constructor.
type logKey struct {
	key string // "" when not a literal
	at  string // file:line
	// file is the slash path of the file it is in.
	file string
}

// logKeys lists every key the module's production code passes to zap.
func logKeys(t *testing.T) []logKey {
	t.Helper()
	var keys []logKey
	for _, sf := range productionFiles(t, "cmd", "internal", "pkg", "hack") {
		zapName := importName(sf.file, "go.uber.org/zap")
		if zapName == "" {
			continue
		}
		ast.Inspect(sf.file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); !ok || x.Name != zapName || !keyedZapFuncs[sel.Sel.Name] {
				return true
			}
			k := logKey{file: sf.rel, at: fmt.Sprintf("%s:%d", sf.rel, sf.fset.Position(call.Pos()).Line)}
			if lit, ok := call.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				k.key, _ = strconv.Unquote(lit.Value)
			}
			keys = append(keys, k)
			return true
		})
	}
	if len(keys) == 0 {
		t.Fatal("found no zap fields: the scan is broken")
	}
	return keys
}

// TestLogKeysAreSnakeCase: one log-key convention, so lines of every
// component can be queried with the same field names.
func TestLogKeysAreSnakeCase(t *testing.T) {
	t.Parallel()
	for _, k := range logKeys(t) {
		switch {
		case k.key == "" && !slices.Contains(dynamicKeyFiles, k.file):
			t.Errorf("%s: log key is not a string literal: write a literal or use an internal/logging constructor", k.at)
		case k.key != "" && !snakeCase.MatchString(k.key):
			t.Errorf("%s: log key %q is not snake_case", k.at, k.key)
		}
	}
}

// TestSharedLogKeysUseConstructors: a key internal/logging has a typed
// constructor for is written through it everywhere else, so it cannot be
// misspelled or given another type.
func TestSharedLogKeysUseConstructors(t *testing.T) {
	t.Parallel()
	keys := logKeys(t)
	shared := map[string]string{} // key -> where the constructor defines it
	for _, k := range keys {
		if strings.HasPrefix(k.file, loggingPackage) && k.key != "" {
			shared[k.key] = k.at
		}
	}
	for _, want := range []string{"run_id", "digest", "platform", "cluster", "db_updated_at"} {
		if _, ok := shared[want]; !ok {
			t.Errorf("internal/logging has no constructor for %q", want)
		}
	}
	for _, k := range keys {
		if def, ok := shared[k.key]; ok && !strings.HasPrefix(k.file, loggingPackage) {
			t.Errorf("%s: key %q is spelled out; use its internal/logging constructor (%s)", k.at, k.key, def)
		}
	}
}
