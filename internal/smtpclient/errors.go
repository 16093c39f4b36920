package smtpclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"strings"
	"syscall"

	"github.com/emersion/go-smtp"
)

// Error is the one error type the rest of mailroute inspects after talking
// SMTP: it says whether trying again can help, which command failed, and the
// server's own words. Every go-smtp, TLS and network error is turned into it
// by Classify, in one place, so policy (retry, reconnect, give up) never has
// to look at error strings.
type Error struct {
	Permanent bool   // true: retrying the same thing will fail the same way
	Code      int    // SMTP reply code; 0 when the failure was not a reply
	Enhanced  string // RFC 3463 enhanced status code ("5.7.8"), if the server sent one
	Command   string // what was being done: "connect", "greeting", "EHLO", "MAIL", "RCPT", "DATA", "AUTH"…
	Message   string // the server's words, or a short description of a local failure
	Err       error  // the underlying error
}

func (e *Error) Error() string {
	if e.Code != 0 {
		msg := e.Message
		if e.Enhanced != "" {
			msg = e.Enhanced + " " + msg
		}
		return fmt.Sprintf("%s: %d %s", e.Command, e.Code, msg)
	}
	return fmt.Sprintf("%s: %s", e.Command, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Words is the failure as the server wrote it, "550 5.1.1 no such user",
// without the command; a failure that was not a reply is its description.
// Nil gives "".
func (e *Error) Words() string {
	if e == nil {
		return ""
	}
	if e.Code != 0 {
		return strings.TrimSpace(fmt.Sprintf("%d %s %s", e.Code, e.Enhanced, e.Message))
	}
	return e.Message
}

// Temporary reports whether a later attempt may succeed.
func (e *Error) Temporary() bool { return !e.Permanent }

// Reply reports whether the error is a reply from the server (as opposed to
// a local or network failure).
func (e *Error) Reply() bool { return e.Code != 0 }

// Classify turns err, returned while doing command, into an *Error. A nil err
// gives nil; an *Error passes through with its command kept.
func Classify(command string, err error) *Error {
	if err == nil {
		return nil
	}
	var me *Error
	if errors.As(err, &me) {
		return me
	}
	e := &Error{Command: command, Err: err}
	var se *smtp.SMTPError
	var pe textproto.ProtocolError
	var ne net.Error
	var de *net.DNSError
	switch {
	case errors.As(err, &de) && de.IsNotFound:
		// The host name does not exist: no retry will make it appear.
		e.Message = fmt.Sprintf("%s: no such host (the name does not exist in DNS)", de.Name)
		e.Permanent = true
	case errors.As(err, &de):
		e.Message = fmt.Sprintf("%s: DNS look-up failed: %s", de.Name, de.Err)
	case errors.As(err, &se):
		e.Code = se.Code
		e.Message = strings.ReplaceAll(se.Message, "\n", " / ")
		if se.EnhancedCode != (smtp.EnhancedCode{}) && se.EnhancedCode != smtp.NoEnhancedCode {
			e.Enhanced = fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
		}
		// RFC 5321 §4.2.1: 4yz is transient, 5yz permanent. A 5xx with a 4.x.x
		// enhanced code is still permanent: the basic code rules.
		e.Permanent = se.Code >= 500
	case errors.As(err, &pe):
		e.Message = "the server's reply is not SMTP: " + string(pe)
		e.Permanent = true
	case isCertError(err):
		e.Message = "TLS certificate not accepted: " + err.Error()
		e.Permanent = true
	case errors.Is(err, context.Canceled):
		e.Message = "cancelled"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		e.Message = "no reply before the timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		e.Message = "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		e.Message = "connection reset by the server"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		e.Message = "the server closed the connection"
	case errors.As(err, &ne) && ne.Timeout():
		e.Message = "no reply before the timeout"
	default:
		var tlsAlert tls.AlertError
		if errors.As(err, &tlsAlert) {
			e.Message = "TLS handshake failed: " + err.Error()
		} else {
			e.Message = err.Error()
		}
	}
	return e
}

func isCertError(err error) bool {
	var (
		ua  x509.UnknownAuthorityError
		he  x509.HostnameError
		ci  x509.CertificateInvalidError
		cve *tls.CertificateVerificationError
	)
	return errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci) || errors.As(err, &cve)
}
