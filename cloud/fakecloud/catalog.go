package fakecloud

import (
	"strconv"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"
)

// The catalog of server types and locations the fake accepts. Creating a
// server with anything else is invalid_input, so a typo in configuration
// fails in tests as it would against Hetzner.

type serverType struct {
	id     int64
	cores  int
	memory float32
	disk   int
	cpu    string // shared | dedicated
	arch   string // x86 | arm
}

var serverTypes = map[string]serverType{
	"cx22": {101, 2, 4, 40, "shared", "x86"}, "cx32": {102, 4, 8, 80, "shared", "x86"},
	"cx42": {103, 8, 16, 160, "shared", "x86"}, "cx52": {104, 16, 32, 320, "shared", "x86"},
	"cx23": {111, 2, 4, 40, "shared", "x86"}, "cx33": {112, 4, 8, 80, "shared", "x86"},
	"cx43": {113, 8, 16, 160, "shared", "x86"}, "cx53": {114, 16, 32, 320, "shared", "x86"},
	"cpx11": {121, 2, 2, 40, "shared", "x86"}, "cpx21": {122, 3, 4, 80, "shared", "x86"},
	"cpx31": {123, 4, 8, 160, "shared", "x86"}, "cpx41": {124, 8, 16, 240, "shared", "x86"},
	"cpx51": {125, 16, 32, 360, "shared", "x86"}, "cpx22": {126, 2, 4, 80, "shared", "x86"},
	"cpx32": {127, 4, 8, 160, "shared", "x86"}, "cpx42": {128, 8, 16, 320, "shared", "x86"},
	"cpx52": {129, 12, 24, 480, "shared", "x86"}, "cpx62": {130, 16, 32, 640, "shared", "x86"},
	"cax11": {141, 2, 4, 40, "shared", "arm"}, "cax21": {142, 4, 8, 80, "shared", "arm"},
	"cax31": {143, 8, 16, 160, "shared", "arm"}, "cax41": {144, 16, 32, 320, "shared", "arm"},
	"ccx13": {151, 2, 8, 80, "dedicated", "x86"}, "ccx23": {152, 4, 16, 160, "dedicated", "x86"},
	"ccx33": {153, 8, 32, 240, "dedicated", "x86"}, "ccx43": {154, 16, 64, 360, "dedicated", "x86"},
	"ccx53": {155, 32, 128, 600, "dedicated", "x86"}, "ccx63": {156, 48, 192, 960, "dedicated", "x86"},
}

// lookupServerType resolves a server type given by name or id.
func lookupServerType(v schema.IDOrName) (string, serverType, bool) {
	if v.Name != "" {
		t, ok := serverTypes[v.Name]
		return v.Name, t, ok
	}
	for name, t := range serverTypes {
		if t.id == v.ID {
			return name, t, true
		}
	}
	return "", serverType{}, false
}

var locations = map[string]schema.Location{
	"fsn1": {ID: 1, Name: "fsn1", Description: "Falkenstein DC Park 1", Country: "DE", City: "Falkenstein", Latitude: 50.47612, Longitude: 12.370071, NetworkZone: "eu-central"},
	"nbg1": {ID: 2, Name: "nbg1", Description: "Nuremberg DC Park 1", Country: "DE", City: "Nuremberg", Latitude: 49.452102, Longitude: 11.076665, NetworkZone: "eu-central"},
	"hel1": {ID: 3, Name: "hel1", Description: "Helsinki DC Park 1", Country: "FI", City: "Helsinki", Latitude: 60.169855, Longitude: 24.938379, NetworkZone: "eu-central"},
	"ash":  {ID: 4, Name: "ash", Description: "Ashburn, VA", Country: "US", City: "Ashburn, VA", Latitude: 39.045821, Longitude: -77.487073, NetworkZone: "us-east"},
	"hil":  {ID: 5, Name: "hil", Description: "Hillsboro, OR", Country: "US", City: "Hillsboro, OR", Latitude: 45.54222, Longitude: -122.951924, NetworkZone: "us-west"},
	"sin":  {ID: 6, Name: "sin", Description: "Singapore", Country: "SG", City: "Singapore", Latitude: 1.283333, Longitude: 103.833333, NetworkZone: "ap-southeast"},
}

// lookupLocation resolves a location given by name or id ("" is fsn1).
func lookupLocation(v string) (schema.Location, bool) {
	if v == "" {
		v = "fsn1"
	}
	if l, ok := locations[v]; ok {
		return l, true
	}
	for _, l := range locations {
		if v == strconv.FormatInt(l.ID, 10) {
			return l, true
		}
	}
	return schema.Location{}, false
}
