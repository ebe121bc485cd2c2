package cloudinit

import (
	"strings"
	"testing"
)

func TestRenderParseRoundTrip(t *testing.T) {
	in := Boot{CallbackToken: "eyJ.abc.def", Env: map[string]string{
		"NODE_ID": "n-1", "CONTROL_PLANE_URL": "http://127.0.0.1:8001", "VM_AGENT_PORT": "8080",
	}}
	ud, err := Render(in)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ud, "#cloud-config\n") || !strings.Contains(ud, `permissions: "0600"`) {
		t.Fatalf("user data:\n%s", ud)
	}
	out, err := Parse(ud)
	if err != nil {
		t.Fatal(err)
	}
	if out.CallbackToken != in.CallbackToken || len(out.Env) != 3 || out.Env["CONTROL_PLANE_URL"] != "http://127.0.0.1:8001" {
		t.Fatalf("Parse = %+v", out)
	}
	if _, err := Render(Boot{Env: map[string]string{"X": strings.Repeat("a", MaxUserData)}}); err == nil {
		t.Fatalf("Render accepted user data over 32 KiB")
	}
	if _, err := Parse("#cloud-config\n"); err == nil {
		t.Fatalf("Parse accepted user data without boot data")
	}
}
