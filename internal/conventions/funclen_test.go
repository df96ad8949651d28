package conventions

import (
	"cmp"
	"fmt"
	"go/ast"
	"slices"
	"testing"
)

// funcLength is the length of one function in lines.
type funcLength struct {
	name  string
	at    string
	lines int
}

// functionLengths measures every function declaration and function
// literal: lines from func to the closing brace, minus the lines inside
// slice and map literals (tables: each counts as its first line).
func functionLengths(files []sourceFile) []funcLength {
	var out []funcLength
	for _, sf := range files {
		ast.Inspect(sf.file, func(n ast.Node) bool {
			var body *ast.BlockStmt
			name := ""
			switch fn := n.(type) {
			case *ast.FuncDecl:
				body, name = fn.Body, fn.Name.Name
				if fn.Recv != nil && len(fn.Recv.List) == 1 {
					name = recvName(fn.Recv.List[0].Type) + "." + name
				}
			case *ast.FuncLit:
				body, name = fn.Body, "func literal"
			}
			if body == nil {
				return true
			}
			start, end := sf.fset.Position(n.Pos()).Line, sf.fset.Position(body.End()).Line
			lines := end - start + 1 - tableLines(sf, body)
			out = append(out, funcLength{name: name, at: fmt.Sprintf("%s:%d", sf.rel, start), lines: lines})
			return true
		})
	}
	return out
}

func recvName(e ast.Expr) string {
	switch x := e.(type) {
	case *ast.StarExpr:
		return recvName(x.X)
	case *ast.IndexExpr:
		return recvName(x.X)
	case *ast.IndexListExpr:
		return recvName(x.X)
	case *ast.Ident:
		return x.Name
	}
	return "?"
}

// tableLines counts the lines of body inside outermost slice and map
// literals, beyond the first line of each.
func tableLines(sf sourceFile, body *ast.BlockStmt) int {
	n := 0
	ast.Inspect(body, func(node ast.Node) bool {
		lit, ok := node.(*ast.CompositeLit)
		if !ok {
			return true
		}
		switch lit.Type.(type) {
		case *ast.ArrayType, *ast.MapType:
			n += sf.fset.Position(lit.End()).Line - sf.fset.Position(lit.Pos()).Line
			return false // nested literals are inside this one
		}
		return true
	})
	return n
}

// TestNoLongFunctions: a function past MaxFunctionLines names its steps
// instead (docs/architecture.md, "How the code is laid out").
func TestNoLongFunctions(t *testing.T) {
	t.Parallel()
	lengths := functionLengths(productionFiles(t, "cmd", "internal", "pkg"))
	slices.SortFunc(lengths, func(a, b funcLength) int { return cmp.Compare(b.lines, a.lines) })
	for _, f := range lengths {
		if f.lines <= MaxFunctionLines {
			break
		}
		t.Errorf("%s: %s is %d lines (at most %d, table literals aside): name its steps", f.at, f.name, f.lines, MaxFunctionLines)
	}
	if len(lengths) > 0 {
		t.Logf("longest production function: %s (%s), %d lines", lengths[0].name, lengths[0].at, lengths[0].lines)
	}
}
