package resolve

import (
	"fmt"
	"strings"

	"golang.org/x/net/idna"
)

// toASCII converts each label of a name that passed the ASCII checks to its
// A-label form with golang.org/x/net/idna's Lookup profile (IDNA2008/UTS 46
// mapping, NFC, bidi and joiner rules, RFC 5891). Plain ASCII labels are
// only lowercased: they were checked already, and some real host names
// (MX targets like "r3---sn-x.example") carry "--" in places the IDNA
// hyphen rule would refuse.
func toASCII(name string) (string, error) {
	labels := strings.Split(name, ".")
	for i, label := range labels {
		lower := strings.ToLower(label)
		if isASCII(label) && !strings.HasPrefix(lower, "xn--") {
			labels[i] = lower
			continue
		}
		a, err := idna.Lookup.ToASCII(label)
		if err != nil {
			return "", fmt.Errorf("label %q is not a valid internationalized name: %v", label, strings.TrimPrefix(err.Error(), "idna: "))
		}
		if strings.Contains(a, ".") {
			// Mapping turned one label into several (a full-width dot).
			return "", fmt.Errorf("label %q maps to more than one label", label)
		}
		labels[i] = strings.ToLower(a)
	}
	return strings.Join(labels, "."), nil
}
