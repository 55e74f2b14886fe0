package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"math"
	"slices"
)

// fields is a JSON object's members by name, in the order a caller's
// mistakes are reported: sorted, so the same body always names the same
// field first.
type fields map[string]json.RawMessage

// decodeObject reads body as one JSON object.
func decodeObject(body []byte) (fields, *apiError) {
	var f fields
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&f); err != nil || f == nil {
		return nil, badRequest("", codeInvalidJSON, "We could not parse the JSON body of your request: want a JSON object (%v).", errOrNull(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, badRequest("", codeInvalidJSON, "We could not parse the JSON body of your request: more than one JSON value.")
	}
	return f, nil
}

func errOrNull(err error) error {
	if err == nil {
		return errors.New("got null")
	}
	return err
}

// names returns the member names, sorted.
func (f fields) names() []string { return slices.Sorted(maps.Keys(f)) }

// isNull reports whether raw is absent or JSON null: an SDK that sends
// "stop": null means no stop sequences.
func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || bytes.Equal(raw, []byte("null"))
}

// decodeField decodes raw into v, strictly: a struct refuses unknown
// members. The error names param.
func decodeField(param string, raw json.RawMessage, v any, want string) *apiError {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest(param, codeInvalidValue, "Invalid value for %s: want %s (%v).", param, want, err)
	}
	return nil
}

// wholeNumber decodes raw as a whole number of at least min.
func wholeNumber(param string, raw json.RawMessage, min int64) (int64, *apiError) {
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil || f != math.Trunc(f) || f < float64(min) || f > math.MaxInt32 {
		return 0, badRequest(param, codeInvalidValue, "Invalid value for %s: want a whole number of at least %d, got %s.", param, min, raw)
	}
	return int64(f), nil
}

// number decodes raw as a number.
func number(param string, raw json.RawMessage) (float64, *apiError) {
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil {
		return 0, badRequest(param, codeInvalidValue, "Invalid value for %s: want a number, got %s.", param, raw)
	}
	return f, nil
}

// isDefault reports whether raw is the value OpenAI takes when the field
// is absent, such as "frequency_penalty": 0 or "store": false: frameworks
// that send every field with its default must not lose batching for it.
func isDefault(raw json.RawMessage, defaults ...string) bool {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return false
	}
	canon, _ := json.Marshal(v)
	for _, d := range defaults {
		if string(canon) == d {
			return true
		}
	}
	return false
}
