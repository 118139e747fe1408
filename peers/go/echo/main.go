// Command echo is the duel's Go echo peer: the way a Go server is usually
// written, one goroutine per connection over net.Conn and a bufio.Reader,
// with a read deadline pushed before every read. The load sends binary
// messages, so it echoes whatever bytes have arrived, not lines.
//
//	echo --address tcp://127.0.0.1:0   (prints "listening on tcp://127.0.0.1:PORT")
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"runtime"
	"strings"
	"time"
)

// Long enough never to fire in a duel cell; short enough that a vanished
// peer does not hold its goroutine forever.
const readTimeout = 5 * time.Minute

func serve(c net.Conn) {
	defer c.Close()
	// Go's default buffer size, as net/http uses.
	r := bufio.NewReader(c)
	for {
		c.SetReadDeadline(time.Now().Add(readTimeout))
		// Peek(1) parks the goroutine until bytes arrive; then everything
		// buffered goes back from the reader's own buffer, without a copy.
		if _, err := r.Peek(1); err != nil {
			return
		}
		data, _ := r.Peek(r.Buffered())
		if _, err := c.Write(data); err != nil {
			return
		}
		r.Discard(len(data))
	}
}

func main() {
	address := flag.String("address", "tcp://127.0.0.1:9000", "listen address, tcp://host:port")
	flag.Parse()
	// One thread runs Go code, as every other server in the duel has one loop.
	runtime.GOMAXPROCS(1)
	ln, err := net.Listen("tcp", strings.TrimPrefix(*address, "tcp://"))
	if err != nil {
		log.Fatal(err)
	}
	// The line tools/duel waits for; stdout is unbuffered in Go.
	fmt.Fprintf(os.Stdout, "listening on tcp://%s\n", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go serve(c)
	}
}
