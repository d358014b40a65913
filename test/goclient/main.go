// berth-goclient: a small, independent varlink client for berth's integration
// tests. Ordinary calls go through the reference Go library
// (github.com/varlink/go); upgraded calls (and flag combinations the library
// refuses) go through a minimal raw implementation on a net.Conn with our own
// bufio.Reader, so bytes that arrive together with the reply are never lost.
//
// Output: stdout, one JSON document per line (except `help`, which prints the
// raw description text). See README.md for the exit codes.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/varlink/go/varlink"
)

const (
	exitOK      = 0
	exitConnect = 1  // could not connect
	exitVarlink = 2  // the server replied with a varlink error
	exitIO      = 3  // connection lost or protocol violation after connecting
	exitUsage   = 64 // bad command line
)

var stdout = json.NewEncoder(os.Stdout)

func init() { stdout.SetEscapeHTML(false) }

func emit(v interface{}) {
	if err := stdout.Encode(v); err != nil {
		die(exitIO, "writing stdout: %v", err)
	}
}

func die(code int, format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "berth-goclient: "+format+"\n", args...)
	os.Exit(code)
}

// normalize maps absent or null parameters to {}.
func normalize(p json.RawMessage) json.RawMessage {
	if len(bytes.TrimSpace(p)) == 0 || string(bytes.TrimSpace(p)) == "null" {
		return json.RawMessage("{}")
	}
	return p
}

type reply struct {
	Parameters json.RawMessage `json:"parameters"`
	Continues  bool            `json:"continues"`
	Error      string          `json:"error"`
}

type replyLine struct {
	Parameters json.RawMessage `json:"parameters"`
	Continues  bool            `json:"continues"`
}

type errorLine struct {
	Error      string          `json:"error"`
	Parameters json.RawMessage `json:"parameters"`
}

// transport sends one call and returns a function yielding its replies.
// next() returns a non-nil error only for I/O or protocol failures; varlink
// errors come back as a reply with Error set.
type transport interface {
	call(method string, params json.RawMessage, more, oneway, upgrade bool) (next func() (reply, error), err error)
	Close() error
}

// ---- library transport ----------------------------------------------------

type libTransport struct {
	ctx context.Context
	c   *varlink.Connection
}

func (t *libTransport) Close() error { return t.c.Close() }

// varlinkError turns a library error into (name, parameters) if it is a
// varlink error reply (generic or one of the typed org.varlink.service ones).
func varlinkError(err error) (string, json.RawMessage, bool) {
	var typed interface{}
	switch e := err.(type) {
	case *varlink.Error:
		var p json.RawMessage
		switch v := e.Parameters.(type) {
		case *json.RawMessage:
			if v != nil {
				p = *v
			}
		case nil:
		default:
			p, _ = json.Marshal(v)
		}
		return e.Name, normalize(p), true
	case *varlink.InterfaceNotFound, *varlink.MethodNotFound,
		*varlink.MethodNotImplemented, *varlink.InvalidParameter:
		typed = e
	default:
		return "", nil, false
	}
	// The library re-decodes these into structs, so the parameters printed
	// are the struct's fields (missing ones appear as "").
	p, _ := json.Marshal(typed)
	return err.Error(), p, true
}

func (t *libTransport) call(method string, params json.RawMessage, more, oneway, upgrade bool) (func() (reply, error), error) {
	var flags uint64
	if more {
		flags |= varlink.More
	}
	if oneway {
		flags |= varlink.Oneway
	}
	if upgrade {
		flags |= varlink.Upgrade
	}
	var p interface{} // nil: no "parameters" key at all
	if params != nil {
		p = params
	}
	recv, err := t.c.Send(t.ctx, method, p, flags)
	if err != nil {
		return nil, err
	}
	return func() (reply, error) {
		var out json.RawMessage
		fl, err := recv(t.ctx, &out)
		if err != nil {
			if name, ep, ok := varlinkError(err); ok {
				return reply{Error: name, Parameters: ep}, nil
			}
			return reply{}, err
		}
		return reply{Parameters: out, Continues: fl&varlink.Continues != 0}, nil
	}, nil
}

// ---- raw transport --------------------------------------------------------

type rawTransport struct {
	conn net.Conn
	br   *bufio.Reader
}

func (t *rawTransport) Close() error { return t.conn.Close() }

