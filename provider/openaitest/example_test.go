package openaitest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/aibatch/aibatch/provider/openaitest"
)

// A plain chat completion request (no response_format) is answered as one
// request with Answer(input) as its text content.
func ExampleServer() {
	srv := openaitest.NewServer()
	defer srv.Close()

	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/chat/completions",
		strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}`))
	req.Header.Set("Authorization", "Bearer sk-test")
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer res.Body.Close()

	var answer struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
	}
	if err := json.NewDecoder(res.Body).Decode(&answer); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.StatusCode, answer.Choices[0].Message.Content, answer.Choices[0].FinishReason)
	fmt.Println("calls:", srv.Calls())
	// Output:
	// 200 processed: hello stop
	// calls: 1
}
