package smtpclient

import (
	"crypto/hmac"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/emersion/go-sasl"
)

// SASLClient is the client for one mechanism (case-insensitive): PLAIN
// (go-sasl), and LOGIN, CRAM-MD5 and XOAUTH2, which go-sasl lacks or does
// too strictly. The probe's login check and the sender use the same ones,
// so a login the check accepted works when sending.
func SASLClient(mech, user, secret string) (sasl.Client, error) {
	switch strings.ToUpper(mech) {
	case "PLAIN":
		return sasl.NewPlainClient("", user, secret), nil
	case "LOGIN":
		return &loginClient{user: user, secret: secret}, nil
	case "CRAM-MD5":
		return &cramMD5Client{user: user, secret: secret}, nil
	case "XOAUTH2":
		return &xoauth2Client{user: user, token: secret}, nil
	}
	return nil, fmt.Errorf("AUTH %s is not supported (plain, login, cram-md5, xoauth2)", mech)
}

// loginClient is the LOGIN mechanism (draft-murchison-sasl-login): user
// name, then password, each as the answer to a challenge. go-sasl's client
// sends the user name as an initial response and accepts only the exact
// challenge "Password:"; servers differ in both, so this one sends no
// initial response and answers by the challenge's words, or by turn.
type loginClient struct {
	user, secret string
	step         int
}

func (c *loginClient) Start() (string, []byte, error) { return "LOGIN", nil, nil }

func (c *loginClient) Next(challenge []byte) ([]byte, error) {
	c.step++
	ch := strings.ToLower(string(challenge))
	switch {
	case strings.Contains(ch, "user"):
		return []byte(c.user), nil
	case strings.Contains(ch, "pass"):
		return []byte(c.secret), nil
	case c.step == 1:
		return []byte(c.user), nil
	case c.step == 2:
		return []byte(c.secret), nil
	}
	return nil, sasl.ErrUnexpectedServerChallenge
}

// cramMD5Client is CRAM-MD5 (RFC 2195 §2): the answer to the server's
// challenge is the user name, a space, and the hex HMAC-MD5 of the
// challenge keyed with the password. go-sasl has no client for it.
type cramMD5Client struct {
	user, secret string
	done         bool
}

func (c *cramMD5Client) Start() (string, []byte, error) { return "CRAM-MD5", nil, nil }

func (c *cramMD5Client) Next(challenge []byte) ([]byte, error) {
	if c.done {
		return nil, sasl.ErrUnexpectedServerChallenge
	}
	c.done = true
	mac := hmac.New(md5.New, []byte(c.secret))
	mac.Write(challenge)
	return []byte(c.user + " " + hex.EncodeToString(mac.Sum(nil))), nil
}

// xoauth2Client is Google's and Microsoft's XOAUTH2: one initial response
// "user=U^Aauth=Bearer T^A^A". A failure comes as a 334 with a JSON
// status, to which the client answers with an empty line to get the final
// 5xx (https://developers.google.com/gmail/imap/xoauth2-protocol).
type xoauth2Client struct {
	user, token string
}

func (c *xoauth2Client) Start() (string, []byte, error) {
	return "XOAUTH2", []byte("user=" + c.user + "\x01auth=Bearer " + c.token + "\x01\x01"), nil
}

func (c *xoauth2Client) Next([]byte) ([]byte, error) { return []byte{}, nil }
