package feeds

// cveKey packs a CVE ID ("CVE-2023-44487", any letter case) into one
// integer — year × 10^15 + number — so the feeds' lookup tables are maps of
// integers rather than of hundreds of thousands of small strings. IDs whose
// number has more than 15 digits (the catalogue's schema allows 19; none
// exist) do not pack: ok is false and the caller falls back to the
// canonical string.
func cveKey[T ~string | ~[]byte](id T) (key uint64, ok bool) {
	year, num, ok := splitCVE(id)
	if !ok || len(num) > 15 {
		return 0, false
	}
	var y, n uint64
	for i := 0; i < len(year); i++ {
		y = y*10 + uint64(year[i]-'0')
	}
	for i := 0; i < len(num); i++ {
		n = n*10 + uint64(num[i]-'0')
	}
	return y*1_000_000_000_000_000 + n, true
}

// splitCVE checks id against CVE-YYYY-NNNN... (4 to 19 digits, the
// catalogue's pattern; the prefix in any case) and returns its digit runs.
func splitCVE[T ~string | ~[]byte](id T) (year, num T, ok bool) {
	if len(id) < len("CVE-2000-0000") || id[0]|0x20 != 'c' || id[1]|0x20 != 'v' || id[2]|0x20 != 'e' || id[3] != '-' || id[8] != '-' {
		return year, num, false
	}
	year, num = id[4:8], id[9:]
	if len(num) < 4 || len(num) > 19 || !digits(year) || !digits(num) {
		return year, num, false
	}
	return year, num, true
}

// validCVE reports whether id is a CVE ID as the feeds write it.
func validCVE[T ~string | ~[]byte](id T) bool {
	_, _, ok := splitCVE(id)
	return ok
}

// canonicalCVE upper-cases the prefix of a valid CVE ID.
func canonicalCVE(id string) string {
	if id[:4] == "CVE-" {
		return id
	}
	return "CVE-" + id[4:]
}

func digits[T ~string | ~[]byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// table maps CVE IDs to values: packed keys in a map of integers, the
// rare unpackable IDs by their canonical string.
type table[V any] struct {
	packed map[uint64]V
	long   map[string]V
}

func newTable[V any](n int) table[V] {
	return table[V]{packed: make(map[uint64]V, n)}
}

func (t *table[V]) len() int { return len(t.packed) + len(t.long) }

// get looks id up; an ID that is not a CVE is simply absent.
func (t *table[V]) get(id string) (V, bool) {
	if k, ok := cveKey(id); ok {
		v, found := t.packed[k]
		return v, found
	}
	var zero V
	if t.long == nil || !validCVE(id) {
		return zero, false
	}
	v, found := t.long[canonicalCVE(id)]
	return v, found
}

// put stores v under a valid CVE ID and reports whether the ID was
// already present.
func (t *table[V]) put(id string, v V) (dup bool) {
	if k, ok := cveKey(id); ok {
		_, dup = t.packed[k]
		t.packed[k] = v
		return dup
	}
	if t.long == nil {
		t.long = map[string]V{}
	}
	c := canonicalCVE(id)
	_, dup = t.long[c]
	t.long[c] = v
	return dup
}

// each calls fn for every entry, in no particular order.
func (t *table[V]) each(fn func(V)) {
	for _, v := range t.packed {
		fn(v)
	}
	for _, v := range t.long {
		fn(v)
	}
}
