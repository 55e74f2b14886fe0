package main

import (
	"net"
	"strconv"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := strconv.Itoa(busy.Addr().(*net.TCPAddr).Port)
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	freeAddr := free.Addr().String()
	free.Close()

	if err := check([]string{"AI_PORT=" + freeAddr}); err != nil {
		t.Errorf("a free port: %v", err)
	}
	err = check([]string{"AI_PORT=" + freeAddr, "NATS_PORT=127.0.0.1:" + busyPort})
	if err == nil {
		t.Fatal("a taken port: no error")
	}
	for _, want := range []string{"port " + busyPort + " is in use", "NATS_PORT=" + busyPort, "make demo NATS_PORT=<another port>"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "AI_PORT") {
		t.Errorf("error %q names the free port too", err)
	}
	for _, bad := range []string{"4222", "NATS_PORT=4222", "=127.0.0.1:1"} {
		if err := check([]string{bad}); err == nil {
			t.Errorf("check(%q): no error", bad)
		}
	}
}
