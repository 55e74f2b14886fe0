package gateway

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
)

// Keys maps API keys to topics. It never shows a key: not in errors, not
// in String. Create it with ParseKeys; a nil *Keys holds no keys.
type Keys struct {
	entries []keyEntry
}

type keyEntry struct {
	digest [sha256.Size]byte
	topic  string
}

// ErrBadKeys is wrapped by the errors ParseKeys returns.
var ErrBadKeys = errors.New("gateway: bad keys")

// ParseKeys reads key=topic entries: from GATEWAY_KEYS separated by commas
// (sep ','), or from a GATEWAY_KEYS_FILE one per line (sep '\n', where
// blank lines and lines starting with # are skipped). A key is any text
// without blanks, commas or '='; a topic is dot-separated tokens of
// letters, digits, - and _ (the part after ai.requests.). Several keys may
// share a topic (to rotate a key). source names the setting in errors,
// which point at an entry by its number, never by its key.
func ParseKeys(text string, sep rune, source string) (*Keys, error) {
	k := &Keys{}
	seen := map[[sha256.Size]byte]int{}
	var lines []string
	if sep == '\n' {
		sc := bufio.NewScanner(strings.NewReader(text))
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrBadKeys, source, err)
		}
	} else {
		lines = strings.Split(text, string(sep))
	}
	n := 0
	for i, line := range lines {
		line = strings.TrimSpace(line)
		if line == "" || (sep == '\n' && strings.HasPrefix(line, "#")) {
			continue
		}
		n++
		where := fmt.Sprintf("entry %d", n)
		if sep == '\n' {
			where = fmt.Sprintf("line %d", i+1)
		}
		key, topic, ok := strings.Cut(line, "=")
		key, topic = strings.TrimSpace(key), strings.TrimSpace(topic)
		switch {
		case !ok || key == "" || topic == "":
			return nil, fmt.Errorf("%w: %s: %s is not key=topic", ErrBadKeys, source, where)
		case strings.ContainsAny(key, " \t,="):
			return nil, fmt.Errorf("%w: %s: %s: a key may not hold blanks, commas or '='", ErrBadKeys, source, where)
		case !validTopic(topic):
			return nil, fmt.Errorf("%w: %s: %s: topic %q: want dot-separated tokens of letters, digits, - and _, such as billing or billing.eu", ErrBadKeys, source, where, topic)
		}
		d := sha256.Sum256([]byte(key))
		if first, dup := seen[d]; dup {
			return nil, fmt.Errorf("%w: %s: %s repeats the key of entry %d", ErrBadKeys, source, where, first)
		}
		seen[d] = n
		k.entries = append(k.entries, keyEntry{digest: d, topic: topic})
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: %s holds no key=topic entry", ErrBadKeys, source)
	}
	return k, nil
}

// Len is the number of keys.
func (k *Keys) Len() int {
	if k == nil {
		return 0
	}
	return len(k.entries)
}

// Topic returns the topic of key, and false when key is not one of the
// keys. It compares digests in constant time against every key, so the
// time it takes does not tell how much of a key was right, nor which.
func (k *Keys) Topic(key string) (string, bool) {
	if k == nil {
		return "", false
	}
	d := sha256.Sum256([]byte(key))
	topic, found := "", 0
	for _, e := range k.entries {
		match := subtle.ConstantTimeCompare(d[:], e.digest[:])
		if match == 1 {
			topic = e.topic
		}
		found |= match
	}
	return topic, found == 1
}

// String shows how many keys there are, never a key.
func (k *Keys) String() string { return fmt.Sprintf("%d keys", k.Len()) }

// GoString is String, so %#v shows no key either.
func (k *Keys) GoString() string { return k.String() }
