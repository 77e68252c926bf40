package informers

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
)

// objectsAsTheAPIServerWritesThem are objects as JSON, in the shapes the decoders must read as
// client-go's unstructured decoder does: integers kept as integers, floats, nulls, nested lists,
// escapes and characters outside ASCII.
var objectsAsTheAPIServerWritesThem = []string{
	`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"ns","resourceVersion":"7","labels":{"app":"x"}},"data":{"k":"v\n\u003cb\u003e"}}`,
	`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"ns","generation":9007199254740993},"spec":{"replicas":3,"template":{"spec":{"containers":[{"name":"web","image":"registry.example.de/web:1","args":["--ratio","0.25",null]}]}}},"status":{"observedGeneration":2}}`,
	`{"apiVersion":"testenv.deich.io/v1","kind":"Widget","metadata":{"name":"w","namespace":"ns"},"spec":{"ratio":0.5,"big":1e+21,"neg":-3,"ok":true,"none":null,"empty":{},"list":[],"text":"Straße – Kiel ✓"}}`,
}

func TestDecodeEventReadsObjectsAsClientGoDoes(t *testing.T) {
	for _, obj := range objectsAsTheAPIServerWritesThem {
		want := &unstructured.Unstructured{}
		if _, _, err := unstructured.UnstructuredJSONScheme.Decode([]byte(obj), nil, want); err != nil {
			t.Fatalf("client-go decode %s: %v", obj, err)
		}
		ev, err := decodeEvent([]byte(`{"type":"MODIFIED","object":` + obj + "}\n"))
		if err != nil {
			t.Fatalf("decodeEvent(%s) error = %v", obj, err)
		}
		if ev.Type != watch.Modified {
			t.Errorf("type = %s, want MODIFIED", ev.Type)
		}
		if got := ev.Object.(*unstructured.Unstructured); !reflect.DeepEqual(got.Object, want.Object) {
			t.Errorf("decodeEvent(%s) = %#v, want %#v", obj, got.Object, want.Object)
		}
	}
}

func TestDecodeEventRefusesWhatIsNoEvent(t *testing.T) {
	for name, frame := range map[string]string{
		"an unknown type":  `{"type":"RENAMED","object":{"kind":"ConfigMap"}}`,
		"no object":        `{"type":"ADDED"}`,
		"an object a list": `{"type":"ADDED","object":[1]}`,
		"not JSON":         `type: ADDED`,
	} {
		t.Run("refuses "+name, func(t *testing.T) {
			if _, err := decodeEvent([]byte(frame)); err == nil {
				t.Fatalf("decodeEvent(%s) = nil error", frame)
			}
		})
	}
}

func TestDecodeListGivesItemsTheirKindAsClientGoDoes(t *testing.T) {
	data := `{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":"42","continue":"abc"},"items":[` +
		`{"metadata":{"name":"a","namespace":"ns"},"data":{"n":"1"}},` +
		`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"b","namespace":"ns"}}]}`
	want := &unstructured.UnstructuredList{}
	if _, _, err := unstructured.UnstructuredJSONScheme.Decode([]byte(data), nil, want); err != nil {
		t.Fatal(err)
	}
	got, err := decodeList([]byte(data))
	if err != nil {
		t.Fatalf("decodeList() error = %v", err)
	}
	if !reflect.DeepEqual(got.Object, want.Object) {
		t.Errorf("list = %#v, want %#v", got.Object, want.Object)
	}
	if len(got.Items) != len(want.Items) {
		t.Fatalf("items = %d, want %d", len(got.Items), len(want.Items))
	}
	for i := range got.Items {
		if !reflect.DeepEqual(got.Items[i].Object, want.Items[i].Object) {
			t.Errorf("item %d = %#v, want %#v", i, got.Items[i].Object, want.Items[i].Object)
		}
	}
	if got.GetResourceVersion() != "42" || got.Items[0].GetKind() != "ConfigMap" || got.Items[0].GetAPIVersion() != "v1" {
		t.Errorf("list resourceVersion %q, first item %s %s; want 42, v1 ConfigMap", got.GetResourceVersion(), got.Items[0].GetAPIVersion(), got.Items[0].GetKind())
	}
}

// receiveAll collects a watch's events until it ends.
func receiveAll(t *testing.T, w watch.Interface) []watch.Event {
	t.Helper()
	var got []watch.Event
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				return got
			}
			got = append(got, ev)
		case <-timeout:
			t.Fatalf("the watch did not end; events so far: %v", got)
		}
	}
}

