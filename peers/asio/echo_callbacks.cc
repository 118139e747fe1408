// The duel's Asio echo peer in completion-handler style: one io_context run
// by one thread, each session a shared_ptr kept alive by the handler it has
// in flight, reading with async_read_some and answering with async_write.
//
//   echo_callbacks --address tcp://127.0.0.1:0
#include <array>
#include <cstdio>
#include <exception>
#include <memory>
#include <optional>
#include <utility>

// After <utility>: Boost 1.74's asio/awaitable.hpp uses std::exchange
// without including it, and gcc 12's headers no longer bring it in.
#include <boost/asio.hpp>

#include "peers/listen_address.h"

namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

// One pipelined burst of the duel's (16 × 1 KiB) fits one read.
constexpr size_t kBufferSize = 16 * 1024;

class Session : public std::enable_shared_from_this<Session> {
 public:
  explicit Session(tcp::socket socket) : socket_(std::move(socket)) {}

  void Start() { Read(); }

 private:
  void Read() {
    socket_.async_read_some(asio::buffer(buffer_),
                            [self = shared_from_this()](boost::system::error_code ec,
                                                        size_t n) {
                              // EOF, a reset or a shutdown: dropping the last
                              // reference closes the socket.
                              if (!ec) self->Write(n);
                            });
  }

  void Write(size_t n) {
    asio::async_write(socket_, asio::buffer(buffer_.data(), n),
                      [self = shared_from_this()](boost::system::error_code ec, size_t) {
                        if (!ec) self->Read();
                      });
  }

  tcp::socket socket_;
  std::array<char, kBufferSize> buffer_;
};

void Accept(tcp::acceptor& acceptor) {
  acceptor.async_accept([&acceptor](boost::system::error_code ec, tcp::socket socket) {
    if (!ec) {
      // As netloop and Go do by default: an echo must not wait for an ACK.
      socket.set_option(tcp::no_delay(true), ec);
      std::make_shared<Session>(std::move(socket))->Start();
    } else {
      std::fprintf(stderr, "accept: %s\n", ec.message().c_str());
    }
    Accept(acceptor);
  });
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<netloop::peers::ListenAddress> address =
      netloop::peers::ParseListenAddress(argc, argv, "tcp://127.0.0.1:9000");
  if (!address) return 2;
  try {
    // The hint tells Asio one thread runs the context: no locking inside.
    asio::io_context io(1);
    tcp::acceptor acceptor(io, {asio::ip::make_address(address->host),
                                static_cast<unsigned short>(address->port)});
    netloop::peers::PrintListening(address->host, acceptor.local_endpoint().port());
    Accept(acceptor);
    io.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "echo_callbacks: %s\n", e.what());
    return 1;
  }
  return 0;
}
