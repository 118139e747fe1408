// Files a Conn has been asked to send (Conn::SendFile), in order with its
// writes (engine internal). Allocated on the first SendFile and freed when the
// last file is sent, so a connection that never sends a file pays one
// pointer.
//
// Order on the wire: the Conn's outbound ring (bytes written before the first
// file), then queue[0]'s file, then queue[0].after (bytes written while it
// was waiting), then queue[1]'s file, and so on.
//
// Loop thread only.
#ifndef NETLOOP_REACTOR_INTERNAL_OUTBOUND_FILES_H_
#define NETLOOP_REACTOR_INTERNAL_OUTBOUND_FILES_H_

#include <unistd.h>

#include <cstdint>
#include <deque>
#include <string>

namespace netloop::internal {

struct OutboundFile {
  int fd = -1;  // a dup, closed with the entry
  uint64_t offset = 0;
  uint64_t remaining = 0;
  std::string after;  // written after this file, before the next
};

struct OutboundFiles {
  OutboundFiles() = default;
  OutboundFiles(const OutboundFiles&) = delete;
  OutboundFiles& operator=(const OutboundFiles&) = delete;
  ~OutboundFiles() {
    for (OutboundFile& f : queue) ::close(f.fd);
  }

  std::deque<OutboundFile> queue;
  // File bytes not sent yet plus the `after` bytes: what the files add to
  // Conn::OutboundBuffered.
  uint64_t bytes = 0;
  // sendfile(2) refused this socket (EINVAL: not a kind it can write to):
  // read and write instead, for the rest of the connection.
  bool copy = false;
};

}  // namespace netloop::internal

#endif  // NETLOOP_REACTOR_INTERNAL_OUTBOUND_FILES_H_
