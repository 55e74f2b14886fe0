package openai

import "testing"

func TestPermanentStatus(t *testing.T) {
	t.Parallel()
	for status, want := range map[int]bool{
		0: false, 400: true, 404: true, 413: true, 422: true,
		401: false, 403: false, 408: false, 409: false, 425: false, 429: false, 500: false, 502: false, 503: false, 504: false,
	} {
		if got := permanentStatus(status); got != want {
			t.Errorf("permanentStatus(%d) = %v, want %v", status, got, want)
		}
	}
}