func TestJSONWatchPassesOnEveryEventOfTheStream(t *testing.T) {
	long := strings.Repeat("x", 200<<10) // longer than the reader's buffer
	indented := "{\n  \"type\": \"MODIFIED\",\n  \"object\": {\n    \"apiVersion\": \"v1\",\n    \"kind\": \"ConfigMap\",\n    \"metadata\": {\"name\": \"b\"}\n  }\n}\n"
	stream := `{"type":"ADDED","object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","resourceVersion":"1"}}}` + "\n" +
		"\n" + // blank lines between events are skipped
		`{"type":"MODIFIED","object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"long"},"data":{"v":"` + long + `"}}}` + "\n" +
		indented + // read as documents from here on
		`{"type":"MODIFIED","object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}}` + "\n" +
		`{"type":"BOOKMARK","object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"resourceVersion":"9","annotations":{"k8s.io/initial-events-end":"true"}}}}` + "\n" +
		`{"type":"DELETED","object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}}` + "\n" +
		`{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 1 (9)","reason":"Expired","code":410}}`

	got := receiveAll(t, newJSONWatch(io.NopCloser(strings.NewReader(stream))))

	want := []struct {
		typ  watch.EventType
		name string
	}{{watch.Added, "a"}, {watch.Modified, "long"}, {watch.Modified, "b"}, {watch.Modified, "c"}, {watch.Bookmark, ""}, {watch.Deleted, "a"}, {watch.Error, ""}}
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d: %v", len(got), len(want), got)
	}
	for i, w := range want {
		u := got[i].Object.(*unstructured.Unstructured)
		if got[i].Type != w.typ || u.GetName() != w.name {
			t.Errorf("event %d = %s %q, want %s %q", i, got[i].Type, u.GetName(), w.typ, w.name)
		}
	}
	if v, _, _ := unstructured.NestedString(got[1].Object.(*unstructured.Unstructured).Object, "data", "v"); v != long {
		t.Errorf("the long event's value has %d bytes, want %d", len(v), len(long))
	}
	if err := apierrors.FromObject(got[6].Object); !apierrors.IsResourceExpired(err) {
		t.Errorf("the error event reads as %v, want the server's 410 Expired", err)
	}
}

func TestJSONWatchReportsAnEventItCannotDecodeAndEnds(t *testing.T) {
	stream := `{"type":"ADDED","object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}}` + "\n" +
		`{"type":"ADDED","object":{"kind":` + "\x00}\n" +
		`{"type":"ADDED","object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"never"}}}` + "\n"
	got := receiveAll(t, newJSONWatch(io.NopCloser(strings.NewReader(stream))))
	if len(got) != 2 || got[0].Type != watch.Added || got[1].Type != watch.Error {
		t.Fatalf("events = %v, want the first ADDED and an ERROR, then the end", got)
	}
	status, ok := got[1].Object.(*metav1.Status)
	if !ok || status.Code != http.StatusInternalServerError || !strings.Contains(status.Message, "unable to decode an event from the watch stream") {
		t.Errorf("error event = %#v, want a 500 Status saying the event could not be decoded", got[1].Object)
	}
}

func TestJSONWatchEndsQuietlyWhenTheStreamBreaksOff(t *testing.T) {
	stream := `{"type":"ADDED","object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}}` + "\n" +
		`{"type":"ADDED","object":{"apiVersion":"v1","kind":"Conf`
	got := receiveAll(t, newJSONWatch(io.NopCloser(strings.NewReader(stream))))
	if len(got) != 1 || got[0].Type != watch.Added {
		t.Fatalf("events = %v, want the complete ADDED alone", got)
	}
}

// brokenBody is a response body whose connection breaks after what it delivered.
type brokenBody struct {
	io.Reader
	err error
}

func (b brokenBody) Read(p []byte) (int, error) {
	n, err := b.Reader.Read(p)
	if errors.Is(err, io.EOF) {
		err = b.err
	}
	return n, err
}

func (brokenBody) Close() error { return nil }

func TestJSONWatchEndsQuietlyWhenTheConnectionBreaks(t *testing.T) {
	added := `{"type":"ADDED","object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}}` + "\n"
	for _, err := range []error{syscall.ECONNRESET, &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}} {
		got := receiveAll(t, newJSONWatch(brokenBody{Reader: strings.NewReader(added), err: err}))
		if len(got) != 1 || got[0].Type != watch.Added {
			t.Errorf("after %v: events = %v, want the ADDED alone and no error event", err, got)
		}
	}
}

// blockingBody is a response body that delivers nothing until it is closed.
type blockingBody struct{ closed chan struct{} }

