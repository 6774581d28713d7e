package reconciler

import (
	"encoding/base64"
	"encoding/json"
	"maps"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// foldStringData writes a core Secret's stringData into its data, as the
// API server does when it stores the Secret (a key in both takes the
// stringData value), and drops stringData.
//
// stringData is write-only: the server folds it into data only after
// server-side apply has worked out field ownership, so an apply of
// stringData owns stringData.KEY, never data.KEY. It would overwrite a
// value another field manager owns in data without a conflict, and trueup
// would not own the value it wrote, so a change of it by someone else would
// move none of trueup's fields and go unnoticed as drift. Applied as data,
// a Secret's values conflict, diff and drift as any other field does
// (kubernetes/kubernetes#108008; Flux's apply engine folds them too). As
// base64, a value also carries characters such as DEL that the YAML parser
// of an apply request refuses raw.
//
// A Secret the server would refuse (a value that is not a string, a data
// value it replaces that is not base64, stringData or data not a map) is
// left as rendered, for the server to say what is wrong with it.
func foldStringData(obj *unstructured.Unstructured) {
	if obj.GetAPIVersion() != "v1" || obj.GetKind() != "Secret" {
		return
	}
	raw, present := obj.Object["stringData"]
	if !present {
		return
	}
	strs, ok := raw.(map[string]any)
	if !ok && raw != nil {
		return
	}
	data := map[string]any{}
	if d := obj.Object["data"]; d != nil {
		m, ok := d.(map[string]any)
		if !ok {
			return
		}
		data = maps.Clone(m)
	}
	for k, v := range strs {
		s, ok := v.(string)
		if !ok {
			return
		}
		if old, ok := data[k]; ok && old != nil && !isBase64(old) {
			return
		}
		data[k] = base64.StdEncoding.EncodeToString([]byte(asSent(s)))
	}
	delete(obj.Object, "stringData")
	if len(strs) > 0 {
		obj.Object["data"] = data
	}
}

// isBase64 reports whether v is a data value the server can decode.
func isBase64(v any) bool {
	s, ok := v.(string)
	if !ok {
		return false
	}
	_, err := base64.StdEncoding.DecodeString(s)
	return err == nil
}

// asSent is s as the server receives it in a request's JSON: encoding/json
// sends each byte of invalid UTF-8 as U+FFFD. Rendered YAML is valid UTF-8,
// so this is s nearly always.
func asSent(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	data, err := json.Marshal(s)
	if err != nil {
		return s
	}
	var sent string
	if err := json.Unmarshal(data, &sent); err != nil {
		return s
	}
	return sent
}
