package replies

import (
	"strings"
	"testing"
)

func BenchmarkClassifyLong(b *testing.B) {
	text := strings.Repeat("user x account y ", 1000)
	for b.Loop() {
		Classify(Reply{550, "", text, "RCPT"})
	}
}

func BenchmarkClassifyTypical(b *testing.B) {
	for b.Loop() {
		Classify(Reply{550, "5.7.1", "Service unavailable; Client host [192.0.2.1] blocked using bl.spamcop.net", "RCPT"})
	}
}
