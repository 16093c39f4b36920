package message

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailroute/mailroute/internal/config"
	"github.com/mailroute/mailroute/send/list"
)

// TestHasOneClick reads what send renders, long (folded) fields included.
func TestHasOneClick(t *testing.T) {
	msg := filepath.Join(t.TempDir(), "m.txt")
	if err := os.WriteFile(msg, []byte("From: a@shop.example\nSubject: s\n\nb\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	long := "https://unsubscribe.shop.example/" + strings.Repeat("path/", 20) + "?id={{.id}}"
	for _, tt := range []struct {
		u    *config.Unsubscribe
		want bool
	}{
		{nil, false},
		{&config.Unsubscribe{Mailto: "leave@shop.example"}, false},
		{&config.Unsubscribe{URL: "https://shop.example/u?id={{.id}}"}, true},
		{&config.Unsubscribe{URL: long, Mailto: "leave-with-a-long-name@unsubscribe.shop.example?subject={{.id}}"}, true},
	} {
		tmpl, err := LoadTemplate(msg, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := tmpl.SetUnsubscribe(tt.u); err != nil {
			t.Fatal(err)
		}
		r, err := tmpl.Render(&list.Recipient{Email: "x@y.example", Addr: "x@y.example", Domain: "y.example", Fields: map[string]string{"id": "1"}}, RenderOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := HasOneClick(r.Data); got != tt.want {
			t.Errorf("%+v: HasOneClick = %v, want %v\n%s", tt.u, got, tt.want, r.Data)
		}
	}
}
