#include "examples/http/static_files.h"

#include <errno.h>
#include <string.h>

#ifndef _WIN32
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include <string>

namespace netloop::http {
namespace {

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decodes `in` into *out; false for a malformed escape or a NUL.
bool Decode(std::string_view in, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      const int hi = i + 1 < in.size() ? HexDigit(in[i + 1]) : -1;
      const int lo = i + 2 < in.size() ? HexDigit(in[i + 2]) : -1;
      if (hi < 0 || lo < 0) return false;
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    }
    if (c == '\0') return false;
    out->push_back(c);
  }
  return true;
}

}  // namespace

#ifdef _WIN32
// Serving files safely needs openat2's RESOLVE_BENEATH or its Windows
// equivalent (handle-relative opens through NtCreateFile), not written yet:
// --root is refused on Windows rather than served without the guard.
std::unique_ptr<StaticRoot> StaticRoot::Open(const std::string& dir, std::string* error) {
  *error = dir + ": --root is not supported on Windows yet";
  return nullptr;
}

StaticRoot::~StaticRoot() = default;

StaticRoot::File StaticRoot::Find(std::string_view path) const {
  (void)dir_fd_;
  File file;
  std::string name;
  if (!Decode(path, &name)) file.status = 400;
  return file;
}
#else
std::unique_ptr<StaticRoot> StaticRoot::Open(const std::string& dir, std::string* error) {
  const int fd = ::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    *error = dir + ": " + strerror(errno);
    return nullptr;
  }
  return std::unique_ptr<StaticRoot>(new StaticRoot(fd));
}

StaticRoot::~StaticRoot() { ::close(dir_fd_); }

StaticRoot::File StaticRoot::Find(std::string_view path) const {
  File file;
  std::string name;
  if (!Decode(path, &name)) {
    file.status = 400;
    return file;
  }
  // Relative to the root; "/" itself names no file.
  size_t start = name.find_first_not_of('/');
  if (start == std::string::npos) return file;
  name.erase(0, start);
  // RESOLVE_BENEATH refuses any step outside the root, whether spelled
  // ".." or reached through a symbolic link (absolute or relative), and
  // RESOLVE_NO_MAGICLINKS the /proc kind. glibc 2.36 has no wrapper.
  open_how how{};
  // O_NONBLOCK: a FIFO under the root would otherwise wait for a writer
  // (and hold the loop) before it can be refused; regular files ignore it.
  how.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  const int fd = static_cast<int>(::syscall(SYS_openat2, dir_fd_, name.c_str(), &how, sizeof(how)));
  if (fd < 0) {
    file.status = (errno == ENOENT || errno == ENOTDIR || errno == ENAMETOOLONG) ? 404 : 403;
    return file;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    file.status = 403;  // a directory (no listings), a device, a FIFO
    return file;
  }
  file.status = 200;
  file.fd = fd;
  file.size = static_cast<uint64_t>(st.st_size);
  return file;
}
#endif  // _WIN32

std::string_view StaticRoot::ContentType(std::string_view path) {
  const size_t dot = path.rfind('.');
  const size_t slash = path.rfind('/');
  if (dot == std::string_view::npos || (slash != std::string_view::npos && dot < slash)) {
    return "application/octet-stream";
  }
  const std::string_view ext = path.substr(dot + 1);
  if (ext == "html" || ext == "htm") return "text/html";
  if (ext == "txt") return "text/plain";
  if (ext == "css") return "text/css";
  if (ext == "js") return "text/javascript";
  if (ext == "json") return "application/json";
  if (ext == "png") return "image/png";
  if (ext == "jpg" || ext == "jpeg") return "image/jpeg";
  if (ext == "svg") return "image/svg+xml";
  return "application/octet-stream";
}

}  // namespace netloop::http
