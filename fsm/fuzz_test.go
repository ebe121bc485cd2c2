package fsm

import "testing"

// FuzzDecode feeds arbitrary bytes to the command decoder: it must return a
// command or an error, never panic, and a decoded command must re-encode to
// something that decodes to the same command.
func FuzzDecode(f *testing.F) {
	for _, c := range randomLog(3, 20) {
		b, _ := Encode(c)
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{1, 1, '{', '}'})
	f.Add([]byte{byte(IgnoreUnknown | 9), 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Decode(data)
		if err != nil {
			return
		}
		b, err := Encode(c)
		if err != nil {
			t.Fatalf("Encode(Decode(x)) = %v", err)
		}
		c2, err := Decode(b)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(x))) = %v", err)
		}
		b2, _ := Encode(c2)
		if string(b) != string(b2) {
			t.Fatalf("re-encoding is not stable: %q vs %q", b, b2)
		}
		// Applying a decodable command must never panic.
		New().ApplyCommand(1, b)
	})
}
