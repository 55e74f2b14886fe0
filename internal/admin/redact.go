package admin

import (
	"net/url"
	"strings"
)

// Redacted replaces a secret value in served settings.
const Redacted = "[redacted]"

// secretWords mark a setting's name as holding a secret.
var secretWords = []string{"KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL"}

// IsSecret reports whether a setting named name holds a secret
// (OPENAI_API_KEY, ADMIN_TOKEN, ...).
func IsSecret(name string) bool {
	upper := strings.ToUpper(name)
	for _, w := range secretWords {
		if strings.Contains(upper, w) {
			return true
		}
	}
	return false
}

// minScrubbed is the shortest secret cut out of other settings; shorter
// ones would mangle ordinary text.
const minScrubbed = 6

// Redact returns a copy of settings safe to show: a secret's value becomes
// Redacted (an empty one stays empty, showing it is unset), credentials in
// URLs (user:password@) are replaced, and a secret's value (of 6 characters
// or more) is cut out of every other setting too.
func Redact(settings map[string]string) map[string]string {
	out := make(map[string]string, len(settings))
	var secrets []string
	for name, v := range settings {
		if IsSecret(name) && v != "" {
			out[name] = Redacted
			if len(v) >= minScrubbed {
				secrets = append(secrets, v)
			}
			continue
		}
		out[name] = redactURLs(v)
	}
	for name, v := range out {
		if v == Redacted {
			continue
		}
		for _, sec := range secrets {
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
