package playbook

import (
	"fmt"
	"net/netip"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
)

// Bounds on expressions: the size of the compiled tree, and the VM's memory
// budget (expr's unit: roughly one per allocated element) for one evaluation.
const (
	exprMaxNodes     = 2000
	exprMemoryBudget = 200_000
)

// exprSampleEnv declares the variables an expression may use; unknown names
// are compile errors.
func exprSampleEnv() map[string]any {
	env := map[string]any{"raw": map[string]any{}}
	for f := range envFields {
		env[f] = ""
	}
	for h := range helperFields {
		env[h] = []any{}
	}
	return env
}

// compileExpr compiles an expression returning bool. Builtins that would make
// evaluation depend on the clock (now) or allocate without bound (repeat) are
// disabled, so evaluation stays pure and bounded.
func compileExpr(src string) (*vm.Program, error) {
	return expr.Compile(src,
		expr.Env(exprSampleEnv()),
		expr.AsBool(),
		expr.MaxNodes(exprMaxNodes),
		expr.DisableBuiltin("now"),
		expr.DisableBuiltin("repeat"),
		expr.Function("in_cidr", func(p ...any) (any, error) {
			ip, _ := p[0].(string)
			cidr, _ := p[1].(string)
			a, ok := parseIP(ip)
			if !ok {
				return false, nil
			}
			pfx, err := netip.ParsePrefix(cidr)
			if err != nil {
				return false, fmt.Errorf("in_cidr: %w", err)
			}
			return pfx.Contains(a), nil
		}, new(func(string, string) bool)),
	)
}

// runExpr evaluates a program with a fresh VM bounded by exprMemoryBudget. The
// VM turns panics inside the expression into errors.
func runExpr(p *vm.Program, env map[string]any) (any, error) {
	m := vm.VM{MemoryBudget: exprMemoryBudget}
	return m.Run(p, env)
}

// exprEnvironment builds (once per event) the variables an expression sees.
func (c *evalCtx) exprEnvironment() map[string]any {
	if c.exprEnv != nil {
		return c.exprEnv
	}
	env := map[string]any{}
	for f := range envFields {
		env[f] = envValue(c.env, f)
	}
	raw, ok := c.rawAll().(map[string]any)
	if !ok {
		raw = map[string]any{}
	}
	env["raw"] = raw
	for h := range helperFields {
		env[h] = c.helper(h)
	}
	c.exprEnv = env
	return env
}
