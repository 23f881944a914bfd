package gateway

import "strings"

// eeaCallingCodes are the country calling codes of the EEA: the EU member states
// (with France's overseas departments, which are EU territory) plus Iceland,
// Liechtenstein and Norway. Calling codes are prefix-free, so a number belongs to the
// code that prefixes it.
var eeaCallingCodes = []string{
	"30", "31", "32", "33", "34", "36", "39", "40", "43", "45", "46", "47", "48", "49",
	"262", "351", "352", "353", "354", "356", "357", "358", "359", "370", "371", "372",
	"385", "386", "420", "421", "423", "590", "594", "596",
}

// IsEEANumber reports whether E.164 digits (without "+") have an EEA calling code
// (PROTOCOL.md section 1, clause 7.5.1).
func IsEEANumber(number string) bool {
	number = strings.TrimPrefix(number, "+")
	for _, code := range eeaCallingCodes {
		if strings.HasPrefix(number, code) {
			return true
		}
	}
	return false
}
