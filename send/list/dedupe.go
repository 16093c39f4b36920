package list

import (
	"strings"
)

// Duplicate rows (the same mailbox twice) are found in memory that does not
// grow with the list, so that a ten-million-row list costs what a small one
// does (README "Design: architecture": memory does not grow with the list):
//
//  1. a first pass puts every address's 64-bit hash in a fixed-size Bloom
//     filter; a hash the filter says it has seen becomes a candidate;
//  2. if there are candidates, a second pass finds each candidate's first
//     line and marks its later lines as duplicates.
//
// Memory is the filter (bloomBits/8 = 8 MiB) plus the candidates (true
// duplicates and a few false positives: about 2 per million rows, growing
// only past several million) plus the duplicate lines themselves.

// bloomBits and bloomHashes: 2^26 bits and 5 hash functions keep false
// positives near 2e-6 per row at a million rows and 3e-3 at five million.
const (
	bloomBits   = 1 << 26
	bloomHashes = 5
)

type bloom []uint64

func newBloom() bloom { return make(bloom, bloomBits/64) }

// testAndSet reports whether h may have been added before, and adds it.
// The k bit positions come from one 64-bit hash by double hashing
// (Kirsch and Mitzenmacher, "Less hashing, same performance", 2006).
func (b bloom) testAndSet(h uint64) bool {
	h1, h2 := h, (h>>32|h<<32)|1
	seen := true
	for i := range uint64(bloomHashes) {
		bit := (h1 + i*h2) % bloomBits
		w, m := bit/64, uint64(1)<<(bit%64)
		if b[w]&m == 0 {
			seen = false
			b[w] |= m
		}
	}
	return seen
}

// findDuplicates returns, for every good row whose address appeared on an
// earlier good row, its line → the first line. Bad rows are not counted.
func findDuplicates(path string, opt Options) (map[int]int, error) {
	var seen dupFilter
	err := eachGood(path, opt, func(rc *Recipient) { seen.add(rc) })
	if err != nil {
		return nil, err
	}
	return seen.duplicates(path, opt, nil)
}

// dupFilter is the first pass: the Bloom filter and the candidates it
// finds. Its zero value is ready.
type dupFilter struct {
	filter bloom
	cands  map[uint64]int // a candidate's hash → its first line (0 until the exact pass finds it)
}

func (d *dupFilter) add(rc *Recipient) {
	if d.filter == nil {
		d.filter, d.cands = newBloom(), map[uint64]int{}
	}
	if h := addrHash(rc.Addr); d.filter.testAndSet(h) {
		d.cands[h] = 0
	}
}

// duplicates is the second pass, when the first found candidates. It
// calls found, if not nil, for each duplicate row in line order.
func (d *dupFilter) duplicates(path string, opt Options, found func(line, first int, addr string)) (map[int]int, error) {
	d.filter = nil // 8 MiB the second pass does not need
	if len(d.cands) == 0 {
		return nil, nil
	}
	dups := map[int]int{}
	err := eachGood(path, opt, func(rc *Recipient) {
		h := addrHash(rc.Addr)
		first, ok := d.cands[h]
		switch {
		case !ok:
		case first == 0:
			d.cands[h] = rc.Line
		default:
			dups[rc.Line] = first
			if found != nil {
				found(rc.Line, first, rc.Addr)
			}
		}
	})
	return dups, err
}

// eachGood calls fn with every good row (duplicates not yet known), without
// its fields: the passes before sending need only the address.
func eachGood(path string, opt Options, fn func(*Recipient)) error {
	return eachGoodAndBad(path, opt, fn, nil)
}

// addrHash is the identity of a mailbox for duplicate detection. Case is
// ignored: Bob@x and bob@x are the same mailbox nearly everywhere (RFC 5321
// §2.4 allows otherwise, nobody does it), and sending twice is the worse
// mistake. A 64-bit FNV-1a collision would drop a recipient as a false
// duplicate; at a million rows the odds are ~3e-8.
func addrHash(addr string) uint64 { return hashString(strings.ToLower(addr)) }
