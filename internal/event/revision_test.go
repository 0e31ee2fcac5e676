package event

import "testing"

func TestRecordID(t *testing.T) {
	for in, want := range map[string]string{
		"66ea54eb-6301-4ee5-be62-ff5a759b8100":                      "66ea54eb-6301-4ee5-be62-ff5a759b8100",
		"66ea54eb-6301-4ee5-be62-ff5a759b8100:rev-0a1b2c3d4e5f6071": "66ea54eb-6301-4ee5-be62-ff5a759b8100",
		"86c9ed8a...:2024-03-13T19:15:41Z":                          "86c9ed8a...:2024-03-13T19:15:41Z",
		":rev-x":                                                    ":rev-x",
	} {
		if got := RecordID(in); got != want {
			t.Errorf("RecordID(%q) = %q, want %q", in, got, want)
		}
	}
}
