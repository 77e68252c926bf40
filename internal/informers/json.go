package informers

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	sigsjson "sigs.k8s.io/json"
)

// jsonSource lists and watches through the API server's JSON, as client-go's dynamic client
// does, and decodes each object once, straight into the map an unstructured object holds.
// The dynamic client scans every byte of a watch event four times before it decodes the
// object (to find the frame, its kind and the envelope, and to check the object) and decodes
// every item of a list twice. For the selected objects of a large service, watched as JSON
// because any kind may be selected, that was most of the time to its first copy.
//
// A watch is read line by line: an API server writes each event as one line of compact JSON.
// From an event that ends mid-line on (a server that writes its JSON indented), the watch is
// read a JSON document at a time, as client-go reads it.
type jsonSource struct{ rc rest.Interface }

// newJSONSource returns a source that talks to the API server of cfg through h, or through a
// client of its own for cfg when h is nil.
func newJSONSource(cfg *rest.Config, h *http.Client) (jsonSource, error) {
	c := dynamic.ConfigFor(cfg)
	c.GroupVersion = nil
	if h == nil {
		var err error
		if h, err = rest.HTTPClientFor(c); err != nil {
			return jsonSource{}, fmt.Errorf("create HTTP client: %w", err)
		}
	}
	rc, err := rest.UnversionedRESTClientForConfigAndClient(c, h)
	if err != nil {
		return jsonSource{}, fmt.Errorf("create REST client: %w", err)
	}
	return jsonSource{rc: rc}, nil
}

// path is the URL path of key's collection, as the dynamic client builds it.
func (j jsonSource) path(key Key) []string {
	p := []string{"api"}
	if key.Resource.Group != "" {
		p = []string{"apis", key.Resource.Group}
	}
	p = append(p, key.Resource.Version)
	if key.Namespace != "" {
		p = append(p, "namespaces", key.Namespace)
	}
	return append(p, key.Resource.Resource)
}

func (j jsonSource) list(ctx context.Context, key Key, o metav1.ListOptions) (runtime.Object, error) {
	data, err := j.rc.Get().AbsPath(j.path(key)...).
		SpecificallyVersionedParams(&o, metav1.ParameterCodec, metav1.SchemeGroupVersion).
		Do(ctx).Raw()
	if err != nil {
		return nil, err
	}
	return decodeList(data)
}

func (j jsonSource) watch(ctx context.Context, key Key, o metav1.ListOptions) (watch.Interface, error) {
	o.Watch = true
	body, err := j.rc.Get().AbsPath(j.path(key)...).
		SpecificallyVersionedParams(&o, metav1.ParameterCodec, metav1.SchemeGroupVersion).
		Stream(ctx)
	if err != nil {
		return nil, err
	}
	return newJSONWatch(body), nil
}

// client is the source itself: it supports streaming lists.
func (j jsonSource) client() any             { return j }
func (j jsonSource) example() runtime.Object { return &unstructured.Unstructured{} }

// decodeList decodes a list as the API server sends it. Items of a built-in kind come without
// apiVersion and kind; they get the list's, as the dynamic client gives them.
func decodeList(data []byte) (*unstructured.UnstructuredList, error) {
	var l struct {
		APIVersion string           `json:"apiVersion"`
		Kind       string           `json:"kind"`
		Metadata   map[string]any   `json:"metadata"`
		Items      []map[string]any `json:"items"`
	}
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(data, &l); err != nil {
		return nil, fmt.Errorf("decode list: %w", err)
	}
	out := &unstructured.UnstructuredList{Object: map[string]any{"apiVersion": l.APIVersion, "kind": l.Kind}}
	if l.Metadata != nil {
		out.Object["metadata"] = l.Metadata
	}
	itemKind := strings.TrimSuffix(l.Kind, "List")
	out.Items = make([]unstructured.Unstructured, len(l.Items))
	for i, item := range l.Items {
		u := unstructured.Unstructured{Object: item}
		if u.GetKind() == "" && u.GetAPIVersion() == "" {
			u.SetKind(itemKind)
			u.SetAPIVersion(l.APIVersion)
		}
		out.Items[i] = u
	}
	return out, nil
}

// jsonWatch reads a watch's events from its response body.
type jsonWatch struct {
	body io.ReadCloser
	out  chan watch.Event
	done chan struct{}
	stop sync.Once
}

