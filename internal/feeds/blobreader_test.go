package feeds

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// readAll reads every element of in with arrayReader, through r.
func readAll(r io.Reader) ([][]byte, error) {
	ar := newArrayReader(r)
	var out [][]byte
	for {
		el, err := ar.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, bytes.Clone(el))
	}
}

// checkArrayReader compares arrayReader with encoding/json on in: the same
// elements (compacted) when encoding/json reads a JSON array, an error when
// it does not.
func checkArrayReader(t *testing.T, in []byte) {
	t.Helper()
	var want []json.RawMessage
	werr := json.NewDecoder(bytes.NewReader(in)).Decode(&want)
	if werr == nil && want == nil { // null, or only whitespace before it: not an array
		werr = errors.New("null")
	}
	for _, r := range []struct {
		name string
		r    io.Reader
	}{{"whole", bytes.NewReader(in)}, {"one byte at a time", iotest.OneByteReader(bytes.NewReader(in))}, {"half", iotest.HalfReader(bytes.NewReader(in))}} {
		got, err := readAll(r.r)
		if (err != nil) != (werr != nil) {
			t.Fatalf("%s: %.200q: error %v, encoding/json says %v", r.name, in, err, werr)
		}
		if err != nil {
			continue
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %.200q: %d elements, encoding/json %d", r.name, in, len(got), len(want))
		}
		for i := range got {
			var c bytes.Buffer
			if err := json.Compact(&c, want[i]); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[i], c.Bytes()) {
				t.Fatalf("%s: element %d: %.200q, want %.200q", r.name, i, got[i], c.Bytes())
			}
		}
	}
}

var arrayReaderCases = []string{
	`[]`, ` [ ] `, "[\n]", `[1]`, `[1,2]`, `[ 1 , 2 ]`, `[-0.5e+10,0,1E3,-1]`, `[true,false,null]`,
	`[{"a":1},{"b":[1,2,{"c":"d"}]}]`, "[\n  {\n    \"a\" : 1 ,\"b\":\"x y\"\n  },\n  {}\n]",
	`["\"\\\/\b\f\n\r\t\u00e9\uD83D\uDE00"]`, `["<m1@contoso.com> & more"]`, "[\"\xff\xfe invalid utf-8\"]",
	`[[[[[]]]]]`, `[{"a":{}}, [ ], ""]`, `[1]   trailing ignored`,
	// invalid
	``, ` `, `[`, `[1`, `[1,`, `[1,]`, `[,1]`, `[1 2]`, `{"a":1}`, `1`, `null`, `"x"`, `[01]`, `[1.]`, `[.5]`, `[1e]`, `[-]`,
	`[tru]`, `[nul]`, `[truex]`, `["a\x"]`, `["\u12G4"]`, "[\"a\nb\"]", `[{"a"}]`, `[{"a":}]`, `[{"a":1,}]`, `[{1:2}]`,
	`[{"a":1]`, `[[1}]`, `["unterminated]`, `[1]]`, `[}`,
}

func TestArrayReaderMatchesEncodingJSON(t *testing.T) {
	for _, c := range arrayReaderCases {
		checkArrayReader(t, []byte(c))
	}
	// Elements larger than the first buffer, split across many reads.
	big := `{"x":"` + strings.Repeat("a\\\"b ", 40000) + `","y":[` + strings.Repeat("1, ", 30000) + `2]}`
	checkArrayReader(t, []byte("["+big+", "+big+",1]"))
	checkArrayReader(t, []byte("["+big+", "+big[:len(big)-1]+"]"))
	// Nesting beyond encoding/json's limit.
	checkArrayReader(t, []byte("["+strings.Repeat("[", 10001)+strings.Repeat("]", 10001)+"]"))
}

// TestArrayReaderMutations compares with encoding/json on random mutations of
// the cases (a cheap stand-in for running the fuzz target).
func TestArrayReaderMutations(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	alphabet := []byte("[]{},:\"\\ \n0123456789-+.eEtrufalsn\\u/bx\x01\xff")
	for range 8000 {
		in := []byte(arrayReaderCases[rng.IntN(len(arrayReaderCases))])
		for range 1 + rng.IntN(3) {
			k := rng.IntN(len(in) + 1)
			switch c := alphabet[rng.IntN(len(alphabet))]; rng.IntN(3) {
			case 0:
				in = append(in[:k], append([]byte{c}, in[k:]...)...)
			case 1:
				if k < len(in) {
					in = append(in[:k], in[k+1:]...)
				}
			default:
				if k < len(in) {
					in[k] = c
				}
			}
		}
		checkArrayReader(t, in)
	}
}

// TestArrayReaderPublicBlobs reads the public Management Activity fixtures
// that are JSON arrays (the fixtures must be there: CI fails without them).
func TestArrayReaderPublicBlobs(t *testing.T) {
	dir := filepath.Join("..", "..", "..", "shared", "fixtures", "public")
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("public fixtures not found at %s (../shared beside the checkout): %v", dir, err)
	}
	n := 0
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".json") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil || !bytes.HasPrefix(bytes.TrimSpace(b), []byte("[")) || len(b) > 8<<20 {
			return nil
		}
		n++
		checkArrayReader(t, b)
		return nil
	})
	t.Logf("%d JSON arrays read", n)
}

func FuzzArrayReader(f *testing.F) {
	for _, c := range arrayReaderCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		checkArrayReader(t, in)
	})
}

// BenchmarkArrayReader reads a blob of 2,000 synthetic audit records.
func BenchmarkArrayReader(b *testing.B) {
	created := time.Now().UTC().Format("2006-01-02T15:04:05")
	blob := []byte{'['}
	for i := range 2000 {
		if i > 0 {
			blob = append(blob, ',')
		}
		blob = fmt.Appendf(blob, `{"CreationTime":"%s","Id":"00000000-0000-4000-8000-%012x","Operation":"MailItemsAccessed","OrganizationId":"8f3c2a51-6a0e-4f6b-9d2e-2b7c41d0c0de","RecordType":50,"ResultStatus":"Succeeded","UserKey":"10032002F222981B","UserType":0,"Version":1,"Workload":"Exchange","ClientIP":"185.73.124.135:19823","UserId":"alice@contoso.com","ClientInfoString":"Client=OWA;Mozilla/5.0 (Windows NT 10.0; Win64; x64)","ExternalAccess":false,"LogonType":0,"MailboxOwnerUPN":"alice@contoso.com","OperationProperties":[{"Name":"MailAccessType","Value":"Bind"},{"Name":"IsThrottled","Value":"False"}],"Folders":[{"FolderItems":[{"InternetMessageId":"<m0.%d@contoso.com>","SizeInBytes":51234}],"Path":"\\Inbox"}]}`, created, i, i)
	}
	blob = append(blob, ']')
	b.SetBytes(int64(len(blob)))
	b.ReportAllocs()
	for b.Loop() {
		ar := newArrayReader(bytes.NewReader(blob))
		for {
			if _, err := ar.Next(); err != nil {
				if err != io.EOF {
					b.Fatal(err)
				}
				break
			}
		}
	}
}
