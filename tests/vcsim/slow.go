package main

import (
	"bytes"
	"io"
	"log"
	"net/http"
	"time"
)

// maxSOAPRequestBytes bounds the request body the delay check reads. A QueryPerf for
// 10,000 VMs with a handful of metrics each is about 10 MB.
const maxSOAPRequestBytes = 64 << 20

// slowQueryPerfHandler delays QueryPerf requests that name a slow VM before passing them
// to the simulator. Other requests pass through at once.
type slowQueryPerfHandler struct {
	next http.Handler
	// slowVMs maps the managed object ID of each slow VM to its display name.
	slowVMs map[string]string
	delay   time.Duration
}

func (h *slowQueryPerfHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if len(h.slowVMs) == 0 || r.Method != http.MethodPost {
		h.next.ServeHTTP(w, r)
		return
	}

	body, err := io.ReadAll(io.LimitReader(r.Body, maxSOAPRequestBytes+1))
	r.Body.Close()
	if err != nil {
		log.Printf("read SOAP request from %s failed: %v", r.RemoteAddr, err)
		http.Error(w, "reading the request body failed", http.StatusBadRequest)
		return
	}
	if len(body) > maxSOAPRequestBytes {
		log.Printf("SOAP request from %s rejected: body exceeds %d bytes", r.RemoteAddr, maxSOAPRequestBytes)
		http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))

	if isQueryPerfRequest(body) {
		if moref, ok := h.findSlowVM(body); ok {
			log.Printf("delaying QueryPerf by %v because it names slow VM %s (%q)",
				h.delay, moref, h.slowVMs[moref])
			select {
			case <-time.After(h.delay):
			case <-r.Context().Done():
				return
			}
		}
	}
	h.next.ServeHTTP(w, r)
}

// findSlowVM returns the first slow VM whose managed object ID is the text of an element
// in body, as in <entity type="VirtualMachine">vm-42</entity>. Matching the whole text
// keeps vm-42 from matching vm-420.
func (h *slowQueryPerfHandler) findSlowVM(body []byte) (string, bool) {
	for moref := range h.slowVMs {
		if bytes.Contains(body, []byte(">"+moref+"<")) {
			return moref, true
		}
	}
	return "", false
}

// isQueryPerfRequest reports whether body contains a QueryPerf element, with or without a
// namespace prefix. QueryPerfCounter, QueryPerfComposite and the other QueryPerf* methods
// do not match.
func isQueryPerfRequest(body []byte) bool {
	const method = "QueryPerf"
	for offset := 0; ; {
		found := bytes.Index(body[offset:], []byte(method))
		if found < 0 {
			return false
		}
		start := offset + found
		end := start + len(method)
		offset = end
		if start == 0 || end >= len(body) {
			continue
		}
		before := body[start-1]
		after := body[end]
		if (before == '<' || before == ':') && (after == '>' || after == ' ' || after == '\t' || after == '\r' || after == '\n' || after == '/') {
			return true
		}
	}
}
