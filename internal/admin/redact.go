package admin

import (
	"net/url"
	"strings"
)

// Redacted replaces a secret value in served settings.
const Redacted = "[redacted]"

// minScrubbed is the shortest secret cut out of other settings; shorter
// ones would mangle ordinary text.
const minScrubbed = 6

// Redact returns a copy of settings safe to show. The settings named in
// secrets, and only those, hold secrets: their values become Redacted (an
// empty one stays empty, showing it is unset). Credentials in URLs
// (user:password@) are replaced, and a secret's value (of 6 characters or
// more) is cut out of every other setting too. Names are not guessed at:
// MAX_BATCH_TOKENS counts tokens, it is no token.
func Redact(settings map[string]string, secrets []string) map[string]string {
	out := make(map[string]string, len(settings))
	secret := make(map[string]bool, len(secrets))
	for _, name := range secrets {
		secret[name] = true
	}
	var values []string
	for name, v := range settings {
		if secret[name] && v != "" {
			out[name] = Redacted
			if len(v) >= minScrubbed {
				values = append(values, v)
			}
			continue
		}
		out[name] = redactURLs(v)
	}
	for name, v := range out {
		if v == Redacted {
			continue
		}
		for _, sec := range values {
			v = strings.ReplaceAll(v, sec, Redacted)
		}
		out[name] = v
	}
	return out
}

// redactURLs replaces the user information of each URL in a comma-separated
// list, as NATS_URL may hold.
func redactURLs(v string) string {
	if !strings.Contains(v, "@") {
		return v
	}
	parts := strings.Split(v, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil || u.User == nil {
			if strings.Contains(p, "@") && strings.Contains(p, "://") {
				parts[i] = Redacted // unparsable, but looks like it carries credentials
			}
			continue
		}
		u.User = url.User("REDACTED")
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}
