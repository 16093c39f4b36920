package send

import (
	"io"
	"strings"
)

// Duplicate rows (the same mailbox twice) are found in memory that does not
// grow with the list, so that a ten-million-row list costs what a small one
// does (design.md: "memory does not grow with list size"):
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
func findDuplicates(path string, opt ListOptions) (map[int]int, error) {
	cands := map[uint64]int{}
	filter := newBloom()
	err := eachAddr(path, opt, func(line int, h uint64) {
		if filter.testAndSet(h) {
			cands[h] = 0
		}
	})
	if err != nil || len(cands) == 0 {
		return nil, err
	}
	filter = nil
	dups := map[int]int{}
	err = eachAddr(path, opt, func(line int, h uint64) {
		first, ok := cands[h]
		switch {
		case !ok:
		case first == 0:
			cands[h] = line
		default:
			dups[line] = first
		}
	})
	return dups, err
}

// eachAddr calls fn with the line and address hash of every good row.
func eachAddr(path string, opt ListOptions, fn func(line int, h uint64)) error {
	r, err := openList(path, opt, nil)
	if err != nil {
		return err
	}
	defer r.Close()
	for {
		rc, err := r.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		fn(rc.Line, addrHash(rc.Addr))
	}
}

// addrHash is the identity of a mailbox for duplicate detection. Case is
// ignored: Bob@x and bob@x are the same mailbox nearly everywhere (RFC 5321
// §2.4 allows otherwise, nobody does it), and sending twice is the worse
// mistake. A 64-bit FNV-1a collision would drop a recipient as a false
// duplicate; at a million rows the odds are ~3e-8.
func addrHash(addr string) uint64 { return hashString(strings.ToLower(addr)) }
