// Command portcheck fails at once, naming the port, when an address `make
// demo` is about to listen on is taken, instead of letting the demo fail
// late (the worker's embedded NATS server gives up after its ready
// timeout) or, worse, publish into another server's AI_REQUESTS stream.
//
//	go run ./internal/cmd/portcheck NATS_PORT=127.0.0.1:4222 AI_PORT=127.0.0.1:8089
//
// Each argument is the make variable that sets the port and the address.
// It binds each address for a moment (loopback only; no network), so it
// finds a port taken by any process, on any of the host's addresses that
// overlap it.
package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
)

func main() {
	if err := check(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "make demo:", err)
		os.Exit(1)
	}
}

// check returns an error naming every argument whose address cannot be
// bound now, or a malformed argument.
func check(args []string) error {
	var errs []error
	for _, arg := range args {
		name, addr, ok := strings.Cut(arg, "=")
		if !ok || name == "" {
			return fmt.Errorf("argument %q: want VARIABLE=host:port", arg)
		}
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			return fmt.Errorf("%s: %q is not host:port: %w", name, addr, err)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			errs = append(errs, fmt.Errorf("port %s is in use (%s=%s; %v): stop what listens there, or move the demo with make demo %s=<another port>", port, name, port, err, name))
			continue
		}
		if err := ln.Close(); err != nil {
			return err
		}
	}
	return errors.Join(errs...)
}
