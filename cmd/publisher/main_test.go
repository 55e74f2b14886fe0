package main

import (
	"strings"
	"testing"
)

func TestUsage(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{name: "help", args: []string{"--help"}, wantCode: exitOK, wantStdout: "Commands:\n  send"},
		{name: "-h", args: []string{"-h"}, wantCode: exitOK, wantStdout: "Usage: publisher <command>"},
		{name: "help send", args: []string{"help", "send"}, wantCode: exitOK, wantStdout: "-synthetic N"},
		{name: "send help", args: []string{"send", "--help"}, wantCode: exitOK, wantStdout: "Usage: publisher send"},
		{name: "no args", args: nil, wantCode: exitUsage, wantStderr: "Usage: publisher <command>"},
		{name: "unknown command", args: []string{"fly"}, wantCode: exitUsage, wantStderr: `unknown command "fly"`},
		{name: "flag before command", args: []string{"--json", "send"}, wantCode: exitUsage, wantStderr: "unknown flag --json"},
		{name: "no input", args: []string{"send"}, wantCode: exitUsage, wantStderr: "one of --file or --synthetic is required"},
		{name: "both inputs", args: []string{"send", "--file", "x", "--synthetic", "3"}, wantCode: exitUsage, wantStderr: "cannot be used together"},
		{name: "negative synthetic", args: []string{"send", "--synthetic", "-3"}, wantCode: exitUsage, wantStderr: "--synthetic is -3"},
		{name: "bad flag", args: []string{"send", "--bogus"}, wantCode: exitUsage, wantStderr: "flag provided but not defined: -bogus"},
		{name: "bad value", args: []string{"send", "--synthetic", "many"}, wantCode: exitUsage, wantStderr: `invalid value "many" for flag -synthetic`},
		{name: "extra argument", args: []string{"send", "--synthetic", "3", "more"}, wantCode: exitUsage, wantStderr: `unexpected argument "more"`},
		{name: "negative rate", args: []string{"send", "--synthetic", "3", "--rate", "-1"}, wantCode: exitUsage, wantStderr: "--rate is -1"},
		{name: "zero pending", args: []string{"send", "--synthetic", "3", "--max-pending", "0"}, wantCode: exitUsage, wantStderr: "--max-pending is 0"},
		{name: "zero timeout", args: []string{"send", "--synthetic", "3", "--timeout", "0s"}, wantCode: exitUsage, wantStderr: "--timeout is 0s"},
		{name: "zero ready timeout", args: []string{"send", "--synthetic", "3", "--ready-timeout", "0s"}, wantCode: exitUsage, wantStderr: "--ready-timeout is 0s"},
		{name: "wildcard subject", args: []string{"send", "--synthetic", "3", "--subject", "ai.requests.*"}, wantCode: exitUsage, wantStderr: `--subject "ai.requests.*"`},
		{name: "subject without reply-to", args: []string{"send", "--synthetic", "3", "--subject", "jobs.demo"}, wantCode: exitUsage, wantStderr: "--reply-to is required"},
		{name: "reply-to with wait", args: []string{"send", "--synthetic", "3", "--wait", "--reply-to", "x.y"}, wantCode: exitUsage, wantStderr: "--reply-to cannot be used with --wait"},
		{name: "stats without wait", args: []string{"send", "--synthetic", "3", "--provider-stats", "http://x/stats"}, wantCode: exitUsage, wantStderr: "--provider-stats needs --wait"},
		{name: "stats not a URL", args: []string{"send", "--synthetic", "3", "--wait", "--provider-stats", "stats"}, wantCode: exitUsage, wantStderr: "not an http(s) URL"},
		{name: "bad stream", args: []string{"send", "--synthetic", "3", "--stream", "AI.REQ"}, wantCode: exitUsage, wantStderr: `--stream "AI.REQ"`},
		{name: "missing file", args: []string{"send", "--file", "/nonexistent/requests.jsonl"}, wantCode: exitUsage, wantStderr: "open requests"},
		{name: "help lists every command", args: []string{"--help"}, wantCode: exitOK, wantStdout: "  results     print results"},
		{name: "help lists cache-purge", args: []string{"--help"}, wantCode: exitOK, wantStdout: "  cache-purge empty the workers' response cache"},
		{name: "help replay", args: []string{"help", "replay"}, wantCode: exitOK, wantStdout: "Usage: publisher replay (--all | --id ID... | --error TEXT)"},
		{name: "results help", args: []string{"results", "--help"}, wantCode: exitOK, wantStdout: "-from-start"},
		{name: "dead help", args: []string{"dead", "-h"}, wantCode: exitOK, wantStdout: "Usage: publisher dead"},
		{name: "stats-url without wait", args: []string{"send", "--synthetic", "3", "--stats-url", "http://x/admin/batch-stats"}, wantCode: exitUsage, wantStderr: "--stats-url needs --wait"},
		{name: "stats-url not a URL", args: []string{"send", "--synthetic", "3", "--wait", "--stats-url", "x"}, wantCode: exitUsage, wantStderr: `--stats-url "x" is not an http(s) URL`},
		{name: "results nothing to print", args: []string{"results", "--follow=false"}, wantCode: exitUsage, wantStderr: "--follow=false needs --from-start or --id"},
		{name: "results bad filter", args: []string{"results", "--subject", "ai.>.x"}, wantCode: exitUsage, wantStderr: `--subject "ai.>.x" is not a valid subject filter`},
		{name: "results empty id", args: []string{"results", "--id", "a,,b"}, wantCode: exitUsage, wantStderr: "empty id"},
		{name: "results negative timeout", args: []string{"results", "--timeout", "-1s"}, wantCode: exitUsage, wantStderr: "--timeout is -1s"},
		{name: "results no server", args: []string{"results", "--server", "nats://127.0.0.1:1", "--ready-timeout", "200ms"}, wantCode: exitUsage, wantStderr: "connect to nats://127.0.0.1:1"},
		{name: "dead extra argument", args: []string{"dead", "all"}, wantCode: exitUsage, wantStderr: `unexpected argument "all"`},
		{name: "dead bad stream", args: []string{"dead", "--stream", "A.B"}, wantCode: exitUsage, wantStderr: `--stream "A.B"`},
		{name: "replay nothing selected", args: []string{"replay"}, wantCode: exitUsage, wantStderr: "say which dead letters to replay"},
		{name: "replay all and id", args: []string{"replay", "--all", "--id", "x"}, wantCode: exitUsage, wantStderr: "--all cannot be used with --id or --error"},
		{name: "replay zero timeout", args: []string{"replay", "--all", "--timeout", "0s"}, wantCode: exitUsage, wantStderr: "--timeout is 0s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runCLI(t, tc.args...)
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d", code, tc.wantCode)
			}
			if !strings.Contains(stdout, tc.wantStdout) {
				t.Errorf("stdout lacks %q:\n%s", tc.wantStdout, stdout)
			}
			if !strings.Contains(stderr, tc.wantStderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.wantStderr, stderr)
			}
			if tc.wantCode == exitOK && stderr != "" {
				t.Errorf("stderr not empty:\n%s", stderr)
			}
		})
	}
}
