// The duel's Asio echo peer in C++20 coroutine style: the same io_context on
// one thread as echo_callbacks, but each connection is one coroutine started
// with co_spawn that co_awaits its reads and writes (use_awaitable), so the
// two styles of one library can be compared on the same loop.
//
//   echo_coroutines --address tcp://127.0.0.1:0
#include <array>
#include <cstdio>
#include <exception>
#include <optional>
#include <utility>

// After <utility>: Boost 1.74's asio/awaitable.hpp uses std::exchange
// without including it, and gcc 12's headers no longer bring it in.
#include <boost/asio.hpp>

#include "peers/listen_address.h"

namespace {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;

// As echo_callbacks: one pipelined burst of the duel's fits one read.
constexpr size_t kBufferSize = 16 * 1024;

awaitable<void> Echo(tcp::socket socket) {
  // Lives in the coroutine frame, which is the session's only allocation.
  std::array<char, kBufferSize> buffer;
  try {
    for (;;) {
      size_t n = co_await socket.async_read_some(asio::buffer(buffer), use_awaitable);
      co_await asio::async_write(socket, asio::buffer(buffer.data(), n), use_awaitable);
    }
  } catch (const boost::system::system_error&) {
    // EOF or a reset ends the session; the socket closes with the frame.
  }
}

awaitable<void> Listen(tcp::acceptor& acceptor) {
  for (;;) {
    boost::system::error_code ec;
    tcp::socket socket =
        co_await acceptor.async_accept(asio::redirect_error(use_awaitable, ec));
    if (ec) {
      std::fprintf(stderr, "accept: %s\n", ec.message().c_str());
      continue;
    }
    // As netloop and Go do by default: an echo must not wait for an ACK.
    socket.set_option(tcp::no_delay(true), ec);
    asio::co_spawn(acceptor.get_executor(), Echo(std::move(socket)), asio::detached);
  }
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
    asio::co_spawn(io, Listen(acceptor), asio::detached);
    io.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "echo_coroutines: %s\n", e.what());
    return 1;
  }
  return 0;
}
