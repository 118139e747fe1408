// Regular files under one directory, for the HTTP servers' --root: what a
// request path names, opened so that nothing outside the directory can be
// reached (no "..", no symbolic link leading out, no NUL byte). Pure file
// system work, no reactor.
#ifndef NETLOOP_EXAMPLES_HTTP_STATIC_FILES_H_
#define NETLOOP_EXAMPLES_HTTP_STATIC_FILES_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace netloop::http {

class StaticRoot {
 public:
  // Opens `dir`; nullptr (and *error says why) when it is not a directory
  // that can be opened.
  static std::unique_ptr<StaticRoot> Open(const std::string& dir, std::string* error);
  ~StaticRoot();
  StaticRoot(const StaticRoot&) = delete;
  StaticRoot& operator=(const StaticRoot&) = delete;

  struct File {
    // 200 (fd and size set; the caller closes fd), 400 (a malformed
    // percent escape, or a NUL byte), 403 (a path that leaves the root, a
    // directory, a file the server may not read), 404.
    int status = 404;
    int fd = -1;
    uint64_t size = 0;
  };
  // `path`: the request target's path, percent-encoded, starting with '/'.
  // Any thread.
  File Find(std::string_view path) const;

  // "text/html" and the like, by the path's extension.
  static std::string_view ContentType(std::string_view path);

 private:
  explicit StaticRoot(int dir_fd) : dir_fd_(dir_fd) {}
  const int dir_fd_;
};

}  // namespace netloop::http

#endif  // NETLOOP_EXAMPLES_HTTP_STATIC_FILES_H_