func (b *blockingBody) Read([]byte) (int, error) { <-b.closed; return 0, io.ErrClosedPipe }
func (b *blockingBody) Close() error {
	select {
	case <-b.closed:
	default:
		close(b.closed)
	}
	return nil
}

func TestJSONWatchStopsWhileItWaitsForTheServer(t *testing.T) {
	body := &blockingBody{closed: make(chan struct{})}
	w := newJSONWatch(body)
	w.Stop()
	w.Stop() // a second stop changes nothing
	if got := receiveAll(t, w); len(got) != 0 {
		t.Fatalf("a stopped watch passed on %v", got)
	}
}

func TestJSONSourceAsksTheAPIServerForWhatTheDynamicClientAsksFor(t *testing.T) {
	var requests []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests = append(requests, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery)
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("watch") == "true" {
			_, _ = fmt.Fprintln(w, `{"type":"ADDED","object":{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"ns"}}}`)
			return
		}
		_, _ = fmt.Fprint(w, `{"kind":"DeploymentList","apiVersion":"apps/v1","metadata":{"resourceVersion":"5"},"items":[{"metadata":{"name":"web","namespace":"ns"}}]}`)
	}))
	t.Cleanup(srv.Close)
	cfg := &rest.Config{Host: srv.URL}
	src, err := newJSONSource(cfg, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfigAndClient(cfg, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	deployments := Key{Resource: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, Namespace: "ns", Selector: "app=x"}
	clusterWide := Key{Resource: configMaps}
	list := metav1.ListOptions{LabelSelector: deployments.Selector, ResourceVersion: "0", Limit: 500}
	// What an informer's streamed list asks for.
	stream := metav1.ListOptions{LabelSelector: "app=x", ResourceVersion: "5", ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan,
		AllowWatchBookmarks: true, SendInitialEvents: ptr.To(true), TimeoutSeconds: ptr.To(int64(300))}

	// The dynamic client's requests first, then the source's, which must be the same.
	if _, err := dyn.Resource(deployments.Resource).Namespace(deployments.Namespace).List(t.Context(), list); err != nil {
		t.Fatal(err)
	}
	w, err := dyn.Resource(clusterWide.Resource).Watch(t.Context(), stream)
	if err != nil {
		t.Fatal(err)
	}
	receiveAll(t, w)
	want := requests
	requests = nil

	got, err := src.list(t.Context(), deployments, list)
	if err != nil {
		t.Fatalf("list() error = %v", err)
	}
	if items := got.(*unstructured.UnstructuredList).Items; len(items) != 1 || items[0].GetKind() != "Deployment" {
		t.Errorf("list() items = %v, want the Deployment", items)
	}
	if w, err = src.watch(t.Context(), clusterWide, stream); err != nil {
		t.Fatalf("watch() error = %v", err)
	}
	if events := receiveAll(t, w); len(events) != 1 {
		t.Errorf("watch() events = %v, want one", events)
	}
	if len(want) != 2 || !reflect.DeepEqual(requests, want) {
		t.Errorf("requests = %q, the dynamic client's %q", requests, want)
	}
}

func TestJSONSourceReturnsTheAPIServersRefusal(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"configmaps is forbidden: User \"deich\" cannot watch resource \"configmaps\"","reason":"Forbidden","code":403}`)
	}))
	t.Cleanup(srv.Close)
	src, err := newJSONSource(&rest.Config{Host: srv.URL}, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	key := Key{Resource: configMaps, Namespace: "ns"}
	if _, err := src.list(t.Context(), key, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list() error = %v, want the 403", err)
	}
	if _, err := src.watch(t.Context(), key, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("watch() error = %v, want the 403", err)
	}
}

func FuzzDecodeEventReadsObjectsAsClientGoDoes(f *testing.F) {
	for _, obj := range objectsAsTheAPIServerWritesThem {
		f.Add(obj)
	}
	f.Fuzz(func(t *testing.T, obj string) {
		want := &unstructured.Unstructured{}
		if _, _, err := unstructured.UnstructuredJSONScheme.Decode([]byte(obj), nil, want); err != nil {
			return // not an object client-go reads
		}
		ev, err := decodeEvent([]byte(`{"type":"ADDED","object":` + obj + "}"))
		if err != nil {
			t.Fatalf("decodeEvent() error = %v for an object client-go reads: %s", err, obj)
		}
		if got := ev.Object.(*unstructured.Unstructured); !reflect.DeepEqual(got.Object, want.Object) {
			t.Fatalf("decodeEvent() = %#v, client-go %#v", got.Object, want.Object)
		}
	})
}
