// A way for a library layer above the engine (the fiber bridge's
// FiberServer) to take accepted sockets before any callback Conn exists, so
// that a connection served by a fiber is never a Conn that is made, detached
// and registered again. Engine internal: users serve fibers through
// FiberServer.
#ifndef NETLOOP_REACTOR_INTERNAL_ACCEPTED_SOCKET_TAKER_H_
#define NETLOOP_REACTOR_INTERNAL_ACCEPTED_SOCKET_TAKER_H_

#include "reactor/socket_handle.h"

namespace netloop {
class Engine;
class SocketAddress;
}  // namespace netloop

namespace netloop::internal {

class AcceptedSocketTaker {
 public:
  // Called on the thread of loop `loop_index`, which is to serve the
  // socket, in place of making a Conn (and calling OnOpen). `fd` is
  // non-blocking, tuned as Options::socket says, and owned by the taker from
  // here on. The socket counts as one of the loop's connections (for
  // CountConnections and least-connections balancing) until the taker calls
  // ReleaseTakenSocket.
  virtual void TakeAccepted(int loop_index, SocketHandle fd, const SocketAddress& peer) = 0;

 protected:
  ~AcceptedSocketTaker() = default;
};

// Before Engine::Start (OnBoot at the latest): every accepted socket goes to
// `taker` from then on; it must outlive the engine's loops.
void SetAcceptedSocketTaker(Engine& engine, AcceptedSocketTaker* taker);
// A taken socket is done with. Any thread.
void ReleaseTakenSocket(Engine& engine, int loop_index);

}  // namespace netloop::internal

#endif  // NETLOOP_REACTOR_INTERNAL_ACCEPTED_SOCKET_TAKER_H_
