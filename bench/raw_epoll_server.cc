// The floor every head-to-head run compares against: the least a server can
// do per message. One thread, level-triggered epoll, one static 64 KiB read
// buffer, per-connection state only for bytes the socket would not take.
// No library code: if netloop costs more than this, the difference is ours.
//
//   raw_epoll_server --mode=echo|http|udp-echo --port=0
//   (prints "listening on 127.0.0.1:PORT")
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

namespace {

volatile sig_atomic_t stop_requested = 0;
void OnSignal(int) { stop_requested = 1; }

// Bytes a connection could not send yet; absent for nearly every connection.
struct Pending {
  char* data;
  size_t size;
};
Pending** pending = nullptr;  // indexed by fd
int pending_cap = 0;

char read_buf[64 * 1024];
char date_header[64];
time_t date_second = 0;

void RefreshDate() {
  time_t now = time(nullptr);
  if (now == date_second) return;
  date_second = now;
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(date_header, sizeof(date_header), "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

void CloseConn(int ep, int fd) {
  epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
  if (fd < pending_cap && pending[fd] != nullptr) {
    free(pending[fd]->data);
    free(pending[fd]);
    pending[fd] = nullptr;
  }
  close(fd);
}

// Sends what it can; keeps the rest and asks for EPOLLOUT.
bool SendOrKeep(int ep, int fd, const char* data, size_t size) {
  if (fd < pending_cap && pending[fd] != nullptr) {  // already waiting: append
    Pending* p = pending[fd];
    p->data = static_cast<char*>(realloc(p->data, p->size + size));
    memcpy(p->data + p->size, data, size);
    p->size += size;
    return true;
  }
  ssize_t n = send(fd, data, size, MSG_NOSIGNAL);
  if (n < 0) {
    if (errno != EAGAIN) return false;
    n = 0;
  }
  if (static_cast<size_t>(n) == size) return true;
  if (fd >= pending_cap) {
    int cap = fd * 2 + 16;
    pending = static_cast<Pending**>(realloc(pending, cap * sizeof(Pending*)));
    memset(pending + pending_cap, 0, (cap - pending_cap) * sizeof(Pending*));
    pending_cap = cap;
  }
  Pending* p = static_cast<Pending*>(malloc(sizeof(Pending)));
  p->size = size - n;
  p->data = static_cast<char*>(malloc(p->size));
  memcpy(p->data, data + n, p->size);
  pending[fd] = p;
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT;
  ev.data.fd = fd;
  epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
  return true;
}

void FlushPending(int ep, int fd) {
  Pending* p = fd < pending_cap ? pending[fd] : nullptr;
  if (p == nullptr) return;
  ssize_t n = send(fd, p->data, p->size, MSG_NOSIGNAL);
  if (n < 0) {
    if (errno != EAGAIN) CloseConn(ep, fd);
    return;
  }
  memmove(p->data, p->data + n, p->size - n);
  p->size -= n;
  if (p->size == 0) {
    free(p->data);
    free(p);
    pending[fd] = nullptr;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
  }
}

// Answers every complete request in buf; returns bytes consumed. Partial
// requests are rare enough for the floor to simply keep them per connection.
size_t AnswerHttp(int ep, int fd, const char* buf, size_t len) {
  static char out[64 * 1024];
  size_t out_len = 0;
  size_t pos = 0;
  for (;;) {
    const char* end = static_cast<const char*>(memmem(buf + pos, len - pos, "\r\n\r\n", 4));
    if (end == nullptr) break;
    pos = static_cast<size_t>(end - buf) + 4;
    int n = snprintf(out + out_len, sizeof(out) - out_len,
                     "HTTP/1.1 200 OK\r\nServer: raw\r\nDate: %s\r\nContent-Type: "
                     "text/plain\r\nContent-Length: 13\r\n\r\nHello, World!",
                     date_header);
    out_len += static_cast<size_t>(n);
    if (out_len > sizeof(out) - 256) {
      SendOrKeep(ep, fd, out, out_len);
      out_len = 0;
    }
  }
  if (out_len > 0 && !SendOrKeep(ep, fd, out, out_len)) return static_cast<size_t>(-1);
  return pos;
}

}  // namespace

// The UDP floor: one socket, level-triggered epoll, recvmmsg of up to 32
// datagrams into static buffers and one sendmmsg echoing them to their
// senders.
int UdpEcho(const char* host, int port) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, host, &addr.sin_addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    perror("bind");
    return 1;
  }
  socklen_t alen = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &alen);
  printf("listening on %s:%d\n", host, ntohs(addr.sin_port));
  fflush(stdout);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  constexpr int kBatch = 32;
  constexpr size_t kMax = 65536;
  static char bufs[kBatch][kMax];
  static mmsghdr msgs[kBatch];
  static iovec iovs[kBatch];
  static sockaddr_storage peers[kBatch];
  while (!stop_requested) {
    epoll_event out[1];
    if (epoll_wait(ep, out, 1, 1000) <= 0) continue;
    for (int i = 0; i < kBatch; ++i) {
      iovs[i] = {bufs[i], kMax};
      msgs[i].msg_hdr = {};
      msgs[i].msg_hdr.msg_name = &peers[i];
      msgs[i].msg_hdr.msg_namelen = sizeof(peers[i]);
      msgs[i].msg_hdr.msg_iov = &iovs[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int n = recvmmsg(fd, msgs, kBatch, MSG_DONTWAIT, nullptr);
    if (n <= 0) continue;
    for (int i = 0; i < n; ++i) iovs[i].iov_len = msgs[i].msg_len;
    sendmmsg(fd, msgs, static_cast<unsigned>(n), MSG_DONTWAIT);
  }
  close(fd);
  return 0;
}

int main(int argc, char** argv) {
  const char* mode = "echo";
  const char* host = "127.0.0.1";
  int port = 0;
  static option opts[] = {{"mode", required_argument, nullptr, 'm'},
                          {"port", required_argument, nullptr, 'p'},
                          {"host", required_argument, nullptr, 'h'},
                          {nullptr, 0, nullptr, 0}};
  for (int c; (c = getopt_long(argc, argv, "m:p:h:", opts, nullptr)) != -1;) {
    if (c == 'm') mode = optarg;
    if (c == 'p') port = atoi(optarg);
    if (c == 'h') host = optarg;
  }
  const bool http = strcmp(mode, "http") == 0;
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  if (strcmp(mode, "udp-echo") == 0) return UdpEcho(host, port);

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, host, &addr.sin_addr);
  if (bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(lfd, 4096) != 0) {
    perror("bind/listen");
    return 1;
  }
  socklen_t alen = sizeof(addr);
  getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &alen);
  printf("listening on %s:%d\n", host, ntohs(addr.sin_port));
  fflush(stdout);

  int ep = epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = lfd;
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  epoll_event events[256];
  // HTTP only: partial requests per fd (a rare path, kept simple).
  char** partial = nullptr;
  size_t* partial_len = nullptr;
  int partial_cap = 0;
  bool accept_paused = false;
  RefreshDate();
  while (!stop_requested) {
    int n = epoll_wait(ep, events, 256, accept_paused ? 50 : 1000);
    if (http) RefreshDate();
    if (accept_paused) {
      accept_paused = false;
      ev.events = EPOLLIN;
      ev.data.fd = lfd;
      epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    }
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == lfd) {
        for (;;) {
          int c = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) {
            if (errno == EMFILE || errno == ENFILE) {  // back off, do not spin
              epoll_ctl(ep, EPOLL_CTL_DEL, lfd, nullptr);
              accept_paused = true;
            }
            break;
          }
          setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
          ev.events = EPOLLIN;
          ev.data.fd = c;
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
        }
        continue;
      }
      if (events[i].events & EPOLLOUT) FlushPending(ep, fd);
      if (!(events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) continue;
      ssize_t r = read(fd, read_buf, sizeof(read_buf));
      if (r <= 0) {
        if (r < 0 && errno == EAGAIN) continue;
        if (http && fd < partial_cap && partial[fd] != nullptr) {
          free(partial[fd]);
          partial[fd] = nullptr;
        }
        CloseConn(ep, fd);
        continue;
      }
      if (!http) {
        if (!SendOrKeep(ep, fd, read_buf, static_cast<size_t>(r))) CloseConn(ep, fd);
        continue;
      }
      const char* data = read_buf;
      size_t len = static_cast<size_t>(r);
      if (fd < partial_cap && partial[fd] != nullptr) {
        partial[fd] = static_cast<char*>(realloc(partial[fd], partial_len[fd] + len));
        memcpy(partial[fd] + partial_len[fd], read_buf, len);
        partial_len[fd] += len;
        data = partial[fd];
        len = partial_len[fd];
      }
      size_t used = AnswerHttp(ep, fd, data, len);
      if (used == static_cast<size_t>(-1)) {
        CloseConn(ep, fd);
        continue;
      }
      size_t rest = len - used;
      if (rest == 0) {
        if (fd < partial_cap && partial[fd] != nullptr) {
          free(partial[fd]);
          partial[fd] = nullptr;
        }
      } else if (rest > 8192) {
        CloseConn(ep, fd);  // not a request we answer
      } else {
        if (fd >= partial_cap) {
          int cap = fd * 2 + 16;
          partial = static_cast<char**>(realloc(partial, cap * sizeof(char*)));
          partial_len = static_cast<size_t*>(realloc(partial_len, cap * sizeof(size_t)));
          memset(partial + partial_cap, 0, (cap - partial_cap) * sizeof(char*));
          partial_cap = cap;
        }
        char* keep = static_cast<char*>(malloc(rest));
        memcpy(keep, data + used, rest);
        free(partial[fd]);
        partial[fd] = keep;
        partial_len[fd] = rest;
      }
    }
  }
  return 0;
}