func dialRaw(ctx context.Context, address string) (*rawTransport, error) {
	i := strings.IndexByte(address, ':')
	if i < 0 {
		return nil, fmt.Errorf("address %q: protocol missing", address)
	}
	proto, addr := address[:i], address[i+1:]
	if j := strings.IndexByte(addr, ';'); j >= 0 {
		addr = addr[:j] // parameters after ';' are ignored
	}
	if proto != "unix" && proto != "tcp" {
		return nil, fmt.Errorf("address %q: unsupported protocol %q", address, proto)
	}
	// Go's net maps a leading '@' in a unix path to the abstract namespace.
	var d net.Dialer
	conn, err := d.DialContext(ctx, proto, addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	return &rawTransport{conn: conn, br: bufio.NewReader(conn)}, nil
}

func (t *rawTransport) call(method string, params json.RawMessage, more, oneway, upgrade bool) (func() (reply, error), error) {
	msg := struct {
		Method     string          `json:"method"`
		Parameters json.RawMessage `json:"parameters,omitempty"`
		More       bool            `json:"more,omitempty"`
		Oneway     bool            `json:"oneway,omitempty"`
		Upgrade    bool            `json:"upgrade,omitempty"`
	}{method, params, more, oneway, upgrade}
	b, err := json.Marshal(msg)
	if err != nil {
		return nil, err
	}
	if _, err := t.conn.Write(append(b, 0)); err != nil {
		return nil, err
	}
	return func() (reply, error) {
		line, err := t.br.ReadBytes(0)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return reply{}, err
		}
		var r reply
		if err := json.Unmarshal(line[:len(line)-1], &r); err != nil {
			return reply{}, fmt.Errorf("bad reply %q: %v", line[:len(line)-1], err)
		}
		r.Parameters = normalize(r.Parameters)
		return r, nil
	}, nil
}

// ---- commands -------------------------------------------------------------

// runCall sends one call, prints every reply, and returns the last reply and
// the exit status (exitOK or exitVarlink). I/O failures exit directly.
func runCall(t transport, method string, params json.RawMessage, more, oneway, upgrade bool) (reply, int) {
	next, err := t.call(method, params, more, oneway, upgrade)
	if err != nil {
		die(exitIO, "sending %s: %v", method, err)
	}
	if oneway {
		return reply{}, exitOK
	}
	for {
		r, err := next()
		if err != nil {
			die(exitIO, "receiving reply to %s: %v", method, err)
		}
		if r.Error != "" {
			emit(errorLine{r.Error, normalize(r.Parameters)})
			return r, exitVarlink
		}
		emit(replyLine{normalize(r.Parameters), r.Continues})
		if !r.Continues {
			return r, exitOK
		}
		if !more {
			die(exitIO, "protocol violation: reply to %s has continues but the call had no more", method)
		}
	}
}

func parseParams(s string, what string) json.RawMessage {
	if s == "" {
		return nil
	}
	if !json.Valid([]byte(s)) {
		die(exitUsage, "%s: invalid JSON: %s", what, s)
	}
	return json.RawMessage(s)
}

