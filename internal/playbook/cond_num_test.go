package playbook

import (
	"math"
	"strings"
	"testing"
)

// refScalarEquals is fieldCond.scalar for equals / in as it was before the
// number fast path: the value's text, lower-cased unless case-sensitive,
// compared with each value as text or as numbers (numEqual).
func refScalarEquals(caseSensitive bool, values []string, v any) bool {
	s, ok := scalarString(v)
	if !ok {
		return false
	}
	if !caseSensitive {
		s = strings.ToLower(s)
	}
	for _, want := range values {
		if s == want || numEqual(s, want) {
			return true
		}
	}
	return false
}

// TestEqualsOnNumbers: for a JSON number, equals and in answer what the text
// comparison answered, on numbers and values chosen to disagree if anything
// differed (signs, zeros, exponents, fractions, hex, spaces, Inf and NaN
// spelled as values, huge and tiny numbers), case-sensitive or not.
func TestEqualsOnNumbers(t *testing.T) {
	nums := []float64{0, math.Copysign(0, -1), 1, -1, 0.5, 500121, 50074, 1e21, 1e-7, 123456789012345680000,
		9007199254740993, 0.1 + 0.2, math.MaxFloat64, math.SmallestNonzeroFloat64}
	vals := []string{"0", "-0", "+0", "0.0", "00", ".0", "1", "+1", "1.0", "1e0", "-1", "0.5", ".5", "0.50", "5e-1",
		"500121", "5.00121e5", "500121.0", "50074", "1e21", "1000000000000000000000", "1e-7", "0.0000001",
		"123456789012345680000", "1.2345678901234568e20", "9007199254740993", "9007199254740992",
		"0.30000000000000004", "0.3", "0x10", "0x1p4", " 1", "1 ", "1_000", "inf", "+inf", "-inf", "infinity",
		"nan", "NaN", "abc", "", "e", "-", "+", "1e400", "-1e400", "1.7976931348623157e308", "5e-324", "4.9e-324"}
	checked, equal := 0, 0
	for _, cs := range []bool{false, true} {
		for _, n := range nums {
			for i := range vals {
				for _, set := range [][]string{vals[i : i+1], {vals[i], vals[(i+7)%len(vals)]}} {
					for _, name := range []string{"equals", "in"} {
						f := &fieldCond{caseSensitive: cs}
						op := fieldOp{name: name, values: set, nums: numbersOf(set)}
						got, want := f.scalar(op, n), refScalarEquals(cs, set, n)
						if got != want {
							t.Errorf("%s %q on %v (case-sensitive %v): %v, the text comparison says %v", name, set, n, cs, got, want)
						}
						checked++
						if want {
							equal++
						}
					}
				}
			}
		}
	}
	if equal < 40 {
		t.Fatalf("only %d of %d comparisons were equal: the cases do not test equality", equal, checked)
	}
	t.Logf("%d comparisons, %d equal", checked, equal)
}
