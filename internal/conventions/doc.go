// Package conventions has no code of its own: its tests check, over the
// whole module, the rules docs/architecture.md states for fleetscan's code,
// so they stay true as the code grows:
//
//   - no package of this module linked into a binary under cmd/ imports
//     package testing (or net/http/httptest): test helpers live in …test
//     packages (internal/fixture/fixturetest, internal/natsembed/natstest, …);
//   - no production function is longer than MaxFunctionLines, not counting
//     the lines of slice and map literals (tables);
//   - every log key is snake_case, and the keys the components share are
//     written only through the typed constructors of internal/logging.
package conventions

// MaxFunctionLines bounds a production function, from its func line to its
// closing brace, minus the lines of the table literals in it.
const MaxFunctionLines = 80
