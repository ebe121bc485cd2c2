package vmagent

// MaxDeliveryIDLength is the longest deliveryId the agent accepts on a
// session start; a longer one is refused with 400.
const MaxDeliveryIDLength = 128

// ValidDeliveryID reports whether the agent accepts s as the deliveryId of a
// session start: 1 to MaxDeliveryIDLength bytes of ASCII letters, digits and
// "._:-". Anything else (a '/', a space, non-ASCII) is a 400 "deliveryId has
// an invalid format", checked after the protocol version.
func ValidDeliveryID(s string) bool {
	if s == "" || len(s) > MaxDeliveryIDLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '-', c == '_', c == '.', c == ':':
		default:
			return false
		}
	}
	return true
}
