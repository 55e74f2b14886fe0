//go:build goexperiment.jsonv2

package wire

import (
	jsonv1 "encoding/json"
	"encoding/json/v2"
)

// unmarshalStrict decodes body into v as encoding/json does, refusing
// unknown object members and trailing data. With the JSON v2 experiment
// it is one Unmarshal with v1's options plus RejectUnknownMembers: a
// json.Decoder with DisallowUnknownFields cost twice the time and four
// times the allocations of decoding a request.
func unmarshalStrict(body []byte, v any) error {
	return json.Unmarshal(body, v, jsonv1.DefaultOptionsV1(), json.RejectUnknownMembers(true))
}
