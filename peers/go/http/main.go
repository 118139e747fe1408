// Command http is the duel's Go HTTP peer: net/http answering GET /plaintext
// (and /) with the same body and headers as examples/http's servers, so the
// load parses the same bytes from each. net/http adds the Date header itself.
//
//	http --address tcp://127.0.0.1:0   (prints "listening on tcp://127.0.0.1:PORT")
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"time"
)

var hello = []byte("Hello, World!")

func plaintext(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" && r.URL.Path != "/plaintext" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Server", "netloop")
	h.Set("Content-Type", "text/plain")
	// Set explicitly so the body is never chunked.
	h.Set("Content-Length", "13")
	w.Write(hello)
}

func main() {
	address := flag.String("address", "tcp://127.0.0.1:8080", "listen address, tcp://host:port")
	flag.Parse()
	runtime.GOMAXPROCS(1)
	ln, err := net.Listen("tcp", strings.TrimPrefix(*address, "tcp://"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stdout, "listening on tcp://%s\n", ln.Addr())
	srv := &http.Server{
		Handler: http.HandlerFunc(plaintext),
		// The bounds examples/http has: a request head within 10 s, keep-alive
		// connections closed after 60 s idle.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	log.Fatal(srv.Serve(ln))
}
