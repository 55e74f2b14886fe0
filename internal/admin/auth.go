package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// requireToken lets a request through when no token is configured or it
// carries "Authorization: Bearer <token>"; it answers 401 otherwise. The
// comparison takes the same time whatever the presented token is.
func (s *Server) requireToken(next http.Handler) http.Handler {
	if s.cfg.Token == "" {
		return next
	}
	// Comparing digests keeps the time independent of the tokens' lengths.
	want := sha256.Sum256([]byte(s.cfg.Token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, presented, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		got := sha256.Sum256([]byte(strings.TrimSpace(presented)))
		if !ok || !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="aibatch admin"`)
			writeJSON(w, http.StatusUnauthorized, errorBody{Error: "unauthorized: send Authorization: Bearer <ADMIN_TOKEN>"})
			return
		}
		next.ServeHTTP(w, r)
	})
}
