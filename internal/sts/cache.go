package sts

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Cache keeps policies between runs, one JSON file per domain in Dir
// (0700; files 0600), as RFC 8461 §5.1 asks: a policy stays in force for
// its max_age even when its TXT record disappears or its HTTPS server
// cannot be reached, so an attacker who strips the record or blocks the
// fetch cannot make a later run send in plaintext. Files are replaced
// whole (a temporary file, then a rename), so concurrent runs never read
// half a policy.
type Cache struct {
	Dir string
}

type cached struct {
	Policy  Policy    `json:"policy"`
	Fetched time.Time `json:"fetched"`
}

// path is the domain's file; domain names are lower-case LDH with dots,
// never a path separator, but the name is checked rather than trusted.
func (c *Cache) path(domain string) (string, bool) {
	if domain == "" || strings.ContainsAny(domain, `/\`) || strings.HasPrefix(domain, ".") {
		return "", false
	}
	return filepath.Join(c.Dir, domain+".json"), true
}

// get returns domain's cached policy if it has not expired at now.
func (c *Cache) get(domain string, now time.Time) *Policy {
	p, ok := c.path(domain)
	if !ok {
		return nil
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil
	}
	var e cached
	if json.Unmarshal(b, &e) != nil || !now.Before(e.Fetched.Add(e.Policy.MaxAge)) {
		return nil
	}
	return &e.Policy
}

// put stores domain's policy, fetched at fetched.
func (c *Cache) put(domain string, pol *Policy, fetched time.Time) error {
	p, ok := c.path(domain)
	if !ok {
		return fmt.Errorf("MTA-STS cache: bad domain %q", domain)
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return fmt.Errorf("MTA-STS cache: %w", err)
	}
	b, err := json.Marshal(cached{Policy: *pol, Fetched: fetched.UTC()})
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(c.Dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("MTA-STS cache: %w", err)
	}
	defer os.Remove(f.Name()) // after the rename, a no-op
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("MTA-STS cache: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("MTA-STS cache: %w", err)
	}
	if err := os.Rename(f.Name(), p); err != nil {
		return fmt.Errorf("MTA-STS cache: %w", err)
	}
	return nil
}

// drop removes domain's policy (a fetched "none" policy withdraws it).
func (c *Cache) drop(domain string) {
	if p, ok := c.path(domain); ok {
		_ = os.Remove(p)
	}
}
