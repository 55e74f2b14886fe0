package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestREADMEGoSnippet checks that README.md's Go snippet under "Use it from
// any OpenAI SDK" is the code Example_openaiSDK runs, with the demo's base
// URL where the example has the test gateway's (spacing aside: gofmt aligns
// the comments to different columns).
func TestREADMEGoSnippet(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Use it from any OpenAI SDK\n")
	if !ok {
		t.Fatal("README.md has no section ## Use it from any OpenAI SDK")
	}
	_, block, ok := strings.Cut(section, "```go\n")
	if !ok {
		t.Fatal("README.md: no ```go block in the section")
	}
	block, _, _ = strings.Cut(block, "```")

	src, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	_, body, ok := strings.Cut(string(src), "\t// README: begin\n")
	if !ok {
		t.Fatal("example_test.go has no // README: begin marker")
	}
	body, _, ok = strings.Cut(body, "\t// README: end\n")
	if !ok {
		t.Fatal("example_test.go has no // README: end marker")
	}
	var lines []string
	for _, l := range strings.Split(body, "\n") {
		lines = append(lines, strings.TrimPrefix(l, "\t"))
	}
	want := strings.ReplaceAll(strings.Join(lines, "\n"), "gatewayURL", `"http://127.0.0.1:8090/v1"`)
	spaces := regexp.MustCompile(`[ \t]+`)
	if norm := func(s string) string { return strings.TrimSpace(spaces.ReplaceAllString(s, " ")) }; norm(block) != norm(want) {
		t.Errorf("README.md's Go snippet:\n%s\nis not the code Example_openaiSDK runs:\n%s", block, want)
	}
}
