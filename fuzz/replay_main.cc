// A main() for running a libFuzzer target without libFuzzer: the Bazel tests
// link each target with this file, so every `bazel test //...` (also under
// the ASan and TSan configs, and with gcc, which has no libFuzzer) replays
// the committed corpus.
//
//   replay [--mutations=N] [--seed=S] [--strict] PATH...
//
// Each PATH is a file or a directory of files (not recursive). Every file is
// run once as it is, then N (default 2000) inputs derived from them by a
// fixed-seed generator: the same bytes on every run, so a failure is
// reproducible, and cheap enough to finish in a few seconds. A failed check
// aborts; before the process dies the input at fault is named and, if it was
// a mutation, written out (to $TEST_UNDECLARED_OUTPUTS_DIR, else /tmp) so it
// can be replayed alone. --strict makes checks skipped for known, reported
// bugs fail (NETLOOP_FUZZ_STRICT=1; see fuzz/check.h).
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

// Present when a sanitizer runtime is linked: lets the replay name the
// input before the sanitizer exits (it does not raise a signal).
extern "C" void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

namespace {

// What is running now, for the failure hooks. Plain globals: the hooks run
// in a signal handler or a dying sanitizer and may only read them.
const char* g_current_name = "";
const std::string* g_current_bytes = nullptr;
bool g_current_is_mutation = false;
char g_dump_path[4096];

void WriteString(int fd, const char* s) {
  if (write(fd, s, std::strlen(s)) < 0) return;
}

// Only async-signal-safe calls: this also runs from the SIGABRT handler.
void ReportCurrentInput() {
  WriteString(2, "replay: failing input: ");
  WriteString(2, g_current_name);
  WriteString(2, "\n");
  if (!g_current_is_mutation || g_current_bytes == nullptr) return;
  int fd = open(g_dump_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return;
  if (write(fd, g_current_bytes->data(), g_current_bytes->size()) >= 0) {
    WriteString(2, "replay: its bytes are in ");
    WriteString(2, g_dump_path);
    WriteString(2, "\n");
  }
  close(fd);
}

void OnFatalSignal(int sig) {
  ReportCurrentInput();
  signal(sig, SIG_DFL);
  raise(sig);
}

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  out->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return true;
}

// Adds the files at `path` (a file, or a directory's regular files in name
// order so runs are deterministic). Returns false if nothing is there.
bool CollectFiles(const std::string& path, std::vector<std::string>* files) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return false;
  if (!S_ISDIR(st.st_mode)) {
    files->push_back(path);
    return true;
  }
  DIR* dir = opendir(path.c_str());
  if (dir == nullptr) return false;
  std::vector<std::string> found;
  while (dirent* e = readdir(dir)) {
    const std::string full = path + "/" + e->d_name;
    if (e->d_name[0] != '.' && stat(full.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      found.push_back(full);
    }
  }
  closedir(dir);
  std::sort(found.begin(), found.end());
  files->insert(files->end(), found.begin(), found.end());
  return true;
}

// splitmix64: tiny, and the same sequence everywhere.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
  }
  size_t Below(size_t n) { return n == 0 ? 0 : Next() % n; }

 private:
  uint64_t state_;
};

// Bytes that matter to the targets' formats, so mutations reach new
// branches more often than random bytes would.
using std::string_view_literals::operator""sv;
constexpr std::string_view kTokens[] = {
    "\r\n", "\r\n\r\n", " ", ":", "\n", "\r", "\t", "0", "9", "/", "[", "]", "@", "://",
    "Content-Length: ", "Transfer-Encoding: chunked\r\n", "Connection: close\r\n",
    "Connection: keep-alive\r\n", "HTTP/1.0", "HTTP/1.1", "GET ", "HEAD ", "POST /echo ",
    "18446744073709551616", "4294967296", "65536", "::", "\0"sv, "\xff"};