func newJSONWatch(body io.ReadCloser) *jsonWatch {
	w := &jsonWatch{body: body, out: make(chan watch.Event), done: make(chan struct{})}
	go w.receive()
	return w
}

func (w *jsonWatch) ResultChan() <-chan watch.Event { return w.out }

func (w *jsonWatch) Stop() {
	w.stop.Do(func() {
		close(w.done)
		_ = w.body.Close() // ends a read under way; the error it gives is not the watch's
	})
}

// watchDecodingErrors turns an event that cannot be decoded into the error event client-go's
// own watch sends, so that the informer starts a new watch as it would there.
var watchDecodingErrors = apierrors.NewClientErrorReporter(http.StatusInternalServerError, http.MethodGet, "ClientWatchDecoding")

// receive passes on the events of the body until it ends, the watch is stopped, or an event
// cannot be decoded.
func (w *jsonWatch) receive() {
	defer close(w.out)
	defer w.Stop()
	events := &eventReader{lines: bufio.NewReaderSize(w.body, 64<<10)}
	for {
		ev, err := events.next()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || utilnet.IsProbableEOF(err) || utilnet.IsTimeout(err) {
				return // the server or the connection ended the watch: the informer watches again
			}
			select {
			case <-w.done:
				return // stopped: the closed body ended the read
			default:
			}
			ev = watch.Event{Type: watch.Error, Object: watchDecodingErrors.AsObject(fmt.Errorf("unable to decode an event from the watch stream: %w", err))}
		}
		select {
		case w.out <- ev:
		case <-w.done:
			return
		}
		if err != nil {
			return
		}
	}
}

// eventReader reads a watch's events: a line each, as an API server writes them, or, from the
// first event that goes on over several lines, one JSON document each.
type eventReader struct {
	lines     *bufio.Reader
	documents *json.Decoder
}

// next reads and decodes the next event.
func (e *eventReader) next() (watch.Event, error) {
	if e.documents != nil {
		return e.nextDocument()
	}
	var line []byte
	for len(bytes.TrimSpace(line)) == 0 {
		var err error
		if line, err = readLine(e.lines); err != nil {
			return watch.Event{}, err
		}
	}
	ev, err := decodeEvent(line)
	if err == nil || !truncated(line) {
		return ev, err
	}
	// A server that writes its JSON indented: read whole documents from here on.
	e.documents = json.NewDecoder(io.MultiReader(bytes.NewReader(line), e.lines))
	return e.nextDocument()
}

func (e *eventReader) nextDocument() (watch.Event, error) {
	var raw json.RawMessage
	if err := e.documents.Decode(&raw); err != nil {
		return watch.Event{}, err
	}
	return decodeEvent(raw)
}

// readLine returns the next line of r, its newline included. The slice is the caller's.
func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if err == nil {
		return bytes.Clone(line), nil
	}
	buf := bytes.Clone(line)
	for errors.Is(err, bufio.ErrBufferFull) {
		line, err = r.ReadSlice('\n')
		buf = append(buf, line...)
	}
	if err != nil && (!errors.Is(err, io.EOF) || len(buf) == 0) {
		return nil, err
	}
	return buf, nil // a last line without a newline
}

// decodeEvent decodes one watch event: its type, and its object into the map an unstructured
// object holds.
func decodeEvent(frame []byte) (watch.Event, error) {
	var ev struct {
		Type   watch.EventType `json:"type"`
		Object map[string]any  `json:"object"`
	}
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(frame, &ev); err != nil {
		return watch.Event{}, err
	}
	switch ev.Type {
	case watch.Added, watch.Modified, watch.Deleted, watch.Bookmark, watch.Error:
	default:
		return watch.Event{}, fmt.Errorf("got invalid watch event type: %q", ev.Type)
	}
	if ev.Object == nil {
		return watch.Event{}, fmt.Errorf("watch event %s carries no object", ev.Type)
	}
	return watch.Event{Type: ev.Type, Object: &unstructured.Unstructured{Object: ev.Object}}, nil
}

// truncated reports whether frame is the start of a JSON document that goes on: one whose
// only fault is that it ends too soon.
func truncated(frame []byte) bool {
	var raw json.RawMessage
	var syntax *json.SyntaxError
	err := json.Unmarshal(frame, &raw)
	return errors.As(err, &syntax) && syntax.Offset == int64(len(frame))
}
