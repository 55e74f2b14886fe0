//go:build !goexperiment.jsonv2

package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// unmarshalStrict decodes body into v as encoding/json does, refusing
// unknown object members and trailing data.
func unmarshalStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("more than one JSON value")
	}
	return nil
}