func rawPhase(t *rawTransport, r reply, sendFile, lenField, recvOut string) {
	if sendFile != "" {
		f, err := os.Open(sendFile)
		if err != nil {
			die(exitUsage, "%v", err)
		}
		if _, err := io.Copy(t.conn, f); err != nil {
			die(exitIO, "sending %s: %v", sendFile, err)
		}
		f.Close()
		ack, err := t.br.ReadString(':')
		if err != nil {
			die(exitIO, "reading acknowledgement (got %q): %v", ack, err)
		}
		emit(struct {
			Ack string `json:"ack"`
		}{ack})
	}
	if lenField != "" {
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(r.Parameters, &fields); err != nil {
			die(exitIO, "reply parameters are not an object: %v", err)
		}
		raw, ok := fields[lenField]
		if !ok {
			die(exitIO, "reply has no field %q", lenField)
		}
		var n int64
		if err := json.Unmarshal(raw, &n); err != nil || n < 0 {
			die(exitIO, "reply field %q is not a non-negative integer: %s", lenField, raw)
		}
		var w io.Writer = io.Discard
		if recvOut != "" {
			f, err := os.Create(recvOut)
			if err != nil {
				die(exitUsage, "%v", err)
			}
			defer f.Close()
			w = f
		}
		got, err := io.CopyN(w, t.br, n)
		if err != nil {
			die(exitIO, "received %d of %d raw bytes: %v", got, n, err)
		}
		emit(struct {
			Received int64 `json:"received"`
		}{got})
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  berth-goclient [-timeout D] -address ADDR info
  berth-goclient [-timeout D] -address ADDR help INTERFACE
  berth-goclient [-timeout D] -address ADDR call [-more] [-oneway] [-upgrade] [-raw]
      [-send-file PATH | -recv-len-field NAME [-recv-out PATH]]
      [-then METHOD [-then-params JSON]] METHOD [JSON]
ADDR: unix:/path | unix:@abstract | tcp:HOST:PORT  (anything after ';' is ignored)
`)
	os.Exit(exitUsage)
}

func main() {
	address := flag.String("address", "", "varlink address")
	timeout := flag.Duration("timeout", 0, "overall timeout (0 = none)")
	flag.Usage = usage
	flag.Parse()
	if *address == "" || flag.NArg() < 1 {
		usage()
	}
	ctx := context.Background()
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	args := flag.Args()

	dialLib := func() *varlink.Connection {
		c, err := varlink.NewConnection(ctx, *address)
		if err != nil {
			die(exitConnect, "connecting to %s: %v", *address, err)
		}
		return c
	}

	switch args[0] {
	case "info":
		if len(args) != 1 {
			usage()
		}
		c := dialLib()
		defer c.Close()
		var info struct {
			Vendor     string   `json:"vendor"`
			Product    string   `json:"product"`
			Version    string   `json:"version"`
			URL        string   `json:"url"`
			Interfaces []string `json:"interfaces"`
		}
		err := c.GetInfo(ctx, &info.Vendor, &info.Product, &info.Version, &info.URL, &info.Interfaces)
		if err != nil {
			if name, p, ok := varlinkError(err); ok {
				emit(errorLine{name, p})
				os.Exit(exitVarlink)
			}
			die(exitIO, "GetInfo: %v", err)
		}
		emit(info)

	case "help":
		if len(args) != 2 {
			usage()
		}
		c := dialLib()
		defer c.Close()
		desc, err := c.GetInterfaceDescription(ctx, args[1])
		if err != nil {
			if name, p, ok := varlinkError(err); ok {
				emit(errorLine{name, p})
				os.Exit(exitVarlink)
			}
			die(exitIO, "GetInterfaceDescription: %v", err)
		}
		if !strings.HasSuffix(desc, "\n") {
			desc += "\n"
		}
		fmt.Print(desc)

	case "call":
		fs := flag.NewFlagSet("call", flag.ExitOnError)
		fs.Usage = usage
		more := fs.Bool("more", false, "set more; print replies until one without continues")
		oneway := fs.Bool("oneway", false, "set oneway; print nothing")
		upgrade := fs.Bool("upgrade", false, "set upgrade (uses the raw implementation)")
		raw := fs.Bool("raw", false, "use the raw implementation instead of the library")
		sendFile := fs.String("send-file", "", "after the reply, send this file raw and read the ack up to ':'")
		lenField := fs.String("recv-len-field", "", "after the reply, read as many raw bytes as this reply field says")
		recvOut := fs.String("recv-out", "", "file to write the raw bytes read for -recv-len-field to")
		then := fs.String("then", "", "afterwards, call this method on the same connection")
		thenParams := fs.String("then-params", "", "JSON parameters for -then")
		fs.Parse(args[1:])
		if fs.NArg() < 1 || fs.NArg() > 2 {
			usage()
		}
		method := fs.Arg(0)
		params := parseParams(fs.Arg(1), "parameters")
		tparams := parseParams(*thenParams, "-then-params")
		if (*sendFile != "" || *lenField != "") && !*upgrade {
			die(exitUsage, "-send-file and -recv-len-field need -upgrade")
		}
		if *sendFile != "" && *lenField != "" {
			die(exitUsage, "use only one of -send-file and -recv-len-field")
		}
		if *recvOut != "" && *lenField == "" {
			die(exitUsage, "-recv-out needs -recv-len-field")
		}
		if *thenParams != "" && *then == "" {
			die(exitUsage, "-then-params needs -then")
		}

		// The library refuses more+oneway and more+upgrade, and its raw Read
		// after an upgrade bypasses its buffer: use the raw transport there.
		var t transport
		var rt *rawTransport
		if *raw || *upgrade || (*more && *oneway) {
			var err error
			rt, err = dialRaw(ctx, *address)
			if err != nil {
				die(exitConnect, "connecting to %s: %v", *address, err)
			}
			t = rt
		} else {
			t = &libTransport{ctx, dialLib()}
		}
		defer t.Close()

		r, status := runCall(t, method, params, *more, *oneway, *upgrade)
		if status == exitOK && !*oneway && *upgrade {
			rawPhase(rt, r, *sendFile, *lenField, *recvOut)
		}
		if *then != "" {
			if _, st := runCall(t, *then, tparams, false, false, false); st != exitOK {
				status = st
			}
		}
		t.Close()
		os.Exit(status)

	default:
		usage()
	}
}
