package ids

import (
	"fmt"
	"strings"
)

// callingCode is one country calling code of the EEA with a readable grouping of its
// national numbers: the digits after the code are cut into groups of these lengths, and
// whatever is left forms one last group. Real numbering plans vary by area code; this
// only aims at numbers people can read back, not at a dialling plan.
type callingCode struct {
	code   string
	groups []int
}

// eeaCallingCodes are the EU member states (with France's overseas departments, which
// are EU territory) plus Iceland, Liechtenstein and Norway: the only numbers Meta lets
// a provider enlist (PROTOCOL.md section 1, clause 7.5.1). Calling codes are prefix-free,
// so at most one entry matches a number.
var eeaCallingCodes = []callingCode{
	{"30", []int{3, 3}},       // Greece: 691 234 5678
	{"31", []int{1}},          // Netherlands: 6 12345678
	{"32", []int{3, 2, 2}},    // Belgium: 470 12 34 56
	{"33", []int{1, 2, 2, 2}}, // France: 6 12 34 56 78
	{"34", []int{3, 2, 2}},    // Spain: 612 34 56 78
	{"36", []int{2, 3}},       // Hungary: 20 123 4567
	{"39", []int{3, 3}},       // Italy: 312 345 6789
	{"40", []int{3, 3}},       // Romania: 712 345 678
	{"43", []int{3}},          // Austria: 664 1234567
	{"45", []int{2, 2, 2}},    // Denmark: 12 34 56 78
	{"46", []int{2, 3, 2}},    // Sweden: 70 123 45 67
	{"47", []int{3, 2}},       // Norway: 412 34 567
	{"48", []int{3, 3}},       // Poland: 512 345 678
	{"49", []int{3}},          // Germany: 170 1234567
	{"262", []int{3, 2, 2}},   // Réunion, Mayotte: 692 12 34 56
	{"351", []int{3, 3}},      // Portugal: 912 345 678
	{"352", []int{3, 3}},      // Luxembourg: 621 123 456
	{"353", []int{2, 3}},      // Ireland: 85 123 4567
	{"354", []int{3}},         // Iceland: 611 2345
	{"356", []int{4}},         // Malta: 7912 3456
	{"357", []int{2}},         // Cyprus: 96 123456
	{"358", []int{2}},         // Finland: 40 1234567
	{"359", []int{2, 3}},      // Bulgaria: 87 123 4567
	{"370", []int{3}},         // Lithuania: 612 34567
	{"371", []int{2, 3}},      // Latvia: 21 234 567
	{"372", []int{4}},         // Estonia: 5123 4567
	{"385", []int{2, 3}},      // Croatia: 91 234 5678
	{"386", []int{2, 3}},      // Slovenia: 31 234 567
	{"420", []int{3, 3}},      // Czechia: 601 123 456
	{"421", []int{3, 3}},      // Slovakia: 912 123 456
	{"423", []int{3}},         // Liechtenstein: 660 1234
	{"590", []int{3, 2, 2}},   // Guadeloupe: 690 12 34 56
	{"594", []int{3, 2, 2}},   // French Guiana: 694 12 34 56
	{"596", []int{3, 2, 2}},   // Martinique: 696 12 34 56
}

func lookupCallingCode(digits string) (callingCode, bool) {
	for _, cc := range eeaCallingCodes {
		if strings.HasPrefix(digits, cc.code) {
			return cc, true
		}
	}
	return callingCode{}, false
}

// IsEEANumber reports whether E.164 digits (without "+") have an EEA calling code.
func IsEEANumber(digits string) bool {
	_, ok := lookupCallingCode(digits)
	return ok
}

// FormatPhoneNumber groups E.164 digits for reading: "491701234567" becomes
// "+49 170 1234567". Numbers outside the EEA table come out as "+{digits}"; anything
// that is not digits is returned unchanged, since it is no phone number to format.
func FormatPhoneNumber(digits string) string {
	if !isDigits(digits, 1, 15) {
		return digits
	}
	cc, ok := lookupCallingCode(digits)
	if !ok {
		return "+" + digits
	}
	var b strings.Builder
	b.WriteString("+")
	b.WriteString(cc.code)
	rest := digits[len(cc.code):]
	for _, n := range cc.groups {
		if rest == "" {
			break
		}
		n = min(n, len(rest))
		b.WriteString(" ")
		b.WriteString(rest[:n])
		rest = rest[n:]
	}
	if rest != "" {
		b.WriteString(" ")
		b.WriteString(rest)
	}
	return b.String()
}

// Shortest and longest E.164 numbers accepted at login; section 1 allows up to 15
// digits, and no EEA number is shorter than 8 (code + national number).
const (
	minPhoneDigits = 8
	maxPhoneDigits = 15
)

// phoneCleaner drops the separators people type inside numbers.
var phoneCleaner = strings.NewReplacer(" ", "", "-", "", "(", "", ")", "", ".", "", "/", "", "\u00a0", "")

// ParsePhoneNumber reads a number as a person types it ("+49 170 1234567",
// "0049-170-1234567") and returns its E.164 digits without "+". It does not check
// the calling code; see IsEEANumber.
func ParsePhoneNumber(input string) (string, error) {
	s := phoneCleaner.Replace(strings.TrimSpace(input))
	switch {
	case strings.HasPrefix(s, "+"):
		s = s[1:]
	case strings.HasPrefix(s, "00"):
		s = s[2:]
	default:
		return "", fmt.Errorf("phone number must be in international format, starting with + and the country code")
	}
	if !isDigits(s, 1, len(s)) {
		return "", fmt.Errorf("phone number must contain only digits after the +")
	}
	if s[0] == '0' {
		return "", fmt.Errorf("country code cannot start with 0")
	}
	if len(s) < minPhoneDigits || len(s) > maxPhoneDigits {
		return "", fmt.Errorf("phone number must have %d-%d digits, got %d", minPhoneDigits, maxPhoneDigits, len(s))
	}
	return s, nil
}
