package resolve

import (
	"strings"
	"testing"
)

func TestNormalizeDomain(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr string // the whole message, or a substring when it starts with "…"
	}{
		{in: "example.com", want: "example.com"},
		{in: "  Example.COM.  ", want: "example.com"},
		{in: "mail-1.example.com", want: "mail-1.example.com"},
		{in: "localhost", want: "localhost"},
		{in: "r3---sn-abc.example.com", want: "r3---sn-abc.example.com"},
		{in: "bücher.example", want: "xn--bcher-kva.example"},
		{in: "BÜCHER.example", want: "xn--bcher-kva.example"},
		{in: "xn--bcher-kva.example", want: "xn--bcher-kva.example"},
		{in: "XN--BCHER-KVA.Example", want: "xn--bcher-kva.example"},
		{in: "пример.рф", want: "xn--e1afmkfd.xn--p1ai"},
		{in: "münchen。example", want: "xn--mnchen-3ya.example"},
		{in: "ｅｘａｍｐｌｅ.com", want: "example.com"},
		{in: "例え.テスト", want: "xn--r8jz45g.xn--zckzah"},
		{in: "\u212aelvin.example", want: "kelvin.example"},

		{in: "exa mple.com", wantErr: `"exa mple.com": label "exa mple" has a space`},
		{in: "", wantErr: `"": empty domain`},
		{in: "   ", wantErr: `"   ": empty domain`},
		{in: ".", wantErr: "…empty label"},
		{in: "a..example", wantErr: `"a..example": empty label (two dots in a row, or a leading dot)`},
		{in: ".example", wantErr: "…empty label"},
		{in: "example.com..", wantErr: "…empty label"},
		{in: "exam\tple.com", wantErr: "…has a space"},
		{in: "exam\x00ple.com", wantErr: "…control character"},
		{in: "192.0.2.1", wantErr: `"192.0.2.1": an IP address, not a domain`},
		{in: "2001:db8::1", wantErr: "…an IP address"},
		{in: "[192.0.2.1]", wantErr: "…address literal"},
		{in: "192.168.1", wantErr: `…top-level label "1" is all digits`},
		{in: "_dmarc.example.com", wantErr: `"_dmarc.example.com": label "_dmarc" has '_'; only letters, digits and hyphens are allowed`},
		{in: "-start.example", wantErr: `…label "-start" starts with a hyphen`},
		{in: "end-.example", wantErr: `…label "end-" ends with a hyphen`},
		{in: "user@example.com", wantErr: "…has '@'"},
		{in: strings.Repeat("a", 64) + ".example", wantErr: "…is 64 characters, longer than 63"},
		{in: strings.Repeat(strings.Repeat("a", 63)+".", 4) + "example", wantErr: "…longer than 253"},
		{in: strings.Repeat("例", 64) + ".example", wantErr: "…longer than 63"},
		{in: strings.Repeat("例", 100000), wantErr: "…name is 100000 characters, longer than 253"},
		{in: "snow☃.example", want: "xn--snow-8g3b.example"}, // UTS 46 lookup allows symbols IDNA2008 registration would not
		{in: "xn--a.example", wantErr: "…not a valid internationalized name"},
		{in: "xn--zz-.example", wantErr: "…ends with a hyphen"},
		{in: "xn--ab!.example", wantErr: "…has '!'"},
		{in: "xn--bcher-kva-.example", wantErr: "…ends with a hyphen"},
		{in: "\xff.example", wantErr: "…not valid UTF-8"},
	}
	for _, tt := range tests {
		got, err := NormalizeDomain(tt.in)
		if tt.wantErr == "" {
			if err != nil || got != tt.want {
				t.Errorf("NormalizeDomain(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
			continue
		}
		if err == nil {
			t.Errorf("NormalizeDomain(%q) = %q, want error %q", tt.in, got, tt.wantErr)
			continue
		}
		if sub, ok := strings.CutPrefix(tt.wantErr, "…"); ok {
			if !strings.Contains(err.Error(), sub) {
				t.Errorf("NormalizeDomain(%q) error = %q, want it to contain %q", tt.in, err, sub)
			}
		} else if err.Error() != tt.wantErr {
			t.Errorf("NormalizeDomain(%q) error = %q\n                             want %q", tt.in, err, tt.wantErr)
		}
	}
}

// TestPunycode checks the codec against RFC 3492 §7.1 samples.
func FuzzNormalizeDomain(f *testing.F) {
	for _, s := range []string{
		"example.com", " Example.COM. ", "bücher.example", "xn--bcher-kva.example", "пример.рф",
		"exa mple.com", "192.0.2.1", "[::1]", "a..b", "-a.b", "_dmarc.example", "xn--a", "ｅｘａｍｐｌｅ。com",
		strings.Repeat("a.", 130), "xn--zz-", "3年B組金八先生.example",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := NormalizeDomain(in)
		if err != nil {
			if !strings.HasPrefix(err.Error(), `"`) {
				t.Errorf("error %q does not start by quoting the input", err)
			}
			return
		}
		if out == "" || len(out) > 253 || !isASCII(out) || strings.HasSuffix(out, ".") || out != strings.ToLower(out) {
			t.Errorf("NormalizeDomain(%q) = %q: not a normalized name", in, out)
		}
		again, err := NormalizeDomain(out)
		if err != nil || again != out {
			t.Errorf("NormalizeDomain(%q) = %q, but NormalizeDomain(%q) = %q, %v", in, out, out, again, err)
		}
	})
}
