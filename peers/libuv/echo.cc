// The duel's libuv echo peer: one uv_loop, the library's own read pattern
// (the loop asks alloc_cb for a buffer right before each read, so an idle
// connection holds none), each read's bytes handed to uv_write and freed
// when the write completes.
//
//   echo --address tcp://127.0.0.1:0
#include <netinet/in.h>
#include <uv.h>

#include <cstdio>
#include <cstdlib>
#include <optional>

#include "peers/listen_address.h"

namespace {

// A write request and the buffer it sends: one allocation freed together.
struct WriteReq {
  uv_write_t req;
  uv_buf_t buf;
};

void OnAlloc(uv_handle_t*, size_t suggested, uv_buf_t* buf) {
  buf->base = static_cast<char*>(std::malloc(suggested));
  buf->len = buf->base != nullptr ? suggested : 0;  // 0: libuv reports UV_ENOBUFS
}

void OnClosed(uv_handle_t* handle) { delete reinterpret_cast<uv_tcp_t*>(handle); }

void OnWritten(uv_write_t* req, int status) {
  auto* stream = reinterpret_cast<uv_handle_t*>(req->handle);
  auto* w = reinterpret_cast<WriteReq*>(req);
  std::free(w->buf.base);
  delete w;
  // A failed write means the peer is gone; the read side sees it too, but
  // closing here does not wait for that.
  if (status < 0 && !uv_is_closing(stream)) uv_close(stream, OnClosed);
}

void OnRead(uv_stream_t* stream, ssize_t n, const uv_buf_t* buf) {
  if (n > 0) {
    auto* w = new WriteReq;
    w->buf = uv_buf_init(buf->base, static_cast<unsigned int>(n));
    uv_write(&w->req, stream, &w->buf, 1, OnWritten);  // owns buf->base now
    return;
  }
  std::free(buf->base);
  // n == 0 is EAGAIN: nothing to do. Below zero: EOF or an error.
  if (n < 0 && !uv_is_closing(reinterpret_cast<uv_handle_t*>(stream))) {
    uv_close(reinterpret_cast<uv_handle_t*>(stream), OnClosed);
  }
}

void OnConnection(uv_stream_t* server, int status) {
  if (status < 0) {
    std::fprintf(stderr, "accept: %s\n", uv_strerror(status));
    return;
  }
  auto* client = new uv_tcp_t;
  uv_tcp_init(server->loop, client);
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(client)) != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(client), OnClosed);
    return;
  }
  // As netloop and Go do by default: an echo must not wait for an ACK.
  uv_tcp_nodelay(client, 1);
  uv_read_start(reinterpret_cast<uv_stream_t*>(client), OnAlloc, OnRead);
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<netloop::peers::ListenAddress> address =
      netloop::peers::ParseListenAddress(argc, argv, "tcp://127.0.0.1:9000");
  if (!address) return 2;
  uv_loop_t* loop = uv_default_loop();
  uv_tcp_t server;
  uv_tcp_init(loop, &server);
  sockaddr_in addr;
  int r = uv_ip4_addr(address->host.c_str(), address->port, &addr);
  if (r == 0) r = uv_tcp_bind(&server, reinterpret_cast<const sockaddr*>(&addr), 0);
  if (r == 0) r = uv_listen(reinterpret_cast<uv_stream_t*>(&server), SOMAXCONN, OnConnection);
  if (r != 0) {
    std::fprintf(stderr, "echo: %s: %s\n", address->host.c_str(), uv_strerror(r));
    return 1;
  }
  // Port 0 binds any free port: ask the socket which one.
  sockaddr_in bound;
  int len = sizeof(bound);
  uv_tcp_getsockname(&server, reinterpret_cast<sockaddr*>(&bound), &len);
  netloop::peers::PrintListening(address->host, ntohs(bound.sin_port));
  return uv_run(loop, UV_RUN_DEFAULT);
}