// A few stacked edits of one corpus input, sometimes spliced with another.
std::string Mutate(const std::vector<std::string>& inputs, Rng& rng) {
  std::string s = inputs[rng.Below(inputs.size())];
  const size_t edits = 1 + rng.Below(4);
  for (size_t e = 0; e < edits; ++e) {
    const size_t pos = rng.Below(s.size() + 1);
    switch (rng.Below(7)) {
      case 0:  // flip a bit
        if (!s.empty()) s[rng.Below(s.size())] ^= static_cast<char>(1 << rng.Below(8));
        break;
      case 1:  // set a byte
        if (!s.empty()) s[rng.Below(s.size())] = static_cast<char>(rng.Next());
        break;
      case 2:  // insert a random byte
        s.insert(pos, 1, static_cast<char>(rng.Next()));
        break;
      case 3:  // erase a range
        s.erase(pos, 1 + rng.Below(16));
        break;
      case 4: {  // insert a token
        const std::string_view t = kTokens[rng.Below(std::size(kTokens))];
        s.insert(pos, t.data(), t.size());
        break;
      }
      case 5: {  // duplicate a range
        const std::string piece = s.substr(pos, 1 + rng.Below(64));
        s.insert(rng.Below(s.size() + 1), piece);
        break;
      }
      default: {  // splice: our prefix, another input's suffix
        const std::string& other = inputs[rng.Below(inputs.size())];
        s = s.substr(0, pos) + other.substr(rng.Below(other.size() + 1));
        break;
      }
    }
  }
  if (s.size() > 8192) s.resize(8192);
  return s;
}

void Run(const char* name, const std::string& bytes, bool mutation) {
  g_current_name = name;
  g_current_bytes = &bytes;
  g_current_is_mutation = mutation;
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

}  // namespace

int main(int argc, char** argv) {
  long mutations = 2000;
  uint64_t seed = 1;
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg.starts_with("--mutations=")) {
      mutations = std::strtol(argv[i] + 12, nullptr, 10);
    } else if (arg.starts_with("--seed=")) {
      seed = std::strtoull(argv[i] + 7, nullptr, 10);
    } else if (arg == "--strict") {
      setenv("NETLOOP_FUZZ_STRICT", "1", 1);
    } else if (!CollectFiles(argv[i], &files)) {
      std::fprintf(stderr, "replay: cannot read %s\n", argv[i]);
      return 2;
    }
  }
  if (files.empty()) {
    // A mistyped corpus path must not pass as "nothing failed".
    std::fprintf(stderr, "replay: no input files given\n");
    return 2;
  }
  const char* out_dir = std::getenv("TEST_UNDECLARED_OUTPUTS_DIR");
  std::snprintf(g_dump_path, sizeof(g_dump_path), "%s/replay-failing-input",
                out_dir != nullptr ? out_dir : "/tmp");
  signal(SIGABRT, OnFatalSignal);
  signal(SIGSEGV, OnFatalSignal);
  signal(SIGBUS, OnFatalSignal);
  signal(SIGFPE, OnFatalSignal);
  if (__sanitizer_set_death_callback != nullptr) {
    __sanitizer_set_death_callback(ReportCurrentInput);
  }

  std::vector<std::string> inputs;
  for (const std::string& f : files) {
    std::string bytes;
    if (!ReadFile(f, &bytes)) {
      std::fprintf(stderr, "replay: cannot read %s\n", f.c_str());
      return 2;
    }
    Run(f.c_str(), bytes, false);
    inputs.push_back(std::move(bytes));
  }
  Rng rng(seed);
  char name[64];
  for (long i = 0; i < mutations; ++i) {
    const std::string bytes = Mutate(inputs, rng);
    std::snprintf(name, sizeof(name), "mutation %ld (--seed=%llu)", i,
                  static_cast<unsigned long long>(seed));
    Run(name, bytes, true);
  }
  std::printf("replay: %zu files and %ld mutations passed\n", files.size(), mutations);
  return 0;
}
